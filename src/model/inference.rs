//! Loading a model directory and predicting eras and years for posters.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use image::RgbImage;

use super::backbone::Arch;
use super::network::{EraHead, EraNet};
use super::{
    BACKBONE_FILE, CONFIG_FILE, ModelConfig, ModelError, Result, WEIGHTS_FILE, YearBins, data,
};
use crate::eras::EraScheme;

/// A trained model ready to predict.
pub struct EraModel {
    /// The network (in inference mode).
    pub net: EraNet,
    /// Its configuration.
    pub config: ModelConfig,
    /// Where it runs.
    pub device: Device,
    /// Average the probabilities of the poster and its mirror image (test-time
    /// augmentation; on by default, the network was trained with flips).
    pub flip_average: bool,
    /// The directory it was loaded from (empty for a network in training).
    pub source: std::path::PathBuf,
    /// SHA-256 of its files (config, weights, fine-tuned backbone): the key of its stored
    /// predictions. Empty for a network in training.
    pub fingerprint: String,
}

/// A prediction for one poster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    /// Probability per year bin.
    pub bin_probs: Vec<f32>,
    /// Estimated release year (the median of the year distribution).
    pub year: f64,
    /// 10th and 90th percentile of the year distribution.
    pub interval: (f64, f64),
    /// `(decade, probability)`.
    pub decades: Vec<(i32, f64)>,
    /// `(era, probability)` for the scheme asked for, in the scheme's order.
    pub eras: Vec<(String, f64)>,
    /// Index of the most likely era.
    pub best_era: usize,
    /// The two readings, when the decade distribution has two separated modes (later art
    /// of an older film, or retro art of a newer one).
    pub two_readings: Option<super::readings::TwoReadings>,
    /// The year bins of `bin_probs` (to describe them for another scheme).
    #[serde(skip)]
    pub bins: YearBins,
}

impl Prediction {
    /// Describes bin probabilities for `scheme`.
    pub fn new(bins: YearBins, bin_probs: Vec<f32>, scheme: &EraScheme) -> Self {
        let era_probs = bins.era_probs(&bin_probs, scheme);
        let best_era = era_probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let decades = bins.decade_probs(&bin_probs);
        Self {
            year: bins.estimated_year(&bin_probs),
            interval: (
                bins.quantile(&bin_probs, 0.1),
                bins.quantile(&bin_probs, 0.9),
            ),
            two_readings: super::readings::two_readings(&decades),
            decades,
            eras: scheme
                .eras
                .iter()
                .map(|e| e.name.clone())
                .zip(era_probs)
                .collect(),
            best_era,
            bin_probs,
            bins,
        }
    }

    /// The same prediction described for another era scheme.
    pub fn for_scheme(&self, scheme: &EraScheme) -> Self {
        Self::new(self.bins, self.bin_probs.clone(), scheme)
    }

    /// The most likely era's name.
    pub fn best_era_name(&self) -> &str {
        self.eras.get(self.best_era).map_or("", |(n, _)| n.as_str())
    }
}

/// Casts every float parameter to half precision: how heads are stored (half the bytes;
/// a head's outputs move by about 1e-3 of their size, far below what a year bin needs).
struct ToHalf;

impl burn::module::ModuleMapper for ToHalf {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        param.map(|t| t.cast(burn::tensor::DType::F16))
    }
}

/// Loads weights from `path` into `module`, each cast to the module's own precision (a
/// head stored in half precision reads back as f32).
fn load_module<M: Module>(module: M, path: &Path) -> Result<M> {
    let record = burn::store::ModuleRecord::load(path)
        .map_err(bad(path))?
        .cast_to_module_dtype();
    module.try_load_record(record).map_err(bad(path))
}

fn save_module<M: Module>(module: M, dir: &Path, file: &str) -> Result<()> {
    let weights = dir.join(file);
    let tmp = dir.join(format!(".{file}.part"));
    module.save_file(&tmp).map_err(|e| ModelError::Weights {
        path: weights.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::rename(&tmp, &weights).map_err(|source| ModelError::Io {
        path: weights.display().to_string(),
        source,
    })
}

/// Saves a network with its config into `dir` (weights as burnpack, config as JSON).
/// With a pretrained backbone only the head is saved, plus the backbone when blocks of
/// it were fine-tuned.
pub fn save_model(net: &EraNet, config: &ModelConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    if config.network.arch == Arch::Scratch {
        save_module(net.clone(), dir, WEIGHTS_FILE)?;
    } else {
        // Heads in half precision: an ensemble of them stays small.
        save_module(net.head().valid().map(&mut ToHalf), dir, WEIGHTS_FILE)?;
        let finetuned = dir.join(BACKBONE_FILE);
        match net.backbone() {
            Some(b) if config.network.finetune_blocks > 0 => {
                save_module(b.clone(), dir, BACKBONE_FILE)?;
            }
            _ if finetuned.exists() => {
                std::fs::remove_file(&finetuned).map_err(|source| ModelError::Io {
                    path: finetuned.display().to_string(),
                    source,
                })?;
            }
            _ => {}
        }
    }
    config.save(dir)
}

fn bad<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> ModelError + use<E> {
    let path = path.display().to_string();
    move |e: E| ModelError::Weights {
        path: path.clone(),
        message: e.to_string(),
    }
}

/// Loads weights from `dir` into a network shaped by `config`.
pub fn load_net(dir: &Path, config: &ModelConfig, device: &Device) -> Result<EraNet> {
    let weights = dir.join(WEIGHTS_FILE);
    if !weights.is_file() {
        return Err(ModelError::Weights {
            path: weights.display().to_string(),
            message: "missing".into(),
        });
    }
    let net = EraNet::new(&config.network, device)?;
    if config.network.arch == Arch::Scratch {
        return load_module(net, &weights);
    }
    let head = load_module(EraHead::new(&config.network, device), &weights)?;
    let mut net = net.with_head(head);
    let finetuned = dir.join(BACKBONE_FILE);
    if config.network.finetune_blocks > 0 {
        let backbone = net
            .backbone()
            .cloned()
            .ok_or_else(|| ModelError::Data("no backbone to load into".into()))?;
        let backbone = load_module(backbone, &finetuned)?;
        net = net.with_backbone(backbone);
    }
    Ok(net)
}

/// SHA-256 over a model directory's files (config, weights and, if present, the
/// fine-tuned backbone): what identifies its predictions.
pub fn fingerprint(dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for file in [CONFIG_FILE, WEIGHTS_FILE, BACKBONE_FILE] {
        let path = dir.join(file);
        match std::fs::read(&path) {
            Ok(bytes) => {
                hasher.update(file.as_bytes());
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file == BACKBONE_FILE => {}
            Err(source) => {
                return Err(ModelError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

impl EraModel {
    /// Loads the model in `dir` onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.join(CONFIG_FILE).is_file() {
            return Err(ModelError::Config {
                path: dir.join(CONFIG_FILE).display().to_string(),
                message: "not a model directory (no model.json)".into(),
            });
        }
        let config = ModelConfig::load(dir)?;
        let net = load_net(dir, &config, device)?.valid();
        Ok(Self {
            net,
            config,
            device: device.clone(),
            flip_average: true,
            source: dir.to_path_buf(),
            fingerprint: fingerprint(dir)?,
        })
    }

    /// Whether this is the shipped model (loaded from [`super::default_model_dir`]).
    pub fn is_shipped(&self) -> bool {
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        super::default_model_dir().is_some_and(|shipped| same(&shipped, &self.source))
    }

    /// Which model this is, for people: "shipped model" or the directory it came from.
    pub fn describe_source(&self) -> String {
        if self.is_shipped() {
            "shipped model".to_owned()
        } else {
            self.source.display().to_string()
        }
    }

    /// Whether this model reads a frozen pretrained backbone's features, which the data
    /// directory's feature cache can supply.
    pub fn uses_cached_features(&self) -> bool {
        self.config.network.arch != Arch::Scratch && self.config.network.finetune_blocks == 0
    }

    /// Normalised input values for a poster.
    pub fn input(&self, rgb: &RgbImage) -> Vec<f32> {
        data::input_values(rgb, &self.config.network, &self.config.normalisation)
    }

    /// The input tensor `[1, 3, h, w]` for a poster.
    pub fn input_tensor(&self, rgb: &RgbImage, device: &Device) -> Tensor<4> {
        let net = &self.config.network;
        Tensor::from_data(
            TensorData::new(self.input(rgb), [1, 3, net.input_height, net.input_width]),
            device,
        )
    }

    /// Bin probabilities for a batch of input tensors `[n, 3, h, w]` (corrected for the
    /// training year mix where the model says so).
    pub fn probs(&self, images: Tensor<4>) -> Result<Vec<Vec<f32>>> {
        let [n, _, _, _] = images.dims();
        let p = if self.flip_average {
            let mirrored = images.clone().flip([3]);
            (softmax(self.net.predict(images), 1) + softmax(self.net.predict(mirrored), 1)) * 0.5
        } else {
            softmax(self.net.predict(images), 1)
        };
        let flat: Vec<f32> = p
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Inference(format!("reading probabilities: {e:?}")))?;
        let k = self.config.bins.count;
        if flat.len() != n * k {
            return Err(ModelError::Inference(format!(
                "the network gave {} outputs for {n} posters × {k} bins",
                flat.len()
            )));
        }
        Ok(self
            .config
            .corrected(flat.chunks(k).map(<[f32]>::to_vec).collect()))
    }

    /// Bin probabilities and embeddings (pooled last-block features) for posters, in
    /// one batch.
    pub fn probs_and_embeddings(&self, posters: &[RgbImage]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        if posters.is_empty() {
            return Ok(Vec::new());
        }
        let net = &self.config.network;
        let mut values = Vec::with_capacity(posters.len() * 3 * net.input_width * net.input_height);
        for p in posters {
            values.extend(self.input(p));
        }
        let n = posters.len();
        let x: Tensor<4> = Tensor::from_data(
            TensorData::new(values, [n, 3, net.input_height, net.input_width]),
            &self.device,
        );
        let mirrored = self.flip_average.then(|| x.clone().flip([3]));
        let out = self.net.forward_detached(x);
        let [_, c, _, _] = out.features.dims();
        let emb = out.features.mean_dim(3).mean_dim(2).reshape([n, c]);
        let mut probs = softmax(out.logits, 1);
        if let Some(m) = mirrored {
            probs = (probs + softmax(self.net.predict(m), 1)) * 0.5;
        }
        let read = |t: Tensor<2>| {
            t.into_data()
                .try_into_vec::<f32>()
                .map_err(|e| ModelError::Inference(format!("reading outputs: {e:?}")))
        };
        let probs = read(probs)?;
        let emb = read(emb)?;
        let k = self.config.bins.count;
        if probs.len() != n * k || emb.len() != n * c {
            return Err(ModelError::Inference("unexpected output sizes".into()));
        }
        let probs = self
            .config
            .corrected(probs.chunks(k).map(<[f32]>::to_vec).collect());
        Ok(probs
            .into_iter()
            .zip(emb.chunks(c))
            .map(|(p, e)| (p, e.to_vec()))
            .collect())
    }

    /// Turns bin probabilities into a prediction for `scheme`.
    pub fn describe(&self, bin_probs: Vec<f32>, scheme: &EraScheme) -> Prediction {
        Prediction::new(self.config.bins, bin_probs, scheme)
    }

    /// Predicts one poster.
    pub fn predict(&self, rgb: &RgbImage, scheme: &EraScheme) -> Result<Prediction> {
        let x = self.input_tensor(rgb, &self.device);
        let probs = self
            .probs(x)?
            .into_iter()
            .next()
            .ok_or_else(|| ModelError::Inference("no output for the poster".into()))?;
        Ok(self.describe(probs, scheme))
    }
}
