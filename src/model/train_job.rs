//! The training job as the window and the CLI ask for it: one request type with its
//! defaults and checks ([`TrainRequest::options`]), and one job function
//! ([`run_training`]) that both run, so the two cannot disagree on a default, a bound or
//! what a resumed run does.

use std::path::{Path, PathBuf};

use super::backbone::Arch;
use super::backend::{self, BackendChoice};
use super::network::{FeatureLevels, NetworkConfig};
use super::training::{self, TrainEvent, TrainOptions, TrainSummary};
use super::{ModelError, Result};
use crate::eras::EraSchemes;
use crate::jobs::{Control, Progress};
use crate::paths::DataDir;

/// Weight of the teachers' probabilities in the targets when distilling and none is asked
/// for: half teachers, half the poster's own year.
pub const DEFAULT_DISTILL: f64 = 0.5;

/// Strength of the correction for the training year mix recorded with a new model when
/// none is asked for ([`super::prior`]).
pub const DEFAULT_PRIOR_STRENGTH: f32 = 0.0;

/// What a person asks of a training run; `None` fields take the regime's default
/// (a head on cached backbone features, fine-tuning, or a network from scratch).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainRequest {
    /// Feature extractor: a pretrained backbone or the small CNN from scratch.
    pub arch: Arch,
    /// With a backbone: its last K blocks train too (0 keeps it frozen).
    pub finetune_blocks: usize,
    /// With fine-tuning: train on cached input maps of the first trainable block.
    pub finetune_cached: bool,
    /// Hidden units of an MLP head (default: the network's).
    pub hidden: Option<usize>,
    /// Heads of an ensemble on cached features.
    pub heads: usize,
    /// Which backbone features the head reads (default: the network's).
    pub levels: Option<FeatureLevels>,
    /// Start from this model's weights.
    pub init_from: Option<PathBuf>,
    /// Dropout before the classifier (default: the network's).
    pub dropout: Option<f64>,
    /// Weight decay (default: per regime).
    pub weight_decay: Option<f32>,
    /// σ of the soft year targets, in years.
    pub sigma: f64,
    /// Weight of the expected-year term of the loss.
    pub year_loss: f64,
    /// Share of each batch's highest-loss posters left out (noisy labels).
    pub small_loss: f64,
    /// Teacher model directories to distil from.
    pub teachers: Vec<PathBuf>,
    /// Weight of the teachers' probabilities in the targets.
    pub distill: f64,
    /// Strength of the correction for the training year mix ([`super::prior`]).
    pub prior_strength: f32,
    /// Keep near-duplicate posters on one side of the split.
    pub near_duplicates: bool,
    /// Epochs in all (default: per regime; a resumed run: the checkpoint's).
    pub epochs: Option<usize>,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Model directory to write (default: the data directory's trained model).
    pub out: Option<PathBuf>,
    /// Continue from the newest checkpoint in the output directory.
    pub resume: bool,
    /// Backend.
    pub backend: BackendChoice,
    /// Seed of the split, sampling, augmentation and initialisation.
    pub seed: u64,
    /// Share of movies held out for validation.
    pub val_share: f64,
    /// Class balance of sampling (0 natural … 1 equal per bin).
    pub balance: f64,
    /// Channels of the conv blocks (from scratch).
    pub widths: Vec<usize>,
    /// Conv blocks per stage (from scratch).
    pub stage_depth: usize,
    /// Network input `(width, height)` (default: the network's).
    pub input: Option<(usize, usize)>,
    /// Share of steps on shrunken, re-encoded copies (default: per regime).
    pub rescale: Option<f32>,
    /// Images per epoch (0: the training set's size).
    pub epoch_size: usize,
    /// Use at most this many posters (0: all).
    pub limit: usize,
}

impl Default for TrainRequest {
    fn default() -> Self {
        let d = TrainOptions::default();
        Self {
            arch: Arch::EfficientnetLite0,
            finetune_blocks: 0,
            finetune_cached: false,
            hidden: None,
            heads: 1,
            levels: None,
            init_from: None,
            dropout: None,
            weight_decay: None,
            sigma: d.sigma,
            year_loss: 0.0,
            small_loss: 0.0,
            teachers: Vec::new(),
            distill: DEFAULT_DISTILL,
            prior_strength: DEFAULT_PRIOR_STRENGTH,
            near_duplicates: true,
            epochs: None,
            batch: d.batch,
            lr: d.lr,
            out: None,
            resume: false,
            backend: BackendChoice::Auto,
            seed: d.seed,
            val_share: d.val_share,
            balance: d.balance,
            widths: NetworkConfig::default().widths,
            stage_depth: 1,
            input: None,
            rescale: None,
            epoch_size: 0,
            limit: 0,
        }
    }
}

impl TrainRequest {
    fn scratch(&self) -> bool {
        self.arch == Arch::Scratch
    }

    /// Epochs when none are asked for: 30 for a head on cached backbone features, 12 from
    /// scratch or when fine-tuning blocks.
    pub fn default_epochs(&self) -> usize {
        if self.scratch() || self.finetune_blocks > 0 {
            TrainOptions::default().epochs
        } else {
            training::BACKBONE_EPOCHS
        }
    }

    /// Where the model is written.
    pub fn out_dir(&self, data_dir: &DataDir) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| data_dir.trained_model_dir())
    }

    /// Checks the request and fills in the defaults (without looking at checkpoints).
    pub fn options(&self) -> Result<TrainOptions> {
        let bad = |m: String| Err(ModelError::Data(m));
        let base = if self.scratch() {
            NetworkConfig::default()
        } else {
            NetworkConfig::pretrained(self.arch)
        };
        let (w, h) = self.input.unwrap_or((base.input_width, base.input_height));
        if !((16..=512).contains(&w) && (16..=512).contains(&h)) {
            return bad(format!("input {w}x{h}: sides must be 16..=512"));
        }
        if !self.scratch() && (w < 64 || h < 64) {
            return bad(format!(
                "input {w}x{h}: a backbone needs sides of at least 64"
            ));
        }
        if self.scratch() && self.widths.is_empty() {
            return bad("widths: the network needs at least one block".into());
        }
        if !(1..=8).contains(&self.stage_depth) {
            return bad("stage depth must be 1..=8".into());
        }
        if self.finetune_blocks > self.arch.block_count() {
            return bad(format!(
                "fine-tune blocks {}: {} has {} blocks",
                self.finetune_blocks,
                self.arch.label(),
                self.arch.block_count()
            ));
        }
        if self.finetune_cached && self.finetune_blocks == 0 {
            return bad("cached fine-tuning needs fine-tune blocks > 0".into());
        }
        let dropout = self.dropout.unwrap_or(base.dropout);
        if !(0.0..1.0).contains(&dropout) {
            return bad("dropout must be in [0, 1)".into());
        }
        let weight_decay = self.weight_decay.unwrap_or(if self.scratch() {
            TrainOptions::default().weight_decay
        } else {
            training::BACKBONE_WEIGHT_DECAY
        });
        if !(self.sigma > 0.0 && self.sigma <= 50.0 && weight_decay >= 0.0) {
            return bad("sigma must be in (0, 50] and weight decay >= 0".into());
        }
        let epochs = self.epochs.unwrap_or_else(|| self.default_epochs());
        if self.batch == 0 || epochs == 0 {
            return bad("batch size and epochs must be > 0".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1.0) {
            return bad(format!("learning rate {}: must be in (0, 1]", self.lr));
        }
        if !(0.0..=10.0).contains(&self.year_loss) {
            return bad("the year-loss weight must be in [0, 10]".into());
        }
        if !(0.0..0.9).contains(&self.small_loss) {
            return bad("the small-loss share must be in [0, 0.9)".into());
        }
        if self.small_loss > 0.0
            && (self.scratch() || (self.finetune_blocks > 0 && !self.finetune_cached))
        {
            return bad(
                "small-loss selection trains on cached features: a head on a backbone, or \
                 --finetune-cached"
                    .into(),
            );
        }
        if let Err(why) = super::prior::PriorCorrection::check_strength(self.prior_strength) {
            return bad(why);
        }
        if !(0.0..=1.0).contains(&self.distill) {
            return bad("the distillation weight must be in [0, 1]".into());
        }
        if !self.teachers.is_empty()
            && (self.scratch() || (self.finetune_blocks > 0 && !self.finetune_cached))
        {
            return bad(training::DISTILL_NEEDS_CACHE.into());
        }
        if let Some(t) = self
            .teachers
            .iter()
            .find(|t| !t.join(super::CONFIG_FILE).is_file())
        {
            return bad(format!(
                "teacher {}: not a model directory (no {})",
                t.display(),
                super::CONFIG_FILE
            ));
        }
        if !(0.0..0.9).contains(&self.val_share) || !(0.0..=1.0).contains(&self.balance) {
            return bad("validation share must be in [0, 0.9) and balance in [0, 1]".into());
        }
        let rescale = self.rescale.unwrap_or(if self.scratch() {
            0.0
        } else {
            training::BACKBONE_RESCALE
        });
        if !(0.0..=1.0).contains(&rescale) {
            return bad("the small-poster share (rescale) must be between 0 and 1".into());
        }
        let mut opts = TrainOptions {
            epochs,
            batch: self.batch,
            lr: self.lr,
            seed: self.seed,
            val_share: self.val_share,
            balance: self.balance,
            epoch_size: self.epoch_size,
            limit: self.limit,
            backend: self.backend,
            weight_decay,
            sigma: self.sigma,
            near_duplicates: self.near_duplicates,
            init_from: self.init_from.clone(),
            finetune_cached: self.finetune_cached,
            year_loss: self.year_loss,
            small_loss: self.small_loss,
            teachers: self.teachers.clone(),
            distill: if self.teachers.is_empty() {
                0.0
            } else {
                self.distill
            },
            prior_strength: self.prior_strength,
            network: base,
            ..TrainOptions::default()
        };
        opts.network.input_width = w;
        opts.network.input_height = h;
        if self.scratch() {
            opts.network.widths.clone_from(&self.widths);
            opts.network.stage_depth = self.stage_depth;
        }
        opts.network.finetune_blocks = self.finetune_blocks;
        if let Some(hidden) = self.hidden {
            opts.network.hidden = hidden;
        }
        opts.network.heads = self.heads;
        training::check_heads(&opts.network)?;
        if let Some(levels) = self.levels {
            opts.network.levels = levels;
        }
        opts.network.dropout = dropout;
        opts.augment.rescale = rescale;
        // From cached block inputs the layout features are completed stage by stage.
        if self.finetune_cached
            && opts.network.levels == FeatureLevels::Layout
            && self
                .arch
                .stage_starting_at(opts.network.frozen_blocks())
                .is_none()
        {
            return bad(format!(
                "fine-tune blocks {}: with the layout features, cached fine-tuning trains \
                 whole stages (1: stage 7; 5: stages 6-7; 8: stages 5-7)",
                self.finetune_blocks
            ));
        }
        Ok(opts)
    }

    /// Checks the request (the same checks [`run_training`] makes).
    pub fn validate(&self) -> Result<()> {
        self.options().map(|_| ())
    }

    /// The options a run into `out` trains with. Resuming from a checkpoint keeps the
    /// checkpoint's settings (input size, split, augmentation…) so that the posters are
    /// seen as before, and its number of epochs unless epochs are asked for.
    pub fn resolve(&self, out: &Path) -> Result<TrainOptions> {
        let asked = self.options()?;
        let saved = if self.resume {
            training::checkpoint_options(out)?
        } else {
            None
        };
        Ok(match saved {
            None => asked,
            Some(saved) => TrainOptions {
                epochs: self.epochs.unwrap_or(saved.epochs),
                ..saved
            },
        })
    }
}

/// The training job: one per data directory at a time; chooses the backend, reads the
/// catalog's posters and trains (resuming when asked), reporting on `progress` and
/// stopping at the end of a step when `control` is cancelled.
pub fn run_training(
    data_dir: &DataDir,
    schemes: &EraSchemes,
    request: &TrainRequest,
    control: &Control,
    progress: &Progress<TrainEvent>,
) -> Result<TrainSummary> {
    let out = request.out_dir(data_dir);
    let opts = request.resolve(&out)?;
    let _lock = crate::joblock::JobLock::acquire(data_dir, "train")
        .map_err(|e| ModelError::Data(e.to_string()))?;
    let chosen = backend::choose(opts.backend)?;
    progress.report(TrainEvent::Note(format!("backend: {}", chosen.description)));
    let catalog = crate::catalog::Catalog::open(&data_dir.catalog_path())?;
    let data = training::load_data(&catalog, data_dir, &opts, progress)?;
    training::train(
        &data,
        &out,
        &opts,
        request.resume,
        &chosen,
        schemes,
        &control.cancel,
        progress,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_epochs_follow_the_regime_for_every_caller() {
        let head = TrainRequest::default();
        assert_eq!(head.options().unwrap().epochs, training::BACKBONE_EPOCHS);
        let finetune = TrainRequest {
            finetune_blocks: 2,
            ..TrainRequest::default()
        };
        assert_eq!(
            finetune.options().unwrap().epochs,
            TrainOptions::default().epochs
        );
        let scratch = TrainRequest {
            arch: Arch::Scratch,
            ..TrainRequest::default()
        };
        assert_eq!(scratch.options().unwrap().epochs, 12);
        assert_eq!(
            TrainRequest {
                epochs: Some(3),
                ..finetune
            }
            .options()
            .unwrap()
            .epochs,
            3
        );
    }

    #[test]
    fn bad_values_are_refused_with_a_message() {
        for (req, says) in [
            (
                TrainRequest {
                    lr: 0.0,
                    ..TrainRequest::default()
                },
                "learning rate",
            ),
            (
                TrainRequest {
                    input: Some((32, 48)),
                    ..TrainRequest::default()
                },
                "at least 64",
            ),
            (
                TrainRequest {
                    heads: 2,
                    finetune_blocks: 1,
                    ..TrainRequest::default()
                },
                "ensemble",
            ),
            (
                TrainRequest {
                    finetune_blocks: 99,
                    ..TrainRequest::default()
                },
                "blocks",
            ),
            (
                TrainRequest {
                    teachers: vec!["/no/such/model".into()],
                    ..TrainRequest::default()
                },
                "not a model directory",
            ),
            (
                TrainRequest {
                    teachers: vec!["/no/such/model".into()],
                    arch: Arch::Scratch,
                    ..TrainRequest::default()
                },
                "cached features",
            ),
            (
                TrainRequest {
                    distill: 1.5,
                    ..TrainRequest::default()
                },
                "distillation weight",
            ),
        ] {
            let e = req.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_resumed_run_keeps_the_checkpoints_settings_and_epochs_unless_asked() {
        let out = tempfile::tempdir().unwrap();
        let saved = TrainOptions {
            epochs: 17,
            seed: 9,
            ..TrainRequest::default().options().unwrap()
        };
        training::write_test_checkpoint(out.path(), 4, &saved).unwrap();
        let req = TrainRequest {
            resume: true,
            seed: 1,
            ..TrainRequest::default()
        };
        let o = req.resolve(out.path()).unwrap();
        assert_eq!((o.epochs, o.seed), (17, 9));
        let o = TrainRequest {
            epochs: Some(20),
            ..req.clone()
        }
        .resolve(out.path())
        .unwrap();
        assert_eq!((o.epochs, o.seed), (20, 9));
        // Without resume the checkpoint is not read.
        let o = TrainRequest {
            resume: false,
            ..req
        }
        .resolve(out.path())
        .unwrap();
        assert_eq!((o.epochs, o.seed), (training::BACKBONE_EPOCHS, 1));
    }
}
