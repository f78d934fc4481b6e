//! File-system helpers: atomic writes and sanitising names that come from servers.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is
/// written, flushed to disk and renamed over `path`. Readers see the old file or the
/// new one, never a partial one; on error (disk full, say) the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{name}.{}.{}.part",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        // The folder usually exists: create it only when the file cannot be made.
        let mut f = match std::fs::File::create(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                std::fs::File::create(&tmp)?
            }
            other => other?,
        };
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes temporary files left by an interrupted [`write_atomic`] in `dir`.
pub fn remove_stale_parts(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.')
            && name.ends_with(".part")
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Turns text from a server (a TMDB `poster_path`, a title) into one safe file-name
/// component: only ASCII letters, digits, `-`, `_` and `.`, no leading dot, no `..`,
/// at most 80 characters. Returns `None` when nothing usable is left.
pub fn sanitize_component(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while out.contains("..") {
        out = out.replace("..", ".");
    }
    let out = out.trim_start_matches('.').to_owned();
    let out: String = out.chars().take(80).collect();
    if out.is_empty() || out.chars().all(|c| c == '_' || c == '.') {
        None
    } else {
        Some(out)
    }
}

/// Joins a sanitised server-provided name under `dir`, guaranteeing the result stays inside.
pub fn safe_join(dir: &Path, raw_name: &str) -> Option<PathBuf> {
    sanitize_component(raw_name).map(|n| dir.join(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_blocks_traversal_and_odd_characters() {
        assert_eq!(
            sanitize_component("/abc123.jpg").as_deref(),
            Some("abc123.jpg")
        );
        assert_eq!(
            sanitize_component("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(sanitize_component("..").as_deref(), None);
        assert_eq!(sanitize_component("").as_deref(), None);
        assert_eq!(
            sanitize_component("a b:c?.jpg").as_deref(),
            Some("a_b_c_.jpg")
        );
        assert_eq!(
            sanitize_component("..\\..\\x.png").as_deref(),
            Some("x.png")
        );
        assert_eq!(sanitize_component("....jpg").as_deref(), Some("jpg"));
        let long = "x".repeat(500);
        assert_eq!(sanitize_component(&long).map(|s| s.len()), Some(80));
        let dir = Path::new("/data/posters");
        assert!(safe_join(dir, "/../../../x.jpg").unwrap().starts_with(dir));
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/file.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        std::fs::write(dir.path().join("sub/.file.bin.1.2.part"), b"x").unwrap();
        assert_eq!(remove_stale_parts(&dir.path().join("sub")), 1);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
