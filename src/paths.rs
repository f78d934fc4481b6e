//! Where the app keeps its data: the catalog, downloaded posters, models, user eras.

use std::path::{Path, PathBuf};

/// File name of the backbone-feature cache in the data directory, beside the catalog.
pub const FEATURES_FILE: &str = "features.sqlite";

/// Environment variable that overrides the data directory.
pub const DATA_DIR_ENV: &str = "MOVIE_ERAS_DATA_DIR";

/// The app's data directory and the files inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Uses `root` as the data directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `explicit` (from `--data-dir`) if given, else `MOVIE_ERAS_DATA_DIR`, else the OS
    /// data directory (e.g. `~/.local/share/movie-eras`).
    pub fn resolve(explicit: Option<&Path>) -> Self {
        if let Some(p) = explicit {
            return Self::new(p);
        }
        if let Some(p) = std::env::var_os(DATA_DIR_ENV).filter(|p| !p.is_empty()) {
            return Self::new(PathBuf::from(p));
        }
        Self::new(default_data_dir())
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `catalog.sqlite`.
    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog.sqlite")
    }

    /// The cache of backbone features per poster ([`FEATURES_FILE`]; safe to delete).
    pub fn features_path(&self) -> PathBuf {
        self.root.join(FEATURES_FILE)
    }

    /// Where harvested or copied posters are stored.
    pub fn posters_dir(&self) -> PathBuf {
        self.root.join("posters")
    }

    /// Where trained models are stored.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// The user's own era schemes (optional).
    pub fn eras_file(&self) -> PathBuf {
        self.root.join("eras.toml")
    }

    /// Where `train` (CLI and Train tab) writes its model by default.
    pub fn trained_model_dir(&self) -> PathBuf {
        self.models_dir().join("era-model")
    }

    /// Resolves a poster `file` column: absolute paths as they are, others under the root.
    pub fn poster_path(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("org", "Movie Eras", "movie-eras")
}

/// The OS data directory for the app (falls back to `./movie-eras-data`).
pub fn default_data_dir() -> PathBuf {
    project_dirs().map_or_else(
        || PathBuf::from("movie-eras-data"),
        |d| d.data_dir().to_path_buf(),
    )
}

/// The OS cache directory for the app (e.g. `~/.cache/movie-eras`), if there is a home.
pub fn cache_dir() -> Option<PathBuf> {
    project_dirs().map(|d| d.cache_dir().to_path_buf())
}

/// The OS config directory for the app (user settings, the TMDB key).
pub fn config_dir() -> PathBuf {
    project_dirs().map_or_else(
        || PathBuf::from("movie-eras-config"),
        |d| d.config_dir().to_path_buf(),
    )
}
