//! The user's own config file (`<OS config dir>/config.toml`): the TMDB key lives here
//! and nowhere else. It is written atomically with owner-only permissions and never logged.

use std::path::{Path, PathBuf};

/// Config file errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading or writing failed.
    #[error("config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// User settings kept outside the data directory.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UserConfig {
    /// TMDB v3 API key.
    pub tmdb_api_key: Option<String>,
    /// TMDB v4 read access token.
    pub tmdb_bearer_token: Option<String>,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("tmdb_api_key", &self.tmdb_api_key.as_ref().map(|_| "***"))
            .field(
                "tmdb_bearer_token",
                &self.tmdb_bearer_token.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// Default location of the config file.
pub fn default_path() -> PathBuf {
    crate::paths::config_dir().join("config.toml")
}

impl UserConfig {
    /// Loads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            // The message names the line, never its text: that line may hold the key.
            Ok(text) => toml::from_str(&text).map_err(|e| {
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                ConfigError::Parse {
                    path: path.display().to_string(),
                    message: match line {
                        Some(n) => format!("{} (line {n})", e.message()),
                        None => e.message().to_owned(),
                    },
                }
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Saves to `path` atomically, readable by the owner only.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = toml::to_string(self).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_atomic(path, text.as_bytes()).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_file_is_an_error_that_does_not_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# saved\ntmdb_api_key = secret-key-123\n").unwrap();
        let e = UserConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("config.toml"), "{e}");
        assert!(!e.contains("secret-key-123"), "{e}");
    }

    #[test]
    fn round_trip_private_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cfg/config.toml");
        assert_eq!(UserConfig::load(&p).unwrap(), UserConfig::default());
        let c = UserConfig {
            tmdb_api_key: Some("sekrit".into()),
            tmdb_bearer_token: None,
        };
        c.save(&p).unwrap();
        assert_eq!(UserConfig::load(&p).unwrap(), c);
        assert!(!format!("{c:?}").contains("sekrit"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, "tmdb_api_key = [").unwrap();
        assert!(UserConfig::load(&p).is_err());
    }
}
