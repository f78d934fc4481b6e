//! Helpers shared by the benchmarks: command-line values and the shared posters.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The value after `name` on the command line, parsed.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// Up to `max` poster files (`.jpg`) of `dir`, in name order; none when it cannot be read.
pub fn poster_files(dir: &Path, max: usize) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg")))
        .collect();
    files.sort();
    files.truncate(max);
    files
}
