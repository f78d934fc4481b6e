//! The training loop: Adam with cosine learning-rate decay on soft year-bin targets,
//! validation after every epoch, a checkpoint per epoch (weights, optimiser state and
//! progress) that a later run resumes from, and a cancel flag checked between steps.

use crate::jobs::Progress;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};

use super::backbone::{self, Arch};
use super::backend::{BackendChoice, ChosenBackend};
use super::data::{self, Augment, Prepared, Sample};
use super::features::{self, FeatureCache, PosterFeatures};
use super::inference::{EraModel, load_net, save_model};
use super::metrics::{self, Evaluation};
use super::network::{CachedPart, EraNet, EraTail, FeatureLevels, NetworkConfig};
use super::prior::PriorCorrection;
use super::{MODEL_FORMAT, ModelConfig, ModelError, Result, YearBins};
use crate::eras::EraSchemes;

/// Weight decay of a head on a pretrained backbone (the shipped recipe; chosen on the
/// seed-7 split, see docs/model.md).
pub const BACKBONE_WEIGHT_DECAY: f32 = 3e-3;

/// Share of training steps that see a shrunken, re-encoded copy of the poster when a head
/// trains on a pretrained backbone (the shipped recipe: without it the style statistics
/// fall apart on small or recompressed posters; see docs/model.md).
pub const BACKBONE_RESCALE: f32 = 0.3;

/// Epochs of a head on cached backbone features (the shipped recipe: a few seconds
/// each on a CPU). From scratch and when fine-tuning blocks the default stays
/// [`TrainOptions::default`]'s 12.
pub const BACKBONE_EPOCHS: usize = 30;

/// Heads of the ensemble on a backbone's cached features (the shipped recipe's).
pub const BACKBONE_HEADS: usize = 1;

/// Most heads an ensemble may have.
pub const MAX_HEADS: usize = 16;

/// Training settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    /// Epochs in all (a resumed run continues up to this).
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay (L2).
    pub weight_decay: f32,
    /// Seed of the split, sampling, augmentation and initialisation.
    pub seed: u64,
    /// Share of movies held out for validation.
    pub val_share: f64,
    /// Exponent of class-balanced sampling (0 natural, 1 fully balanced).
    pub balance: f64,
    /// σ of the soft year targets, in years.
    pub sigma: f64,
    /// Augmentation.
    pub augment: Augment,
    /// Network shape.
    pub network: NetworkConfig,
    /// Year bins.
    pub bins: YearBins,
    /// Images drawn per epoch (0: the training set's size).
    pub epoch_size: usize,
    /// Use at most this many posters (0: all), for quick runs.
    pub limit: usize,
    /// Backend.
    pub backend: BackendChoice,
    /// Era scheme of the per-era validation figures.
    pub scheme: String,
    /// Keep near-duplicate posters (same art, other size or encoding) on one side of the
    /// split ([`data::group_near_duplicates`]).
    #[serde(default)]
    pub near_duplicates: bool,
    /// Start from this model's weights (same network shape) instead of a fresh head, e.g.
    /// a head trained on cached features before fine-tuning backbone blocks.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// With `finetune_blocks > 0`: cache each poster's input map of the first trainable
    /// block (as it is and mirrored) and fine-tune on those, instead of running the whole
    /// backbone on augmented pixels every step. Mirroring is then the only augmentation,
    /// and an epoch costs the last blocks alone: minutes on a CPU instead of hours.
    #[serde(default)]
    pub finetune_cached: bool,
    /// Weight of the year term of the loss ([`training_loss`]): the mean absolute error
    /// of the expected year, in decades, added to the cross-entropy (0: none).
    #[serde(default)]
    pub year_loss: f64,
    /// Small-loss selection for noisy labels (Han et al., co-teaching's criterion): the
    /// share of each batch's posters with the highest loss left out of it, ramped up
    /// linearly over the first [`SMALL_LOSS_RAMP`] epochs (0: every poster counts).
    #[serde(default)]
    pub small_loss: f64,
    /// Distillation: teacher model directories whose averaged bin probabilities on each
    /// training poster are mixed into its target ([`super::distill`]; empty: none).
    #[serde(default)]
    pub teachers: Vec<PathBuf>,
    /// Weight of the teachers' probabilities in the targets (0 … 1).
    #[serde(default)]
    pub distill: f64,
    /// Strength of the correction for the training year mix recorded with the model
    /// ([`super::prior`]; 0: answers as trained).
    #[serde(default)]
    pub prior_strength: f32,
}

/// Why a run on pixels cannot distil.
pub const DISTILL_NEEDS_CACHE: &str =
    "distillation trains on cached features: a head on a backbone, or --finetune-cached";

/// Epochs over which the small-loss share ramps up from 0 (the network first learns the
/// easy, clean posters; noisy ones are fitted later).
pub const SMALL_LOSS_RAMP: usize = 5;

/// The share of a batch left out by small-loss selection in `epoch` (1-based).
pub fn small_loss_share(share: f64, epoch: usize) -> f64 {
    share * (epoch as f64 / SMALL_LOSS_RAMP as f64).min(1.0)
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 12,
            batch: 64,
            lr: 2e-3,
            weight_decay: 1e-4,
            seed: 42,
            val_share: 0.15,
            balance: 0.5,
            sigma: 4.0,
            augment: Augment::default(),
            network: NetworkConfig::default(),
            bins: YearBins::default(),
            epoch_size: 0,
            limit: 0,
            backend: BackendChoice::Auto,
            scheme: "hollywood".into(),
            near_duplicates: true,
            init_from: None,
            finetune_cached: false,
            year_loss: 0.0,
            small_loss: 0.0,
            teachers: Vec::new(),
            distill: 0.0,
            prior_strength: 0.0,
        }
    }
}

/// Figures of one epoch.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation figures.
    pub validation: Evaluation,
    /// Training images per second this epoch.
    pub images_per_sec: f64,
    /// Seconds this epoch took (training and validation).
    pub seconds: f64,
}

/// What training reports.
// An epoch report is large next to the other events, but one is sent per epoch: boxing it
// would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// Data ready, backend chosen.
    Started {
        /// Backend description.
        backend: String,
        /// Training posters.
        train: usize,
        /// Validation posters.
        val: usize,
        /// Epoch training starts at (1 unless resumed).
        first_epoch: usize,
        /// Epochs in all (the run ends after this one).
        epochs: usize,
    },
    /// A training step.
    Step {
        /// Epoch.
        epoch: usize,
        /// Step within the epoch (1-based).
        step: usize,
        /// Steps per epoch.
        steps: usize,
        /// Loss of this batch.
        loss: f64,
    },
    /// An epoch ended (and its checkpoint is written).
    Epoch(EpochReport),
    /// Backbone features being computed (cached ones count as done).
    Extracting {
        /// Posters done.
        done: usize,
        /// Posters in all.
        total: usize,
        /// Estimated seconds left.
        eta_secs: f64,
    },
    /// Something worth telling.
    Note(String),
}

/// How a training run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSummary {
    /// Epoch reports of this run.
    pub epochs: Vec<EpochReport>,
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// The model directory.
    pub model_dir: PathBuf,
    /// Backend used.
    pub backend: String,
}

/// Progress saved with each checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CheckpointState {
    epoch: usize,
    options: TrainOptions,
    history: Vec<EpochReport>,
}

const CHECKPOINTS: &str = "checkpoints";
const OPTIM_FILE: &str = "optim.bpk";
const STATE_FILE: &str = "state.json";

fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(dir))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The settings a run into `out` trains with: with `resume` and a checkpoint there, the
/// checkpoint's own (input size, split, augmentation…) except the number of epochs asked
/// for now; else `opts`. Load the data with these, so that a resumed run sees the posters
/// as it did before.
pub fn resume_options(out: &Path, opts: &TrainOptions, resume: bool) -> Result<TrainOptions> {
    let saved = if resume {
        checkpoint_options(out)?
    } else {
        None
    };
    Ok(saved.map_or_else(
        || opts.clone(),
        |saved| TrainOptions {
            epochs: opts.epochs,
            ..saved
        },
    ))
}

/// The settings of the newest checkpoint in `out` (`None` without one).
pub fn checkpoint_options(out: &Path) -> Result<Option<TrainOptions>> {
    latest_checkpoint(out)
        .map(|(_, dir)| read_state(&dir).map(|s| s.options))
        .transpose()
}

/// The newest checkpoint in `out`, if any.
pub fn latest_checkpoint(out: &Path) -> Option<(usize, PathBuf)> {
    let entries = std::fs::read_dir(out.join(CHECKPOINTS)).ok()?;
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: usize = name.strip_prefix("epoch-")?.parse().ok()?;
            let dir = e.path();
            dir.join(STATE_FILE).is_file().then_some((n, dir))
        })
        .max_by_key(|(n, _)| *n)
}

/// Writes a checkpoint state alone (no weights) for tests of what a resumed run reads.
#[cfg(test)]
pub(crate) fn write_test_checkpoint(
    out: &Path,
    epoch: usize,
    options: &TrainOptions,
) -> Result<()> {
    let dir = out.join(CHECKPOINTS).join(format!("epoch-{epoch}"));
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let state = CheckpointState {
        epoch,
        options: options.clone(),
        history: Vec::new(),
    };
    let text = serde_json::to_string(&state).map_err(|e| ModelError::Data(e.to_string()))?;
    std::fs::write(dir.join(STATE_FILE), text).map_err(io_err(&dir))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Soft-target cross-entropy: `-Σ target · log_softmax(logits)`, averaged over the batch.
pub fn loss(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let [n, _] = logits.dims();
    (targets * log_softmax(logits, 1))
        .sum()
        .mul_scalar(-1.0 / n.max(1) as f64)
}

/// The training loss: soft-target cross-entropy ([`loss`]) plus, with `year_weight > 0`,
/// `year_weight` times the mean absolute error of the expected year in decades. The
/// expectation of the bin distribution is the year the model reports, so this term pulls
/// it onto the release year, where the cross-entropy alone only shapes the distribution.
pub fn training_loss(
    logits: Tensor<2>,
    targets: Tensor<2>,
    years: &[i32],
    bins: &YearBins,
    year_weight: f64,
) -> Tensor<1> {
    selected_loss(logits, targets, years, bins, year_weight, 0.0)
}

/// [`training_loss`] over the posters of the batch whose cross-entropy is among the
/// smallest `1 − leave_out` (small-loss selection; at least one poster counts).
pub fn selected_loss(
    logits: Tensor<2>,
    targets: Tensor<2>,
    years: &[i32],
    bins: &YearBins,
    year_weight: f64,
    leave_out: f64,
) -> Tensor<1> {
    let [n, _] = logits.dims();
    let keep = ((n as f64 * (1.0 - leave_out)).round() as usize).clamp(1, n.max(1));
    if keep < n {
        // Per-poster cross-entropy, read back to choose the posters (no gradient needed).
        let each = (targets.clone() * log_softmax(logits.clone().detach(), 1))
            .sum_dim(1)
            .neg();
        let values: Vec<f32> = each.into_data().try_into_vec::<f32>().unwrap_or_default();
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        order.truncate(keep);
        order.sort_unstable();
        if order.len() == keep {
            let device = logits.device();
            let rows: Tensor<1, Int> = Tensor::from_data(
                TensorData::new(order.iter().map(|&i| i as i64).collect::<Vec<_>>(), [keep]),
                &device,
            );
            let kept_years: Vec<i32> = order.iter().map(|&i| years[i]).collect();
            return selected_loss(
                logits.select(0, rows.clone()),
                targets.select(0, rows),
                &kept_years,
                bins,
                year_weight,
                0.0,
            );
        }
    }
    let ce = loss(logits.clone(), targets);
    if year_weight <= 0.0 {
        return ce;
    }
    let device = logits.device();
    let [n, k] = logits.dims();
    let centres: Vec<f32> = (0..k).map(|b| (bins.centre(b) / 10.0) as f32).collect();
    let centres: Tensor<2> = Tensor::from_data(TensorData::new(centres, [1, k]), &device);
    let truth: Vec<f32> = years.iter().map(|&y| y as f32 / 10.0).collect();
    let truth: Tensor<2> = Tensor::from_data(TensorData::new(truth, [n, 1]), &device);
    let expected = (softmax(logits, 1) * centres).sum_dim(1);
    let mae = (expected - truth).abs().mean();
    ce + mae.mul_scalar(year_weight)
}

/// Cosine decay from `lr` to 5% of it over `total` steps.
fn lr_at(lr: f64, step: usize, total: usize) -> f64 {
    let t = step as f64 / total.max(1) as f64;
    lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos()))
}

/// Bin probabilities for `images` with the network in inference mode, in batches;
/// `flip_average` also scores each mirrored image and averages the two.
pub fn predict_prepared(
    net: &EraNet,
    images: &[Prepared],
    config: &ModelConfig,
    device: &Device,
    batch: usize,
    flip_average: bool,
) -> Result<Vec<Vec<f32>>> {
    let model = EraModel {
        net: net.valid(),
        config: config.clone(),
        device: device.clone(),
        flip_average,
        source: PathBuf::new(),
        fingerprint: String::new(),
        members: Vec::new(),
    };
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch.max(1)) {
        let refs: Vec<&Prepared> = chunk.iter().collect();
        let b = data::make_batch(
            &refs,
            &config.network,
            &config.bins,
            &config.normalisation,
            None,
            4.0,
            device,
        );
        out.extend(model.probs(b.images)?);
    }
    Ok(out)
}

/// Prepared training and validation data.
pub struct TrainingData {
    /// Training images (pixels empty when a head trains on cached features).
    pub train: Vec<Prepared>,
    /// Validation images (likewise).
    pub val: Vec<Prepared>,
    /// With a frozen backbone: the posters whose features the head trains on, and the
    /// feature cache.
    pub for_features: Option<FeatureSource>,
    /// The settings the posters were selected, split and prepared with.
    prepared_with: TrainOptions,
}

/// Posters whose backbone features a head trains on.
pub struct FeatureSource {
    /// Training posters.
    pub train: Vec<Sample>,
    /// Validation posters.
    pub val: Vec<Sample>,
    /// The feature cache file.
    pub cache: PathBuf,
}

/// Whether a run with `opts` trains on cached backbone outputs: a head alone on the
/// features of a frozen backbone, or the last blocks on their cached input maps.
pub fn trains_on_features(opts: &TrainOptions) -> bool {
    opts.network.arch != Arch::Scratch
        && (opts.network.finetune_blocks == 0 || opts.finetune_cached)
}

impl TrainingData {
    /// Whether training with `opts` may use these posters: same subset, split and input
    /// size, and shrunken copies when `opts` asks for them.
    pub fn matches(&self, opts: &TrainOptions) -> bool {
        let p = &self.prepared_with;
        p.limit == opts.limit
            && p.val_share == opts.val_share
            && p.seed == opts.seed
            && p.network.input_width == opts.network.input_width
            && p.network.input_height == opts.network.input_height
            && p.network.arch == opts.network.arch
            && trains_on_features(p) == trains_on_features(opts)
            && p.near_duplicates == opts.near_duplicates
            && (opts.augment.rescale <= 0.0 || p.augment.rescale > 0.0)
    }
}

/// Checks a network's ensemble of heads: 1 to [`MAX_HEADS`], and more than one only for
/// heads on cached backbone features (no scratch network, no fine-tuned blocks).
pub fn check_heads(network: &NetworkConfig) -> Result<()> {
    if !(1..=MAX_HEADS).contains(&network.heads) {
        return Err(ModelError::Data(format!(
            "{} heads: an ensemble has 1 to {MAX_HEADS}",
            network.heads
        )));
    }
    if network.heads > 1 && (network.arch == Arch::Scratch || network.finetune_blocks > 0) {
        return Err(ModelError::Data(
            "an ensemble of heads trains on cached backbone features only: no scratch \
             network, no fine-tuned blocks"
                .into(),
        ));
    }
    Ok(())
}

/// Loads, splits and prepares the catalog's posters.
pub fn load_data(
    catalog: &crate::catalog::Catalog,
    data_dir: &crate::paths::DataDir,
    opts: &TrainOptions,
    events: &Progress<TrainEvent>,
) -> Result<TrainingData> {
    let mut samples = data::samples_from_catalog(catalog, data_dir)?;
    if opts.limit > 0 && samples.len() > opts.limit {
        // Keep a reproducible subset spread over the catalog.
        samples.sort_by(|a, b| a.key.cmp(&b.key));
        samples.truncate(opts.limit);
    }
    if opts.near_duplicates {
        let grouped = data::group_near_duplicates(&mut samples);
        if grouped > 0 {
            events.report(TrainEvent::Note(format!(
                "{grouped} posters are near-duplicates of another; each group stays on one side of the split"
            )));
        }
    }
    let (train, val) = data::split(samples, opts.val_share, opts.seed);
    data::require(train.len(), val.len())?;
    if trains_on_features(opts) {
        let year_only = |s: &Sample| Prepared {
            pixels: Vec::new(),
            low: Vec::new(),
            year: s.year,
        };
        return Ok(TrainingData {
            train: train.iter().map(year_only).collect(),
            val: val.iter().map(year_only).collect(),
            for_features: Some(FeatureSource {
                train,
                val,
                cache: data_dir.features_path(),
            }),
            prepared_with: opts.clone(),
        });
    }
    let started = Instant::now();
    let (train, bad_t) = if opts.augment.rescale > 0.0 {
        data::prepare_for_training(&train, &opts.network, opts.seed)
    } else {
        data::prepare(&train, &opts.network)
    };
    let (val, bad_v) = data::prepare(&val, &opts.network);
    for (path, why) in bad_t.iter().chain(&bad_v).take(20) {
        events.report(TrainEvent::Note(format!(
            "skipped {}: {why}",
            path.display()
        )));
    }
    events.report(TrainEvent::Note(format!(
        "decoded {} training and {} validation posters in {:.1} s ({} unreadable)",
        train.len(),
        val.len(),
        started.elapsed().as_secs_f64(),
        bad_t.len() + bad_v.len()
    )));
    data::require(train.len(), val.len())?;
    Ok(TrainingData {
        train,
        val,
        for_features: None,
        prepared_with: opts.clone(),
    })
}

/// Trains on `data`, writing the model and checkpoints under `out`. With `resume`, it
/// continues from the newest checkpoint there.
// The arguments are the job's inputs, its backend, and its control and report channels;
// grouping them in a struct would only move the list.
#[allow(clippy::too_many_arguments)]
pub fn train(
    data: &TrainingData,
    out: &Path,
    opts: &TrainOptions,
    resume: bool,
    chosen: &ChosenBackend,
    schemes: &EraSchemes,
    cancel: &Arc<AtomicBool>,
    events: &Progress<TrainEvent>,
) -> Result<TrainSummary> {
    let scheme = schemes
        .get(&opts.scheme)
        .map_err(|e| ModelError::Data(e.to_string()))?
        .clone();
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let device = chosen.device.clone().autodiff();
    let mut opts = opts.clone();
    opts.network.classes = opts.bins.count;
    check_heads(&opts.network)?;
    let mut history = Vec::new();
    let mut first_epoch = 1;
    let normalisation = if opts.network.arch == Arch::Scratch {
        data::normalisation(&data.train, &opts.network)
    } else {
        backbone::normalisation()
    };
    let mut config = ModelConfig {
        format: MODEL_FORMAT,
        network: opts.network.clone(),
        bins: opts.bins,
        normalisation,
        era_schemes: schemes.iter().map(|s| s.name.clone()).collect(),
        recipe: serde_json::Value::Null,
        validation: None,
        prior: Some(PriorCorrection::from_years(
            data.train.iter().map(|p| p.year),
            &opts.bins,
            opts.prior_strength,
        )),
        members: Vec::new(),
    };
    // Seeded so that a rerun with the same seed starts from the same weights.
    device.seed(opts.seed);
    let mut net = match &opts.init_from {
        Some(dir) => {
            let start = ModelConfig::load(dir)?;
            let same = |a: &NetworkConfig, b: &NetworkConfig| {
                (
                    a.arch,
                    a.input_width,
                    a.input_height,
                    &a.widths,
                    a.hidden,
                    a.heads,
                    a.classes,
                ) == (
                    b.arch,
                    b.input_width,
                    b.input_height,
                    &b.widths,
                    b.hidden,
                    b.heads,
                    b.classes,
                )
            };
            if !same(&start.network, &opts.network) || start.bins != opts.bins {
                return Err(ModelError::Data(format!(
                    "{} has another network shape or bins than this run",
                    dir.display()
                )));
            }
            events.report(TrainEvent::Note(format!(
                "starting from the weights in {}",
                dir.display()
            )));
            let loaded = load_net(dir, &start, &device)?;
            // Its head and (fine-tuned) backbone, in this run's network (frozen blocks).
            EraNet::new(&opts.network, &device)?
                .with_head(loaded.head())
                .with_loaded_backbone(loaded)
        }
        None => EraNet::new(&opts.network, &device)?,
    };
    if resume && let Some((epoch, dir)) = latest_checkpoint(out) {
        let state = read_state(&dir)?;
        // The run's own settings hold, except the number of epochs asked for now.
        opts = TrainOptions {
            epochs: opts.epochs,
            ..state.options
        };
        config = ModelConfig::load(&dir)?;
        net = load_net(&dir, &config, &device)?;
        history = state.history;
        first_epoch = epoch + 1;
        events.report(TrainEvent::Note(format!(
            "resuming after epoch {epoch} from {}",
            dir.display()
        )));
    }
    if !data.matches(&opts) {
        return Err(ModelError::Data(format!(
            "the posters were prepared for other settings than this run's{}: load them \
             with the options `resume_options` gives",
            if first_epoch > 1 {
                " (from its checkpoint)"
            } else {
                ""
            }
        )));
    }
    config.recipe = serde_json::to_value(&opts).unwrap_or_default();
    if let Some(source) = &data.for_features {
        let (train_f, val_f, train_low) =
            extract_features(source, &net.valid(), &config, &opts, chosen, cancel, events)?;
        let teacher = teacher_targets(source, &opts, chosen, cancel, events)?;
        let run = HeadRun {
            teacher: teacher.as_deref(),
            data,
            train_low: train_low.as_deref(),
            train_f: &train_f,
            val_f: &val_f,
            out,
            opts: &opts,
            chosen,
            scheme: &scheme,
            cancel,
            events,
        };
        if opts.network.finetune_blocks == 0 {
            let head = net.head();
            return train_head(&run, net, head, config, history, first_epoch, resume);
        }
        // The last blocks on cached input maps of the first of them (with the layout
        // features, and the frozen stages' part of them).
        let tail = EraTail::on_cached_inputs(&net, &opts.network, &device)?;
        return train_head(&run, net, tail, config, history, first_epoch, resume);
    }
    if !opts.teachers.is_empty() {
        return Err(ModelError::Data(DISTILL_NEEDS_CACHE.into()));
    }
    events.report(TrainEvent::Started {
        backend: chosen.description.clone(),
        train: data.train.len(),
        val: data.val.len(),
        first_epoch,
        epochs: opts.epochs,
    });
    let regime = PixelRegime {
        data,
        opts: &opts,
        // Raw probabilities: the shared loop applies the prior correction once.
        config: ModelConfig {
            prior: None,
            ..config.clone()
        },
        device,
        chosen,
    };
    let epochs = Epochs {
        opts: &opts,
        weights: data::balanced_weights(&data.train, &opts.bins, opts.balance),
        val_years: data.val.iter().map(|p| p.year).collect(),
        scheme: &scheme,
        first_epoch,
        optim: optimiser(&opts, out, resume, first_epoch)?,
        cancel,
        chosen,
    };
    let log = EpochLog::new(history, out, &opts, events);
    run_epochs(&regime, epochs, net.clone(), net, config, log)
}

/// One way of training: what a step's loss is, how an epoch is validated and how the
/// trained part goes into the network that is saved. [`run_epochs`] is the loop all share
/// (sampling, learning-rate schedule, cancel, validation, checkpoints, resume).
trait Regime {
    /// What the optimiser updates.
    type Part: Module;
    /// Batches drawn per step (each head of an ensemble draws its own).
    fn members(&self) -> usize {
        1
    }
    /// The loss of member `member` on the training items `chunk` (indices into the
    /// regime's training set).
    fn loss(
        &self,
        part: &Self::Part,
        member: usize,
        chunk: &[usize],
        rng: &mut rand::rngs::StdRng,
    ) -> Tensor<1>;
    /// Bin probabilities of the validation posters.
    fn validate(&self, part: &Self::Part) -> Result<Vec<Vec<f32>>>;
    /// Called before each epoch's steps (1-based epoch).
    fn begin_epoch(&self, _epoch: usize) {}
    /// `net` with `part`'s weights, as it is saved.
    fn install(&self, part: &Self::Part, net: EraNet) -> EraNet;
}

/// What the shared loop needs besides the regime.
struct Epochs<'a> {
    opts: &'a TrainOptions,
    /// Sampling weight of each training item (class balance).
    weights: Vec<f64>,
    /// Release years of the validation posters, in the regime's order.
    val_years: Vec<i32>,
    scheme: &'a crate::eras::EraScheme,
    first_epoch: usize,
    optim: burn::optim::ModuleOptimizer,
    cancel: &'a Arc<AtomicBool>,
    chosen: &'a ChosenBackend,
}

/// Adam with the run's weight decay; a resumed run's from its last checkpoint.
fn optimiser(
    opts: &TrainOptions,
    out: &Path,
    resume: bool,
    first_epoch: usize,
) -> Result<burn::optim::ModuleOptimizer> {
    let optim =
        AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(opts.weight_decay)));
    let optim = optim.init();
    if !(resume && first_epoch > 1) {
        return Ok(optim);
    }
    let file = out
        .join(CHECKPOINTS)
        .join(format!("epoch-{:03}", first_epoch - 1))
        .join(OPTIM_FILE);
    optim.load(&file).map_err(|e| ModelError::Weights {
        path: file.display().to_string(),
        message: e.to_string(),
    })
}

/// The epoch loop of every regime: each epoch draws its batches by class weight (one
/// order per member), steps with a cosine learning-rate schedule until cancelled,
/// validates, and writes the checkpoint and the model.
fn run_epochs<R: Regime>(
    regime: &R,
    e: Epochs<'_>,
    mut part: R::Part,
    mut net: EraNet,
    mut config: ModelConfig,
    mut log: EpochLog<'_>,
) -> Result<TrainSummary> {
    let Epochs {
        opts,
        weights,
        val_years,
        scheme,
        first_epoch,
        mut optim,
        cancel,
        chosen,
    } = e;
    let epoch_size = if opts.epoch_size == 0 {
        weights.len()
    } else {
        opts.epoch_size
    };
    let batch = opts.batch.max(1);
    let steps = epoch_size.div_ceil(batch).max(1);
    let total_steps = steps * opts.epochs;
    let members = regime.members().max(1);
    let mut cancelled = false;
    for epoch in first_epoch..=opts.epochs {
        regime.begin_epoch(epoch);
        let started = Instant::now();
        let mut rng = data::rng(opts.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9));
        let orders: Vec<Vec<usize>> = (0..members)
            .map(|_| data::weighted_order(&weights, steps * batch, &mut rng))
            .collect();
        let mut loss_sum = 0.0;
        let mut seen = 0usize;
        for s in 0..steps {
            if cancel.load(Ordering::Relaxed) {
                cancelled = true;
                break;
            }
            let mut loss: Option<Tensor<1>> = None;
            let mut n = 0;
            for (k, order) in orders.iter().enumerate() {
                let chunk = order
                    .get(s * batch..((s + 1) * batch).min(order.len()))
                    .unwrap_or(&[]);
                n = chunk.len();
                let l = regime.loss(&part, k, chunk, &mut rng);
                // Members share no weights: the sum's gradient is each one's own.
                loss = Some(match loss {
                    Some(sum) => sum + l,
                    None => l,
                });
            }
            let Some(l) = loss else { break };
            let lr = lr_at(opts.lr, (epoch - 1) * steps + s, total_steps);
            let value;
            (part, value) = descend(part, &mut optim, &l, lr);
            // Reported per member: the mean of the members' losses.
            let value = value / members as f64;
            loss_sum += value * n as f64;
            seen += n;
            log.step(epoch, s + 1, steps, value);
        }
        if cancelled {
            note_cancelled(log.events, epoch);
            break;
        }
        let train_secs = started.elapsed().as_secs_f64();
        let probs = config.corrected(regime.validate(&part)?);
        let validation = metrics::evaluate(&probs, &val_years, &opts.bins, scheme);
        let report = EpochReport::new(epoch, (loss_sum, seen), train_secs, started, &validation);
        net = regime.install(&part, net);
        log.close(report, &net, &mut config, &optim)?;
    }
    Ok(log.summary(cancelled, chosen))
}

/// Every step runs the whole network on augmented pixels.
struct PixelRegime<'a> {
    data: &'a TrainingData,
    opts: &'a TrainOptions,
    /// The model's config as training starts (its input normalisation).
    config: ModelConfig,
    device: Device,
    chosen: &'a ChosenBackend,
}

impl Regime for PixelRegime<'_> {
    type Part = EraNet;

    fn loss(
        &self,
        net: &EraNet,
        _member: usize,
        chunk: &[usize],
        rng: &mut rand::rngs::StdRng,
    ) -> Tensor<1> {
        let opts = self.opts;
        let items: Vec<&Prepared> = chunk.iter().map(|&i| &self.data.train[i]).collect();
        let batch = data::make_batch(
            &items,
            &opts.network,
            &opts.bins,
            &self.config.normalisation,
            Some((&opts.augment, rng)),
            opts.sigma,
            &self.device,
        );
        training_loss(
            net.forward_train(batch.images),
            batch.targets,
            &batch.years,
            &opts.bins,
            opts.year_loss,
        )
    }

    fn validate(&self, net: &EraNet) -> Result<Vec<Vec<f32>>> {
        predict_prepared(
            net,
            &self.data.val,
            &self.config,
            &self.chosen.device,
            128,
            true,
        )
    }

    fn install(&self, net: &EraNet, _saved: EraNet) -> EraNet {
        net.clone()
    }
}

/// One optimiser step of `module` on `loss` at learning rate `lr`: the updated module
/// and the loss's value.
fn descend<M: burn::module::Module>(
    module: M,
    optim: &mut burn::optim::ModuleOptimizer,
    loss: &Tensor<1>,
    lr: f64,
) -> (M, f64) {
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let grads = GradientsParams::from_grads(loss.backward(), &module);
    (optim.step(lr, module, grads), value)
}

/// What a training loop reports and keeps: every epoch's report (a resumed run's earlier
/// ones included), this run's, the checkpoints.
struct EpochLog<'a> {
    history: Vec<EpochReport>,
    this_run: Vec<EpochReport>,
    out: &'a Path,
    opts: &'a TrainOptions,
    events: &'a Progress<TrainEvent>,
}

impl<'a> EpochLog<'a> {
    fn new(
        history: Vec<EpochReport>,
        out: &'a Path,
        opts: &'a TrainOptions,
        events: &'a Progress<TrainEvent>,
    ) -> Self {
        Self {
            history,
            this_run: Vec::new(),
            out,
            opts,
            events,
        }
    }

    /// Reports a training step.
    fn step(&self, epoch: usize, step: usize, steps: usize, loss: f64) {
        self.events.report(TrainEvent::Step {
            epoch,
            step,
            steps,
            loss,
        });
    }

    /// Ends an epoch: keeps its report, records its validation in `config`, writes the
    /// checkpoint and the model, and sends the report.
    fn close(
        &mut self,
        report: EpochReport,
        net: &EraNet,
        config: &mut ModelConfig,
        optim: &burn::optim::ModuleOptimizer,
    ) -> Result<()> {
        self.history.push(report.clone());
        self.this_run.push(report.clone());
        config.validation = Some(report.validation.clone());
        write_checkpoint(
            net,
            config,
            optim,
            self.out,
            report.epoch,
            self.opts,
            &self.history,
        )?;
        self.events.report(TrainEvent::Epoch(report));
        Ok(())
    }

    /// The run's summary.
    fn summary(self, cancelled: bool, chosen: &ChosenBackend) -> TrainSummary {
        TrainSummary {
            epochs: self.this_run,
            cancelled,
            model_dir: self.out.to_path_buf(),
            backend: chosen.description.clone(),
        }
    }
}

fn note_cancelled(events: &Progress<TrainEvent>, epoch: usize) {
    events.report(TrainEvent::Note(format!(
        "cancelled during epoch {epoch}; the last checkpoint is epoch {}",
        epoch - 1
    )));
}

impl EpochReport {
    /// The report of `epoch`: `(loss sum, images)` of its steps, the seconds they took,
    /// when the epoch started (validation included in `seconds`), and the validation.
    fn new(
        epoch: usize,
        (loss_sum, seen): (f64, usize),
        train_secs: f64,
        started: Instant,
        validation: &Evaluation,
    ) -> Self {
        Self {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            validation: validation.clone(),
            images_per_sec: seen as f64 / train_secs.max(1e-9),
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Writes the epoch's checkpoint (weights, config, optimiser state, progress), then the
/// model directory itself, so `out` always holds the newest usable model.
fn write_checkpoint(
    net: &EraNet,
    config: &ModelConfig,
    optim: &burn::optim::ModuleOptimizer,
    out: &Path,
    epoch: usize,
    opts: &TrainOptions,
    history: &[EpochReport],
) -> Result<()> {
    let dir = out.join(CHECKPOINTS).join(format!("epoch-{epoch:03}"));
    save_model(net, config, &dir)?;
    optim
        .save(dir.join(OPTIM_FILE))
        .map_err(|e| ModelError::Weights {
            path: dir.join(OPTIM_FILE).display().to_string(),
            message: e.to_string(),
        })?;
    let state = CheckpointState {
        epoch,
        options: opts.clone(),
        history: history.to_vec(),
    };
    // A state that cannot be written whole fails the checkpoint: an empty state.json
    // would make the checkpoint unresumable without a word.
    let text = serde_json::to_string_pretty(&state).map_err(|e| ModelError::Config {
        path: dir.join(STATE_FILE).display().to_string(),
        message: format!("cannot serialise the checkpoint state: {e}"),
    })?;
    crate::fsutil::write_atomic(&dir.join(STATE_FILE), text.as_bytes()).map_err(io_err(&dir))?;
    save_model(net, config, out)
}

/// Features of the validation posters (`None` where unreadable).
type SplitFeatures = Vec<Option<PosterFeatures>>;

/// Backbone features of the training and validation posters, from the cache or computed
/// (with progress and an ETA), and with `--rescale` those of shrunken, re-encoded copies
/// of the training posters. Unreadable posters are dropped with a note.
fn extract_features(
    source: &FeatureSource,
    net: &EraNet,
    config: &ModelConfig,
    opts: &TrainOptions,
    chosen: &ChosenBackend,
    cancel: &Arc<AtomicBool>,
    events: &Progress<TrainEvent>,
) -> Result<(
    Vec<Option<PosterFeatures>>,
    SplitFeatures,
    Option<SplitFeatures>,
)> {
    let mut cache = FeatureCache::open(&source.cache)?;
    // Shrunken copies serve heads on pooled features and tails with the layout features.
    let low = opts.augment.rescale > 0.0
        && (config.network.finetune_blocks == 0 || config.network.levels == FeatureLevels::Layout);
    let total = source.train.len() * (1 + usize::from(low)) + source.val.len();
    let started = Instant::now();
    let mut first_done: Option<usize> = None;
    let mut run = |low_quality: bool, samples: &[Sample], offset: usize| {
        features::features_for(
            low_quality,
            samples,
            net,
            &config.network,
            &config.normalisation,
            &mut cache,
            &chosen.device,
            16,
            |done, _| {
                let done = offset + done;
                let base = *first_done.get_or_insert(done);
                let rate = (done - base) as f64 / started.elapsed().as_secs_f64().max(1e-6);
                let eta_secs = if rate > 0.0 {
                    (total - done) as f64 / rate
                } else {
                    f64::NAN
                };
                events.report(TrainEvent::Extracting {
                    done,
                    total,
                    eta_secs,
                });
            },
            || cancel.load(Ordering::Relaxed),
        )
    };
    let (train_f, bad_t) = run(false, &source.train, 0)?;
    let (val_f, bad_v) = run(false, &source.val, source.train.len())?;
    let train_low = if low {
        Some(run(true, &source.train, source.train.len() + source.val.len())?.0)
    } else {
        None
    };
    for (path, why) in bad_t.iter().chain(&bad_v).take(20) {
        events.report(TrainEvent::Note(format!("skipped {path}: {why}")));
    }
    events.report(TrainEvent::Note(format!(
        "backbone features of {total} posters ready in {:.1} s ({} unreadable)",
        started.elapsed().as_secs_f64(),
        bad_t.len() + bad_v.len()
    )));
    Ok((train_f, val_f, train_low))
}

/// The teachers' averaged probabilities on each training poster of `source` (`None`
/// without teachers).
fn teacher_targets(
    source: &FeatureSource,
    opts: &TrainOptions,
    chosen: &ChosenBackend,
    cancel: &Arc<AtomicBool>,
    events: &Progress<TrainEvent>,
) -> Result<Option<Vec<Option<Vec<f32>>>>> {
    if opts.teachers.is_empty() || opts.distill <= 0.0 {
        return Ok(None);
    }
    let started = Instant::now();
    let mut cache = FeatureCache::open(&source.cache)?;
    let probs = super::distill::teacher_probs(
        &opts.teachers,
        &source.train,
        &opts.bins,
        &mut cache,
        &chosen.device,
        |done, total| {
            events.report(TrainEvent::Extracting {
                done,
                total,
                eta_secs: f64::NAN,
            });
        },
        || cancel.load(Ordering::Relaxed),
    )?;
    events.report(TrainEvent::Note(format!(
        "teachers ({}) read {} of {} training posters in {:.1} s; targets mix in {:.0}% of them",
        opts.teachers
            .iter()
            .map(|t| t.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        probs.iter().flatten().count(),
        probs.len(),
        started.elapsed().as_secs_f64(),
        100.0 * opts.distill
    )));
    Ok(Some(probs))
}

/// Everything a head-only run reads.
#[derive(Clone, Copy)]
struct HeadRun<'a> {
    data: &'a TrainingData,
    train_f: &'a [Option<PosterFeatures>],
    /// Features of shrunken, re-encoded copies of the training posters (`--rescale`).
    train_low: Option<&'a [Option<PosterFeatures>]>,
    /// The teachers' probabilities on each training poster (distillation).
    teacher: Option<&'a [Option<Vec<f32>>]>,
    val_f: &'a [Option<PosterFeatures>],
    out: &'a Path,
    opts: &'a TrainOptions,
    chosen: &'a ChosenBackend,
    scheme: &'a crate::eras::EraScheme,
    cancel: &'a Arc<AtomicBool>,
    events: &'a Progress<TrainEvent>,
}

/// Per-dimension mean and standard deviation of the training features (poster and
/// mirror image); a deviation of (almost) zero reads as 1.
fn feature_scaling(feats: &[Option<PosterFeatures>]) -> (Vec<f32>, Vec<f32>) {
    let dim = feats.iter().flatten().next().map_or(0, |f| f.plain.len());
    let mut sum = vec![0f64; dim];
    let mut sq = vec![0f64; dim];
    let mut n = 0f64;
    for f in feats.iter().flatten() {
        for v in [&f.plain, &f.flipped] {
            for (i, x) in v.iter().enumerate().take(dim) {
                let x = f64::from(*x);
                sum[i] += x;
                sq[i] += x * x;
            }
            n += 1.0;
        }
    }
    let n = n.max(1.0);
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let sd: Vec<f32> = sq
        .iter()
        .zip(&sum)
        .map(|(q, s)| {
            let var = (q / n - (s / n) * (s / n)).max(0.0);
            let sd = var.sqrt() as f32;
            if sd > 1e-6 { sd } else { 1.0 }
        })
        .collect();
    (mean, sd)
}

/// Bin probabilities of a head (or a network tail) over cached features, averaging each
/// poster with its mirror image.
pub fn head_probs(
    head: &impl CachedPart,
    feats: &[&PosterFeatures],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(feats.len());
    for chunk in feats.chunks(128) {
        let c = chunk.first().map_or(0, |f| f.plain.len());
        let n = chunk.len();
        let plain: Vec<f32> = chunk.iter().flat_map(|f| f.plain.iter().copied()).collect();
        let flipped: Vec<f32> = chunk
            .iter()
            .flat_map(|f| f.flipped.iter().copied())
            .collect();
        let a: Tensor<2> = Tensor::from_data(TensorData::new(plain, [n, c]), device);
        let b: Tensor<2> = Tensor::from_data(TensorData::new(flipped, [n, c]), device);
        let p = (softmax(head.forward_cached(a), 1) + softmax(head.forward_cached(b), 1)) * 0.5;
        let flat = p
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Inference(format!("reading probabilities: {e:?}")))?;
        let k = flat.len() / n.max(1);
        out.extend(flat.chunks(k.max(1)).map(<[f32]>::to_vec));
    }
    Ok(out)
}

/// Trains `head` — the head alone on cached features of a frozen backbone, or the last
/// blocks with the head on cached block inputs — seconds to minutes on a CPU. Same loop,
/// checkpoints, resume and cancel as the full network.
fn train_head<P: CachedPart>(
    run: &HeadRun<'_>,
    net: EraNet,
    mut head: P,
    config: ModelConfig,
    history: Vec<EpochReport>,
    first_epoch: usize,
    resume: bool,
) -> Result<TrainSummary> {
    let HeadRun {
        data,
        train_f,
        train_low,
        teacher,
        val_f,
        out,
        opts,
        chosen,
        scheme,
        cancel,
        events,
    } = *run;
    let device = chosen.device.clone().autodiff();
    // A head trains on standardised features (each input dimension to mean 0 and
    // deviation 1 over the training posters): features of very different scales (style
    // statistics beside pooled maps) then train well. The scaling is folded into the
    // head's first layer whenever it is saved, so saved heads read raw features.
    let scaling = head.standardises_inputs().then(|| feature_scaling(train_f));
    let scale = |f: &PosterFeatures| -> PosterFeatures {
        match &scaling {
            Some((m, sd)) => {
                let z = |v: &[f32]| -> Vec<f32> {
                    v.iter()
                        .zip(m.iter().zip(sd))
                        .map(|(x, (m, s))| (x - m) / s)
                        .collect()
                };
                PosterFeatures {
                    plain: z(&f.plain),
                    flipped: z(&f.flipped),
                }
            }
            None => f.clone(),
        }
    };
    let train_owned: Vec<Option<PosterFeatures>> = match &scaling {
        Some(_) => train_f.iter().map(|f| f.as_ref().map(&scale)).collect(),
        None => Vec::new(),
    };
    let val_owned: Vec<Option<PosterFeatures>> = match &scaling {
        Some(_) => val_f.iter().map(|f| f.as_ref().map(&scale)).collect(),
        None => Vec::new(),
    };
    // Shrunken, re-encoded copies, standardised like the posters (by the posters' scale).
    let low_owned: Option<Vec<Option<PosterFeatures>>> =
        train_low.map(|low| low.iter().map(|f| f.as_ref().map(&scale)).collect());
    let (train_f, val_f) = if scaling.is_some() {
        (&train_owned[..], &val_owned[..])
    } else {
        (train_f, val_f)
    };
    // A head read from a saved model (resume, --init-from) has the scaling folded in.
    if let Some((m, sd)) = &scaling
        && (first_epoch > 1 || opts.init_from.is_some())
    {
        // Folded outside autodiff, then back on the training device.
        head = head
            .valid()
            .fold_scaling(m, sd, true)
            .to_device(&device)
            .train();
    }
    // Posters whose features exist, with their years.
    let low_of = |i: usize| -> Option<&PosterFeatures> { low_owned.as_ref()?.get(i)?.as_ref() };
    let teacher_of = |i: usize| -> Option<&[f32]> { teacher?.get(i)?.as_deref() };
    let train: Vec<CachedItem<'_>> = train_f
        .iter()
        .zip(&data.train)
        .enumerate()
        .filter_map(|(i, (f, p))| {
            f.as_ref().map(|f| CachedItem {
                features: f,
                low: low_of(i),
                teacher: teacher_of(i),
                poster: p,
            })
        })
        .collect();
    let val: Vec<(&PosterFeatures, i32)> = val_f
        .iter()
        .zip(&data.val)
        .filter_map(|(f, p)| f.as_ref().map(|f| (f, p.year)))
        .collect();
    data::require(train.len(), val.len())?;
    events.report(TrainEvent::Started {
        backend: format!("{} (head on cached features)", chosen.description),
        train: train.len(),
        val: val.len(),
        first_epoch,
        epochs: opts.epochs,
    });
    let years: Vec<Prepared> = train
        .iter()
        .map(|item| Prepared {
            pixels: Vec::new(),
            low: Vec::new(),
            year: item.poster.year,
        })
        .collect();
    let regime = CachedRegime {
        dim: train.first().map_or(0, |item| item.features.plain.len()),
        train,
        val_feats: val.iter().map(|(f, _)| *f).collect(),
        members: head.members().max(1),
        scaling,
        opts,
        device,
        chosen,
        leave_out: std::cell::Cell::new(0.0),
        part: std::marker::PhantomData::<P>,
    };
    let epochs = Epochs {
        opts,
        weights: data::balanced_weights(&years, &opts.bins, opts.balance),
        val_years: val.iter().map(|(_, y)| *y).collect(),
        scheme,
        first_epoch,
        optim: optimiser(opts, out, resume, first_epoch)?,
        cancel,
        chosen,
    };
    let log = EpochLog::new(history, out, opts, events);
    run_epochs(&regime, epochs, head, net, config, log)
}

/// A training poster on cached features.
#[derive(Clone, Copy)]
struct CachedItem<'a> {
    features: &'a PosterFeatures,
    /// Its shrunken, re-encoded copy's features (`--rescale`).
    low: Option<&'a PosterFeatures>,
    /// The teachers' probabilities (distillation).
    teacher: Option<&'a [f32]>,
    poster: &'a Prepared,
}

/// The head alone on cached backbone features, or the last blocks with the head on
/// cached block inputs: each step reads a poster's cached features (its mirror image half
/// the time, its shrunken copy a share of the time) instead of running the backbone.
struct CachedRegime<'a, P> {
    train: Vec<CachedItem<'a>>,
    val_feats: Vec<&'a PosterFeatures>,
    /// Values per feature vector.
    dim: usize,
    members: usize,
    /// Mean and deviation the features were standardised with (folded into the saved head).
    scaling: Option<(Vec<f32>, Vec<f32>)>,
    opts: &'a TrainOptions,
    device: Device,
    chosen: &'a ChosenBackend,
    /// This epoch's small-loss share ([`small_loss_share`]).
    leave_out: std::cell::Cell<f64>,
    part: std::marker::PhantomData<P>,
}

impl<P: CachedPart> Regime for CachedRegime<'_, P> {
    type Part = P;

    fn members(&self) -> usize {
        self.members
    }

    fn begin_epoch(&self, epoch: usize) {
        self.leave_out
            .set(small_loss_share(self.opts.small_loss, epoch));
    }

    fn loss(
        &self,
        head: &P,
        member: usize,
        chunk: &[usize],
        rng: &mut rand::rngs::StdRng,
    ) -> Tensor<1> {
        let opts = self.opts;
        let n = chunk.len();
        let mut x = Vec::with_capacity(n * self.dim);
        let mut t = Vec::with_capacity(n * opts.bins.count);
        let mut years = Vec::with_capacity(n);
        for &i in chunk {
            let CachedItem {
                features: f,
                low,
                teacher,
                poster: p,
            } = self.train[i];
            // With --rescale, a share of the steps sees the shrunken, re-encoded copy.
            let f = match low {
                Some(low) if rand::Rng::random::<f32>(rng) < opts.augment.rescale => low,
                _ => f,
            };
            // Mirror images are the flip augmentation.
            let v = if rand::Rng::random_bool(rng, 0.5) {
                &f.flipped
            } else {
                &f.plain
            };
            x.extend_from_slice(v);
            t.extend(super::distill::target(
                p.year,
                &opts.bins,
                opts.sigma,
                teacher,
                opts.distill,
            ));
            years.push(p.year);
        }
        let x: Tensor<2> = Tensor::from_data(TensorData::new(x, [n, self.dim]), &self.device);
        let t: Tensor<2> =
            Tensor::from_data(TensorData::new(t, [n, opts.bins.count]), &self.device);
        let logits = head.forward_member(member, x);
        selected_loss(
            logits,
            t,
            &years,
            &opts.bins,
            opts.year_loss,
            self.leave_out.get(),
        )
    }

    fn validate(&self, head: &P) -> Result<Vec<Vec<f32>>> {
        head_probs(&head.valid(), &self.val_feats, &self.chosen.device)
    }

    fn install(&self, head: &P, net: EraNet) -> EraNet {
        match &self.scaling {
            Some((m, sd)) => head.valid().fold_scaling(m, sd, false).install(net),
            None => head.clone().install(net),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_loss_selection_leaves_out_the_worst_fitted_posters() {
        let device = Device::flex();
        let bins = YearBins::default();
        let k = bins.count;
        // Three posters: the first two predicted well, the third confidently wrong.
        let years = [1950, 1990, 2010];
        let mut logits = vec![0f32; 3 * k];
        logits[bins.bin(1950)] = 6.0;
        logits[k + bins.bin(1990)] = 5.0;
        logits[2 * k + bins.bin(1930)] = 8.0;
        let targets: Vec<f32> = years
            .iter()
            .flat_map(|&y| data::soft_target(y, &bins, 4.0))
            .collect();
        let l: Tensor<2> = Tensor::from_data(TensorData::new(logits.clone(), [3, k]), &device);
        let t: Tensor<2> = Tensor::from_data(TensorData::new(targets.clone(), [3, k]), &device);
        let scalar = |x: Tensor<1>| x.into_data().try_into_vec::<f32>().unwrap()[0];
        let all = scalar(selected_loss(l.clone(), t.clone(), &years, &bins, 0.0, 0.0));
        let kept = scalar(selected_loss(
            l.clone(),
            t.clone(),
            &years,
            &bins,
            0.0,
            1.0 / 3.0,
        ));
        let first_two = scalar(loss(
            l.clone().slice([0..2, 0..k]),
            t.clone().slice([0..2, 0..k]),
        ));
        assert!((kept - first_two).abs() < 1e-5, "{kept} vs {first_two}");
        assert!(kept < all);
        // Nothing left out is the plain loss; at least one poster always counts.
        assert!(
            (all - scalar(training_loss(l.clone(), t.clone(), &years, &bins, 0.0))).abs() < 1e-6
        );
        assert!(scalar(selected_loss(l, t, &years, &bins, 0.0, 0.99)).is_finite());
        // The share ramps up over the first epochs.
        assert_eq!(small_loss_share(0.2, 0), 0.0);
        assert!((small_loss_share(0.2, 1) - 0.04).abs() < 1e-12);
        assert!((small_loss_share(0.2, 9) - 0.2).abs() < 1e-12);
    }
}
