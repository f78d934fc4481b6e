//! One running job of each kind per data directory.
//!
//! A harvest, import or training run holds an OS file lock on
//! `<data dir>/locks/<kind>.lock` for as long as it runs; a second job of the same kind
//! on the same directory refuses at start, naming the one that runs. Jobs of different
//! kinds, and readers (the app's Gallery, `export`, `status`), never wait for the lock:
//! the catalog's own write transactions keep them apart. The OS drops the lock when the
//! process ends, even on `kill -9`, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::paths::DataDir;

/// Why a job could not take its lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another job of this kind holds it.
    #[error(
        "another {kind} is running on this data directory ({holder}); wait for it to finish or cancel it"
    )]
    Busy {
        /// The job kind (`harvest`, `import`, `train`).
        kind: String,
        /// Who holds it, as the holder wrote it (`pid N, since T`).
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A held job lock; dropping it releases the lock.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
    path: PathBuf,
}

impl JobLock {
    /// Takes the lock for a job of `kind` on `data_dir`, or says who holds it.
    pub fn acquire(data_dir: &DataDir, kind: &str) -> Result<Self, LockError> {
        let dir = data_dir.root().join("locks");
        let path = dir.join(format!("{kind}.lock"));
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Busy {
                    kind: kind.to_owned(),
                    holder: if holder.is_empty() {
                        "process unknown".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let since = utc_now();
        let note = format!("pid {}, since {since}", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(io)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// The current UTC time as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_string(secs)
}

/// Seconds since 1970 (UTC) as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_string(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_job_of_a_kind_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let first = JobLock::acquire(&data, "harvest").unwrap();
        let err = JobLock::acquire(&data, "harvest").unwrap_err().to_string();
        assert!(
            err.contains("another harvest is running on this data directory"),
            "{err}"
        );
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        // Another kind is not blocked.
        let import = JobLock::acquire(&data, "import").unwrap();
        drop(first);
        let again = JobLock::acquire(&data, "harvest").unwrap();
        assert!(again.path().ends_with("locks/harvest.lock"));
        let year: i32 = utc_now()[..4].parse().unwrap();
        assert!(year >= 2025, "{}", utc_now());
        drop(import);
    }
}
