//! Embeds the version, git commit, build date and the app icon (and, in a Windows build,
//! the executable's icon resource from `assets/icon.ico`; made by `tools/make_ico.py`).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=assets/icon.png");
    println!("cargo:rerun-if-changed=assets/icon.ico");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=MOVIE_ERAS_COMMIT");

    let commit = std::env::var("MOVIE_ERAS_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=10", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        });
    println!(
        "cargo:rustc-env=MOVIE_ERAS_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );

    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".into(), |s| s.trim().to_owned());
    println!("cargo:rustc-env=MOVIE_ERAS_BUILD_DATE={date}");

    let out_dir = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    let icon = std::fs::read("assets/icon.png").unwrap_or_default();
    if !icon.starts_with(b"\x89PNG\r\n\x1a\n") {
        println!("cargo:warning=assets/icon.png is missing or not a PNG; building without an icon");
    }
    if let Err(e) = std::fs::write(Path::new(&out_dir).join("icon.png"), &icon) {
        panic!("cannot write icon to OUT_DIR: {e}");
    }
    windows_icon();
}

/// The icon Explorer shows for `movie-eras.exe` (a native Windows build; untested here).
#[cfg(windows)]
fn windows_icon() {
    let mut res = winresource::WindowsResource::new();
    res.set_icon("assets/icon.ico");
    if let Err(e) = res.compile() {
        println!("cargo:warning=could not embed the Windows icon: {e}");
    }
}

#[cfg(not(windows))]
fn windows_icon() {}
