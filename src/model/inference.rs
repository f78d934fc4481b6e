//! Loading a model directory and predicting eras and years for posters.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use image::RgbImage;

use super::backbone::Arch;
use super::network::{EraHead, EraNet};
use super::{
    BACKBONE_FILE, CONFIG_FILE, MAX_MEMBERS, ModelConfig, ModelError, Result, WEIGHTS_FILE,
    YearBins, data,
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
    pub source: PathBuf,
    /// SHA-256 of its files (config, weights, fine-tuned backbone, members'): the key of
    /// its stored predictions. Empty for a network in training and for a member (the
    /// model's own covers it).
    pub fingerprint: String,
    /// Member networks (the config's `members`, loaded from their folders): a poster's
    /// probabilities are the mean of this network's and theirs, each corrected as its own
    /// config says.
    pub members: Vec<EraModel>,
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
    if !config.members.is_empty() {
        return Err(ModelError::Config {
            path: dir.join(CONFIG_FILE).display().to_string(),
            message: "one network is saved at a time; a model with members is made by \
                      combining saved models"
                .into(),
        });
    }
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

/// Joins trained models into one whose answer is the mean of theirs (the same recipe at
/// two input sizes, say), written to `out`, which must be absent or an empty folder:
/// `primary`'s files at the top (the network saliency explains) and each of `members` in
/// a sub-folder named after its input size ("192x288"). The models must share their year
/// bins and their split (seed, validation share, near-duplicate grouping), so that the
/// held-out posters stay held out for all of them. The new model has no validation
/// figures until they are measured. Returns its config.
pub fn combine_models(primary: &Path, members: &[PathBuf], out: &Path) -> Result<ModelConfig> {
    if members.is_empty() || members.len() > MAX_MEMBERS {
        return Err(ModelError::Data(format!(
            "combine one model with 1 to {MAX_MEMBERS} others ({} given)",
            members.len()
        )));
    }
    // A part: one network, with its weights.
    let part = |dir: &Path| -> Result<ModelConfig> {
        let c = ModelConfig::load(dir)?;
        let bad = |why: &str| ModelError::Data(format!("{}: {why}", dir.display()));
        if !c.members.is_empty() {
            return Err(bad("it has members already; combine its parts instead"));
        }
        if !dir.join(WEIGHTS_FILE).is_file() {
            return Err(bad("no weights (model.bpk)"));
        }
        Ok(c)
    };
    let mut config = part(primary)?;
    let split = |c: &ModelConfig| {
        ["seed", "val_share", "near_duplicates"].map(|k| c.recipe.get(k).cloned())
    };
    let mut names: Vec<String> = Vec::new();
    for dir in members {
        let c = part(dir)?;
        let bad = |why: &str| ModelError::Data(format!("{}: {why}", dir.display()));
        if c.bins != config.bins {
            return Err(bad("its year bins differ from the first model's"));
        }
        if split(&c) != split(&config) {
            return Err(bad(
                "it was trained on another split (seed, validation share or near-duplicate \
                 grouping) than the first model",
            ));
        }
        let base = format!("{}x{}", c.network.input_width, c.network.input_height);
        let mut name = base.clone();
        for i in 2.. {
            if !names.contains(&name) {
                break;
            }
            name = format!("{base}-{i}");
        }
        names.push(name);
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ModelError::Io {
            path: path.clone(),
            source,
        }
    };
    match std::fs::read_dir(out).map(|mut entries| entries.next().is_none()) {
        Ok(false) => {
            return Err(ModelError::Data(format!(
                "{} is not empty: name a new folder",
                out.display()
            )));
        }
        Ok(true) => std::fs::remove_dir(out).map_err(io(out))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(out)(e)),
    }
    // Built beside `out` and renamed into place: a crash leaves no half model.
    let name = out
        .file_name()
        .ok_or_else(|| ModelError::Data(format!("{} names no folder", out.display())))?;
    let tmp = out.with_file_name(format!(".{}.part", name.to_string_lossy()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    copy_model_files(primary, &tmp)?;
    for (dir, name) in members.iter().zip(&names) {
        copy_model_files(dir, &tmp.join(name))?;
    }
    config.members = names;
    config.validation = None;
    config.save(&tmp)?;
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(config)
}

/// Copies one model directory's own files (config, weights, fine-tuned backbone) into
/// `to`.
fn copy_model_files(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|source| ModelError::Io {
        path: to.display().to_string(),
        source,
    })?;
    for file in [CONFIG_FILE, WEIGHTS_FILE, BACKBONE_FILE] {
        let src = from.join(file);
        if file == BACKBONE_FILE && !src.exists() {
            continue;
        }
        std::fs::copy(&src, to.join(file)).map_err(|source| ModelError::Io {
            path: src.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// SHA-256 over a model directory's files (config, weights and, if present, the
/// fine-tuned backbone) and its members' files: what identifies its predictions.
pub fn fingerprint(dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hash_files(dir, &mut hasher)?;
    for name in ModelConfig::load(dir)?.members {
        hasher.update(b"member");
        hasher.update(name.as_bytes());
        hash_files(&dir.join(&name), &mut hasher)?;
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Feeds one model directory's own files (not its members') to `hasher`.
fn hash_files(dir: &Path, hasher: &mut sha2::Sha256) -> Result<()> {
    use sha2::Digest;
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
    Ok(())
}

impl EraModel {
    /// Loads the model in `dir` onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let mut model = Self::load_network(dir, device)?;
        for name in &model.config.members {
            let sub = dir.join(name);
            let bad = |why: &str| ModelError::Config {
                path: sub.join(CONFIG_FILE).display().to_string(),
                message: format!("member {name:?}: {why}"),
            };
            let member = Self::load_network(&sub, device)?;
            if !member.config.members.is_empty() {
                return Err(bad("a member cannot have members of its own"));
            }
            if member.config.bins != model.config.bins {
                return Err(bad("its year bins differ from the model's"));
            }
            model.members.push(member);
        }
        // Over the members' files too: each file is hashed once, here.
        model.fingerprint = fingerprint(dir)?;
        Ok(model)
    }

    /// The network in `dir` alone: its members are not loaded, and its fingerprint is
    /// left empty.
    fn load_network(dir: &Path, device: &Device) -> Result<Self> {
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
            fingerprint: String::new(),
            members: Vec::new(),
        })
    }

    /// The input sizes of its networks, this one first ("160×240 + 192×288").
    pub fn input_sizes(&self) -> String {
        std::iter::once(self)
            .chain(&self.members)
            .map(|m| {
                let n = &m.config.network;
                format!("{}×{}", n.input_width, n.input_height)
            })
            .collect::<Vec<_>>()
            .join(" + ")
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
        self.config.network.arch != Arch::Scratch
            && self.config.network.finetune_blocks == 0
            && self.members.is_empty()
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

    /// This network's bin probabilities (not its members') for a batch of input tensors
    /// `[n, 3, h, w]` (corrected for the training year mix where the model says so).
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
        let n = posters.len();
        let x = self.batch_tensor(posters);
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
        let probs = self.with_members(
            self.config
                .corrected(probs.chunks(k).map(<[f32]>::to_vec).collect()),
            posters,
        )?;
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

    /// This network's bin probabilities (not its members') for posters, in one batch.
    pub fn network_probs(&self, posters: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        if posters.is_empty() {
            return Ok(Vec::new());
        }
        self.probs(self.batch_tensor(posters))
    }

    /// The input tensor `[n, 3, h, w]` for posters.
    fn batch_tensor(&self, posters: &[RgbImage]) -> Tensor<4> {
        let net = &self.config.network;
        let mut values = Vec::with_capacity(posters.len() * 3 * net.input_width * net.input_height);
        for p in posters {
            values.extend(self.input(p));
        }
        Tensor::from_data(
            TensorData::new(
                values,
                [posters.len(), 3, net.input_height, net.input_width],
            ),
            &self.device,
        )
    }

    /// The model's bin probabilities for posters: the mean of its networks'.
    pub fn poster_probs(&self, posters: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        self.with_members(self.network_probs(posters)?, posters)
    }

    /// `own` (this network's probabilities for `posters`) averaged with its members'.
    fn with_members(&self, own: Vec<Vec<f32>>, posters: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        if self.members.is_empty() {
            return Ok(own);
        }
        let mut parts = vec![own];
        for m in &self.members {
            parts.push(m.network_probs(posters)?);
        }
        Ok(mean_probs(&parts))
    }

    /// Predicts one poster.
    pub fn predict(&self, rgb: &RgbImage, scheme: &EraScheme) -> Result<Prediction> {
        let probs = self
            .poster_probs(std::slice::from_ref(rgb))?
            .into_iter()
            .next()
            .ok_or_else(|| ModelError::Inference("no output for the poster".into()))?;
        Ok(self.describe(probs, scheme))
    }
}

/// The mean, poster by poster, of several networks' bin probabilities (`parts[network]
/// [poster][bin]`, every network scoring the same posters).
pub fn mean_probs(parts: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    let Some((first, rest)) = parts.split_first() else {
        return Vec::new();
    };
    let k = parts.len() as f32;
    let mut out = first.clone();
    for part in rest {
        for (a, b) in out.iter_mut().zip(part) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }
    for p in &mut out {
        p.iter_mut().for_each(|x| *x /= k);
    }
    out
}
