//! The era model (Burn): a feature extractor — by default the pretrained EfficientNet-Lite0
//! backbone, else a small CNN trained from scratch — and a head that predicts a
//! distribution over 5-year release-year bins. Any era scheme's probabilities are sums over bins (split pro rata where an era
//! boundary falls inside a bin), the estimated year is the distribution's median, so
//! custom schemes need no retraining.
//!
//! Split by concern, as in Burn's examples: [`network`] (extractor and head), [`data`] (catalog →
//! tensors, split, sampling, augmentation, normalisation), [`training`] (the loop,
//! checkpoints, resume, cancel), [`inference`] (loading and predicting), [`metrics`]
//! (evaluation), [`backend`] (GPU or CPU at run time), [`saliency`] (which pixels drove a
//! prediction), [`backbone`] (pretrained EfficientNet-Lite feature extractors),
//! [`features`] (the per-poster cache of backbone features that heads train on) and
//! [`distill`] (teacher models' probabilities mixed into the training targets) and
//! [`prior`] (correcting answers for the training year mix).

pub mod backbone;
pub mod backend;
pub mod catalog_pass;
pub mod data;
pub mod distill;
pub mod features;
pub mod inference;
pub mod library;
pub mod metrics;
pub mod network;
pub mod prior;
pub mod readings;
pub mod saliency;
pub mod train_job;
pub mod training;

use std::path::{Path, PathBuf};

use crate::eras::EraScheme;

/// Model errors.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a model file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The model config is not valid.
    #[error("model config {path} is not valid: {message}")]
    Config {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The weights could not be read or written.
    #[error("model weights {path}: {message}")]
    Weights {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// Not enough data or bad settings.
    #[error("{0}")]
    Data(String),
    /// A poster could not be used.
    #[error(transparent)]
    Image(#[from] crate::imaging::ImageRejection),
    /// The requested backend is not available.
    #[error("{0}")]
    Backend(String),
    /// A forward or backward pass gave something unusable.
    #[error("model inference failed: {0}")]
    Inference(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Release-year bins: `count` bins of `width` years starting at `first`. Years before the
/// first bin fall in it; years after the last fall in the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct YearBins {
    /// First year of the first bin.
    pub first: i32,
    /// Years per bin.
    pub width: i32,
    /// Number of bins.
    pub count: usize,
}

impl Default for YearBins {
    fn default() -> Self {
        // 1890–2029 in 5-year bins: 28 bins.
        Self {
            first: 1890,
            width: 5,
            count: 28,
        }
    }
}

impl YearBins {
    /// The bin of `year`.
    pub fn bin(&self, year: i32) -> usize {
        let b = (year - self.first).div_euclid(self.width);
        b.clamp(0, self.count as i32 - 1) as usize
    }

    /// First and last year of bin `b`.
    pub fn range(&self, b: usize) -> (i32, i32) {
        let start = self.first + b as i32 * self.width;
        (start, start + self.width - 1)
    }

    /// Middle of bin `b` (e.g. 1952.0 for 1950–1954).
    pub fn centre(&self, b: usize) -> f64 {
        let (a, z) = self.range(b);
        f64::from(a + z) / 2.0
    }

    /// The year the model reports: the median of the year distribution (each bin
    /// uniform), the estimate with the least expected absolute error.
    pub fn estimated_year(&self, probs: &[f32]) -> f64 {
        self.quantile(probs, 0.5)
    }

    /// Probability of each year spread evenly over its bin; the expectation (what the
    /// training loss's year term reads: unlike the median, it is differentiable).
    pub fn expected_year(&self, probs: &[f32]) -> f64 {
        probs
            .iter()
            .enumerate()
            .map(|(b, &p)| f64::from(p) * self.centre(b))
            .sum()
    }

    /// The `q` quantile (0..1) of the year distribution, treating each bin as uniform.
    pub fn quantile(&self, probs: &[f32], q: f64) -> f64 {
        let total: f64 = probs.iter().map(|&p| f64::from(p)).sum();
        let target = q * total.max(1e-12);
        let mut acc = 0.0;
        for (b, &p) in probs.iter().enumerate() {
            let p = f64::from(p);
            if acc + p >= target && p > 0.0 {
                let (a, _) = self.range(b);
                let frac = (target - acc) / p;
                return f64::from(a) - 0.5 + frac * f64::from(self.width);
            }
            acc += p;
        }
        let (_, z) = self.range(self.count - 1);
        f64::from(z) + 0.5
    }

    /// Probabilities of the eras of `scheme`: each bin's mass is shared among the eras its
    /// years fall in, in proportion to the years.
    pub fn era_probs(&self, probs: &[f32], scheme: &EraScheme) -> Vec<f64> {
        let mut out = vec![0.0; scheme.eras.len()];
        for (b, &p) in probs.iter().enumerate() {
            let (a, z) = self.range(b);
            let share = f64::from(p) / f64::from(z - a + 1);
            for year in a..=z {
                out[scheme.era_index(year)] += share;
            }
        }
        out
    }

    /// Probabilities per decade: `(first year of decade, probability)`.
    pub fn decade_probs(&self, probs: &[f32]) -> Vec<(i32, f64)> {
        let mut out: Vec<(i32, f64)> = Vec::new();
        for (b, &p) in probs.iter().enumerate() {
            let (a, z) = self.range(b);
            let share = f64::from(p) / f64::from(z - a + 1);
            for year in a..=z {
                let d = year.div_euclid(10) * 10;
                match out.last_mut() {
                    Some((last, v)) if *last == d => *v += share,
                    _ => out.push((d, share)),
                }
            }
        }
        out
    }
}

/// Per-channel normalisation computed on the training set (values in 0..1 before it).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalisation {
    /// Channel means (R, G, B).
    pub mean: [f32; 3],
    /// Channel standard deviations.
    pub std: [f32; 3],
}

impl Default for Normalisation {
    fn default() -> Self {
        Self {
            mean: [0.5; 3],
            std: [0.25; 3],
        }
    }
}

/// What a model directory's `model.json` holds: everything needed to use the weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    /// Format version of this file.
    pub format: u32,
    /// Network shape.
    pub network: network::NetworkConfig,
    /// Year bins the outputs stand for.
    pub bins: YearBins,
    /// Input normalisation.
    pub normalisation: Normalisation,
    /// Era schemes known when the model was trained (any scheme works at run time).
    pub era_schemes: Vec<String>,
    /// How it was trained (free-form record of the recipe).
    pub recipe: serde_json::Value,
    /// Validation figures at the end of training, if any (as the model answers).
    pub validation: Option<metrics::Evaluation>,
    /// The training year mix and how strongly answers are corrected for it (none in
    /// models from before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<prior::PriorCorrection>,
    /// Further networks whose probabilities are averaged with this one's (typically the
    /// same recipe at another input size): names of sub-folders of this model directory,
    /// each a model directory of its own without members. Saliency explains this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// Most member networks a model may list.
pub const MAX_MEMBERS: usize = 4;

/// Whether `name` may name a member folder: a plain folder name (letters, digits, `.`,
/// `_`, `-`; not starting with a dot; at most 64 bytes).
pub fn valid_member_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Current `model.json` format.
pub const MODEL_FORMAT: u32 = 1;

/// File names inside a model directory.
pub const CONFIG_FILE: &str = "model.json";
/// Weights file (Burn's burnpack format). With a pretrained backbone it holds the head
/// only; the backbone comes from its pretrained weights, or from [`BACKBONE_FILE`] when
/// blocks were fine-tuned.
pub const WEIGHTS_FILE: &str = "model.bpk";
/// Fine-tuned backbone weights (burnpack), beside [`WEIGHTS_FILE`].
pub const BACKBONE_FILE: &str = "backbone.bpk";

impl ModelConfig {
    /// The network's bin probabilities as the model answers them: corrected for the
    /// training year mix where the model says so.
    pub fn corrected(&self, mut probs: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
        if let Some(prior) = &self.prior {
            prior.apply_all(&mut probs);
        }
        probs
    }

    /// Reads `dir/model.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let config: Self = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if config.format != MODEL_FORMAT {
            return Err(ModelError::Config {
                path: path.display().to_string(),
                message: format!("format {} (this build reads {MODEL_FORMAT})", config.format),
            });
        }
        if config.bins.count != config.network.classes {
            return Err(ModelError::Config {
                path: path.display().to_string(),
                message: "bin count and network outputs differ".into(),
            });
        }
        if config.members.len() > MAX_MEMBERS {
            return Err(ModelError::Config {
                path: path.display().to_string(),
                message: format!(
                    "{} member networks (at most {MAX_MEMBERS})",
                    config.members.len()
                ),
            });
        }
        for (i, name) in config.members.iter().enumerate() {
            if !valid_member_name(name) || config.members[..i].contains(name) {
                return Err(ModelError::Config {
                    path: path.display().to_string(),
                    message: format!(
                        "member {name:?} is not a plain, unique folder name (letters, digits, \
                         '.', '_', '-')"
                    ),
                });
            }
        }
        Ok(config)
    }

    /// Writes `dir/model.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| ModelError::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// The model shipped in `resources/model` (found next to the executable, in the source
/// tree, or via `MOVIE_ERAS_MODEL_DIR`).
pub fn default_model_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(dir) = std::env::var("MOVIE_ERAS_MODEL_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join("resources/model"));
        candidates.push(dir.join("../share/movie-eras/model"));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("resources/model"));
    candidates
        .into_iter()
        .find(|d| d.join(CONFIG_FILE).is_file() && d.join(WEIGHTS_FILE).is_file())
        .or_else(embedded_model_dir)
}

/// One file of the shipped model, compiled into the binary: its path inside the model
/// directory and its bytes.
macro_rules! shipped_file {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/resources/model/",
                $name
            )) as &[u8],
        )
    };
}

/// The shipped model's files, compiled into the binary so that it works from any folder:
/// its config, head and backbone (pretrained, with stage 7 and the head conv fine-tuned)
/// at 160×240, and the same for its member network at 192×288.
const EMBEDDED_MODEL: [(&str, &[u8]); 6] = [
    shipped_file!("model.json"),
    shipped_file!("model.bpk"),
    shipped_file!("backbone.bpk"),
    shipped_file!("192x288/model.json"),
    shipped_file!("192x288/model.bpk"),
    shipped_file!("192x288/backbone.bpk"),
];

/// The embedded shipped model, written once (atomically) into the cache directory
/// (`~/.cache/movie-eras/shipped-model-<hash>`): used when no model folder is found
/// beside the binary, in its `share` folder or in the source tree.
pub fn embedded_model_dir() -> Option<PathBuf> {
    embedded_model_in(&crate::paths::cache_dir()?)
}

/// [`embedded_model_dir`] under `cache`.
pub fn embedded_model_in(cache: &Path) -> Option<PathBuf> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (name, bytes) in EMBEDDED_MODEL {
        hasher.update(name.as_bytes());
        hasher.update(bytes);
    }
    let hash = format!("{:x}", hasher.finalize());
    let dir = cache.join(format!("shipped-model-{}", &hash[..16]));
    for (name, bytes) in EMBEDDED_MODEL {
        let path = dir.join(name);
        let whole = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !whole {
            std::fs::create_dir_all(path.parent()?).ok()?;
            crate::fsutil::write_atomic(&path, bytes).ok()?;
        }
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eras::EraSchemes;

    #[test]
    fn the_embedded_model_loads_from_the_cache_like_the_shipped_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = embedded_model_in(tmp.path()).unwrap();
        let device = burn::prelude::Device::flex();
        let embedded = inference::EraModel::load(&dir, &device).unwrap();
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("resources/model");
        assert_eq!(
            embedded.fingerprint,
            inference::fingerprint(&shipped).unwrap(),
            "the embedded model is the shipped one"
        );
        // A second call reuses the files.
        assert_eq!(embedded_model_in(tmp.path()).unwrap(), dir);
    }

    #[test]
    fn bins_map_years_and_sum_to_eras() {
        let bins = YearBins::default();
        assert_eq!(bins.bin(1850), 0);
        assert_eq!(bins.bin(1890), 0);
        assert_eq!(bins.bin(1954), 12);
        assert_eq!(bins.bin(1955), 13);
        assert_eq!(bins.bin(2100), 27);
        assert_eq!(bins.range(12), (1950, 1954));
        // All mass in 1935–1939: 4/5 before 1939, 1/5 Golden Age.
        let mut p = vec![0.0f32; bins.count];
        p[bins.bin(1937)] = 1.0;
        let schemes = EraSchemes::builtin();
        let h = schemes.get("hollywood").unwrap();
        let eras = bins.era_probs(&p, h);
        assert!((eras[0] - 0.8).abs() < 1e-9 && (eras[1] - 0.2).abs() < 1e-9);
        assert!((eras.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((bins.expected_year(&p) - 1937.0).abs() < 1e-9);
        let d = bins.decade_probs(&p);
        let d1930 = d.iter().find(|(y, _)| *y == 1930).unwrap().1;
        assert!((d1930 - 1.0).abs() < 1e-9);
        // Quantiles of a single uniform bin run across it.
        assert!((bins.quantile(&p, 0.5) - 1937.0).abs() < 1e-9);
        assert!((bins.quantile(&p, 0.0) - 1934.5).abs() < 1e-9);
        assert!((bins.estimated_year(&p) - 1937.0).abs() < 1e-9);
    }

    #[test]
    fn the_estimated_year_is_the_median_not_the_mean() {
        // 60% on 1950-54, 40% on 2010-14: the mean (1976) is a year the model all but
        // rules out; the median lies in the likelier bin, 1953.67.
        let bins = YearBins::default();
        let mut p = vec![0.0f32; bins.count];
        p[bins.bin(1952)] = 0.6;
        p[bins.bin(2012)] = 0.4;
        assert!((bins.expected_year(&p) - 1976.0).abs() < 1e-4);
        let median = bins.estimated_year(&p);
        assert!(
            (median - (1949.5 + 5.0 * 0.5 / 0.6)).abs() < 1e-4,
            "{median}"
        );
    }
}
