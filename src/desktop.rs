//! Desktop integration on Linux: the freedesktop `.desktop` entry and the icon in the
//! hicolor theme's sizes, installed under a `share` directory (`~/.local/share` for one
//! user, `/usr/share` in the Debian package) and removed again.

use std::path::{Path, PathBuf};

/// The application id: file names of the entry and the icon.
pub const APP_ID: &str = "movie-eras";

/// Icon sizes installed into the hicolor theme.
pub const ICON_SIZES: [u32; 6] = [16, 32, 48, 64, 128, 256];

/// Image types the app opens: "Open with" and files dropped on the launcher reach the
/// Classify tab.
const MIME_TYPES: &str = "image/jpeg;image/png;image/webp;image/gif;image/bmp;";

/// Why installing or removing failed.
#[derive(Debug, thiserror::Error)]
pub enum DesktopError {
    /// A file could not be written or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The icon could not be scaled.
    #[error("cannot prepare the icon: {0}")]
    Icon(String),
}

/// The `.desktop` entry starting `exec` (a command name on `PATH` or an absolute path).
pub fn desktop_entry(exec: &str) -> String {
    // Paths with spaces are quoted as the Desktop Entry specification asks.
    let exec = if exec.contains(' ') {
        format!("\"{}\"", exec.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        exec.to_owned()
    };
    format!(
        "[Desktop Entry]
Type=Application
Version=1.4
Name=Movie Eras
GenericName=Poster era classifier
Comment=Explore movie posters across eras and date a poster by its look
Exec={exec} %F
Icon={APP_ID}
Terminal=false
Categories=Graphics;Viewer;
Keywords=movie;poster;film;era;decade;classifier;
MimeType={MIME_TYPES}
StartupWMClass={APP_ID}
"
    )
}

/// Where a `share` directory's entry and icons go.
pub fn installed_paths(share: &Path) -> Vec<PathBuf> {
    let mut paths = vec![share.join("applications").join(format!("{APP_ID}.desktop"))];
    for size in ICON_SIZES {
        paths.push(
            share
                .join("icons/hicolor")
                .join(format!("{size}x{size}"))
                .join("apps")
                .join(format!("{APP_ID}.png")),
        );
    }
    paths
}

/// The user's `share` directory: `$XDG_DATA_HOME`, else `~/.local/share`.
pub fn user_share_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share"))
}

/// Writes the entry (starting `exec`) and the icons under `share`; returns the files.
pub fn install(share: &Path, exec: &str) -> Result<Vec<PathBuf>, DesktopError> {
    let paths = installed_paths(share);
    let icon = image::load_from_memory(crate::version::ICON_PNG)
        .map_err(|e| DesktopError::Icon(e.to_string()))?;
    for (i, path) in paths.iter().enumerate() {
        let bytes = if i == 0 {
            desktop_entry(exec).into_bytes()
        } else {
            let size = ICON_SIZES[i - 1];
            let scaled = icon.resize_exact(size, size, image::imageops::FilterType::Lanczos3);
            let mut png = Vec::new();
            scaled
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| DesktopError::Icon(e.to_string()))?;
            png
        };
        let io = |source| DesktopError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        crate::fsutil::write_atomic(path, &bytes).map_err(io)?;
    }
    Ok(paths)
}

/// Removes what [`install`] wrote under `share`; returns the files that were there.
pub fn uninstall(share: &Path) -> Result<Vec<PathBuf>, DesktopError> {
    let mut removed = Vec::new();
    for path in installed_paths(share) {
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DesktopError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_entry_is_the_generated_one() {
        let packaged = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/movie-eras.desktop"),
        )
        .unwrap();
        assert_eq!(packaged, desktop_entry("movie-eras"));
    }

    #[test]
    fn installs_the_entry_and_icons_and_removes_them() {
        let tmp = tempfile::tempdir().unwrap();
        let share = tmp.path().join("share");
        let files = install(&share, "/opt/Movie Eras/movie-eras").unwrap();
        assert_eq!(files.len(), 1 + ICON_SIZES.len());
        let entry = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            entry.contains("Exec=\"/opt/Movie Eras/movie-eras\" %F"),
            "{entry}"
        );
        for (path, size) in files[1..].iter().zip(ICON_SIZES) {
            let img = image::open(path).unwrap();
            assert_eq!((img.width(), img.height()), (size, size));
        }
        // desktop-file-validate, where installed, accepts the entry.
        if let Ok(out) = std::process::Command::new("desktop-file-validate")
            .arg(&files[0])
            .output()
        {
            assert!(
                out.status.success() && out.stdout.is_empty(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(uninstall(&share).unwrap().len(), files.len());
        assert!(files.iter().all(|f| !f.exists()));
        assert!(uninstall(&share).unwrap().is_empty());
    }
}
