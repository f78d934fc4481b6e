//! The system's file dialogs (rfd), shown from helper threads. On Linux rfd asks the XDG
//! desktop portal and falls back to zenity; with neither it returns nothing, exactly as
//! if the user had cancelled. [`show`] tells the two apart, so the window can say that
//! no dialog is available (and what to install) instead of doing nothing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What a dialog gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picked<T> {
    /// The user chose this.
    Chosen(T),
    /// The user closed the dialog.
    Cancelled,
    /// No dialog could be shown; the text says why and what to do.
    Unavailable(String),
}

/// The message shown when no dialog backend exists.
pub const NO_DIALOG: &str = "No file dialog is available on this system: install \
     xdg-desktop-portal-gtk (or another desktop portal) or zenity. Meanwhile, drop files or \
     folders on the window.";

/// Shows a dialog (`dialog` calls rfd) unless the system has no dialog backend; a
/// panicking backend counts as none.
pub fn show<T>(dialog: impl FnOnce() -> Option<T>) -> Picked<T> {
    if let Some(why) = unavailable_reason() {
        return Picked::Unavailable(why);
    }
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(dialog)) {
        Ok(Some(t)) => Picked::Chosen(t),
        Ok(None) => Picked::Cancelled,
        Err(_) => Picked::Unavailable(NO_DIALOG.to_owned()),
    }
}

/// Why no file dialog can be shown here, or `None` when one can (as far as can be told
/// without showing one).
pub fn unavailable_reason() -> Option<String> {
    if !cfg!(all(unix, not(target_os = "macos"))) {
        return None;
    }
    let found = backend_found(
        std::env::var_os("PATH"),
        std::env::var_os("XDG_DATA_DIRS"),
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    );
    (!found).then(|| NO_DIALOG.to_owned())
}

/// Whether zenity is on `path`, or a desktop portal's D-Bus service is installed in one
/// of the XDG data directories.
fn backend_found(
    path: Option<OsString>,
    data_dirs: Option<OsString>,
    data_home: Option<OsString>,
    home: Option<OsString>,
) -> bool {
    let zenity =
        path.is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("zenity").is_file()));
    if zenity {
        return true;
    }
    let mut dirs: Vec<PathBuf> = match data_dirs.filter(|d| !d.is_empty()) {
        Some(d) => std::env::split_paths(&d).collect(),
        None => vec!["/usr/local/share".into(), "/usr/share".into()],
    };
    match data_home.filter(|d| !d.is_empty()) {
        Some(d) => dirs.push(d.into()),
        None => {
            if let Some(h) = home {
                dirs.push(Path::new(&h).join(".local/share"));
            }
        }
    }
    dirs.iter().any(|d| {
        d.join("dbus-1/services/org.freedesktop.portal.Desktop.service")
            .is_file()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialog_backend_is_zenity_or_a_portal_service() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        let share = tmp.path().join("share");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(share.join("dbus-1/services")).unwrap();
        let os = |p: &Path| Some(p.as_os_str().to_owned());
        // Nothing installed: no dialog.
        assert!(!backend_found(os(&bin), os(&share), os(&share), None));
        // zenity on the PATH.
        std::fs::write(bin.join("zenity"), b"#!/bin/sh\n").unwrap();
        assert!(backend_found(os(&bin), os(&share), os(&share), None));
        std::fs::remove_file(bin.join("zenity")).unwrap();
        // The portal's D-Bus service.
        std::fs::write(
            share.join("dbus-1/services/org.freedesktop.portal.Desktop.service"),
            b"[D-BUS Service]\n",
        )
        .unwrap();
        assert!(backend_found(os(&bin), os(&share), None, None));
    }

    #[test]
    fn show_tells_cancel_from_a_missing_or_broken_backend() {
        if unavailable_reason().is_some() {
            assert!(matches!(show(|| Some(1)), Picked::Unavailable(_)));
            return;
        }
        assert_eq!(show(|| Some(1)), Picked::Chosen(1));
        assert_eq!(show(|| None::<i32>), Picked::Cancelled);
        assert_eq!(
            show(|| -> Option<i32> { panic!("no backend") }),
            Picked::Unavailable(NO_DIALOG.to_owned())
        );
    }
}
