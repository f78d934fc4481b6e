//! `train`, `evaluate` and `classify`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;

use crate::catalog::Catalog;
use crate::eras::EraSchemes;
use crate::imaging::{self, ImageLimits};
use crate::jobs::JobHandle;
use crate::model::backbone::Arch;
use crate::model::backend::{self, BackendChoice};
use crate::model::catalog_pass;
use crate::model::inference::EraModel;
use crate::model::network::FeatureLevels;
use crate::model::prior::PriorCorrection;
use crate::model::saliency::{self, OverlayMode, SaliencyMethod, SaliencySettings};
use crate::model::train_job::{self, TrainRequest};
use crate::model::training::{self, TrainEvent};
use crate::model::{data, metrics};
use crate::paths::DataDir;

/// Options of `train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Feature extractor: a pretrained backbone (the head trains on cached features; with
    /// --finetune-blocks the backbone's last blocks train too) or the small CNN from
    /// scratch.
    #[arg(long, value_enum, default_value_t = Arch::EfficientnetLite0)]
    pub arch: Arch,
    /// With a pretrained backbone: also train its last K blocks (with augmentation; slow on
    /// a CPU, the way to use a GPU). 0 keeps it frozen.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub finetune_blocks: usize,
    /// With --finetune-blocks: cache each poster's input to the first trainable block once
    /// and fine-tune on those maps (mirroring is the only augmentation): minutes per epoch
    /// on a CPU instead of hours.
    #[arg(long, requires = "finetune_blocks")]
    pub finetune_cached: bool,
    /// Hidden units of an MLP head, 0 for a linear head (default: 512 on a backbone, the
    /// shipped recipe; 0 from scratch).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Heads on the same backbone features, each trained on its own and averaged (an
    /// ensemble at the cost of one backbone pass; a head on cached features only).
    #[arg(long, default_value_t = 1)]
    pub heads: usize,
    /// With a pretrained backbone: which features the head reads — the pooled last map,
    /// the pooled outputs of the last three stages, both, the last map with the style
    /// statistics of the last five stages, or the last map with the style statistics of
    /// every stage and the mid-level features of the poster's top, middle and bottom
    /// third (default: layout, the shipped recipe).
    #[arg(long, value_enum)]
    pub levels: Option<FeatureLevels>,
    /// Start from this model's weights (same network shape), e.g. a head trained on cached
    /// features before fine-tuning backbone blocks.
    #[arg(long, value_name = "DIR")]
    pub init_from: Option<PathBuf>,
    /// Dropout before the classifier (default: 0.5 on a backbone, 0.3 from scratch).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Weight decay (L2) of Adam (default: 3e-3 on a backbone, 1e-4 from scratch).
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// σ of the soft year targets, in years.
    #[arg(long, default_value_t = 4.0)]
    pub sigma: f64,
    /// Weight of the expected-year term of the loss (mean absolute error in decades,
    /// added to the cross-entropy; 0: cross-entropy alone).
    #[arg(long, default_value_t = 0.0)]
    pub year_loss: f64,
    /// Noisy labels, small-loss selection: leave out of each batch's loss this share of
    /// its posters with the highest loss (ramped up over the first epochs; 0: none), so
    /// that posters whose art belongs to another decade than their film (re-release art)
    /// pull less. On cached features and cached block inputs.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub small_loss: f64,
    /// Distillation: a teacher model directory (repeat for an ensemble, whose
    /// probabilities are averaged). Each training poster's target mixes the teachers'
    /// probabilities in with weight --distill. Teachers read a pretrained backbone's
    /// cached features; on cached features and cached block inputs.
    #[arg(long = "teacher", value_name = "DIR")]
    pub teachers: Vec<PathBuf>,
    /// Weight of the teachers' probabilities in the targets (0 … 1).
    #[arg(long, default_value_t = train_job::DEFAULT_DISTILL, value_name = "W")]
    pub distill: f64,
    /// Correct the model's answers for the training year mix with this strength τ
    /// (0 … 2; 0: answers as trained): bin probabilities are divided by the training
    /// share of their bin raised to τ. The mix is recorded with the model (`evaluate
    /// --prior-strength` scores other strengths).
    #[arg(long, default_value_t = train_job::DEFAULT_PRIOR_STRENGTH, value_name = "TAU")]
    pub prior_strength: f32,
    /// Split by poster hash only, without keeping near-duplicate posters together.
    #[arg(long)]
    pub no_near_duplicates: bool,
    /// Epochs in all; a resumed run continues up to this number (default: 30 for a head
    /// on cached backbone features, 12 from scratch or when fine-tuning blocks).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate (cosine decay to 5%).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Model directory to write (default: `<data dir>/models/era-model`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue from the newest checkpoint in the output directory.
    #[arg(long)]
    pub resume: bool,
    /// Backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Seed of the split, sampling, augmentation and initialisation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of movies held out for validation.
    #[arg(long, default_value_t = 0.15)]
    pub val_share: f64,
    /// Class balance of sampling: 0 natural frequencies … 1 equal per year bin.
    #[arg(long, default_value_t = 0.5)]
    pub balance: f64,
    /// Channels of the conv blocks, comma separated.
    #[arg(long, default_value = "32,64,128,192", value_delimiter = ',')]
    pub widths: Vec<usize>,
    /// Conv blocks per stage: a 2×2 max-pool follows every N-th block (not the last).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub stage_depth: u16,
    /// Network input size, WIDTHxHEIGHT (default: 160x240 on a backbone, 64x96 from
    /// scratch).
    #[arg(long)]
    pub input: Option<String>,
    /// Share of steps that see a poster's shrunken (35–75%), re-compressed copy instead
    /// of the poster: robustness to small or re-encoded posters (default: 0.3 on a
    /// backbone, the shipped recipe; 0 from scratch).
    #[arg(long)]
    pub rescale: Option<f32>,
    /// Images per epoch (default: the training set's size).
    #[arg(long, default_value_t = 0)]
    pub epoch_size: usize,
    /// Use at most this many posters (quick runs).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--input {s}: expected WIDTHxHEIGHT, e.g. 64x96"))?;
    let w: usize = w.trim().parse().context("--input width")?;
    let h: usize = h.trim().parse().context("--input height")?;
    anyhow::ensure!(
        (16..=512).contains(&w) && (16..=512).contains(&h),
        "--input {s}: sides must be 16..=512"
    );
    Ok((w, h))
}

impl TrainArgs {
    /// The training request these flags ask for (checked by the job itself).
    pub fn request(&self) -> Result<TrainRequest> {
        Ok(TrainRequest {
            arch: self.arch,
            finetune_blocks: self.finetune_blocks,
            finetune_cached: self.finetune_cached,
            hidden: self.hidden,
            heads: self.heads,
            levels: self.levels,
            init_from: self.init_from.clone(),
            dropout: self.dropout,
            weight_decay: self.weight_decay,
            sigma: self.sigma,
            year_loss: self.year_loss,
            small_loss: self.small_loss,
            teachers: self.teachers.clone(),
            distill: self.distill,
            prior_strength: self.prior_strength,
            near_duplicates: !self.no_near_duplicates,
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            out: self.out.clone(),
            resume: self.resume,
            backend: self.backend,
            seed: self.seed,
            val_share: self.val_share,
            balance: self.balance,
            widths: self.widths.clone(),
            stage_depth: usize::from(self.stage_depth),
            input: self.input.as_deref().map(parse_size).transpose()?,
            rescale: self.rescale,
            epoch_size: self.epoch_size,
            limit: self.limit,
        })
    }
}

/// Runs `train`.
pub fn cmd_train(data_dir: &DataDir, schemes: &EraSchemes, args: &TrainArgs) -> Result<()> {
    let request = args.request()?;
    request.validate()?;
    let job = {
        let data_dir = data_dir.clone();
        let schemes = schemes.clone();
        let request = request.clone();
        JobHandle::spawn(
            "training",
            crate::jobs::no_waker(),
            move |control, progress| {
                train_job::run_training(&data_dir, &schemes, &request, control, progress)
            },
        )?
    };
    let pb = super::progress_bar(0, "training");
    let result = job.join_with(|ev| match ev {
        TrainEvent::Started {
            backend,
            train,
            val,
            first_epoch,
            epochs,
        } => pb.suspend(|| {
            eprintln!(
                "training on {train} posters, validating on {val} ({backend}), epochs {first_epoch} to {epochs}"
            );
        }),
        TrainEvent::Step {
            epoch,
            step,
            steps,
            loss,
        } => {
            pb.set_length(steps as u64);
            pb.set_position(step as u64);
            pb.set_message(format!("epoch {epoch} loss {loss:.3}"));
        }
        TrainEvent::Epoch(r) => pb.suspend(|| {
            eprintln!(
                "epoch {:>3}: loss {:.3} | val decade {:.1}% balanced {:.1}% within-1 {:.1}% MAE {:.1} y | era acc {:.1}% F1 {:.3} | {:.0} img/s, {:.0} s",
                r.epoch,
                r.train_loss,
                100.0 * r.validation.decade_top1,
                100.0 * r.validation.balanced_decade_accuracy,
                100.0 * r.validation.within_one_decade,
                r.validation.mae_years,
                100.0 * r.validation.era_accuracy,
                r.validation.macro_f1,
                r.images_per_sec,
                r.seconds
            );
        }),
        TrainEvent::Extracting {
            done,
            total,
            eta_secs,
        } => {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
            pb.set_message(if eta_secs.is_finite() {
                format!("backbone features, {eta_secs:.0} s left")
            } else {
                "backbone features".to_string()
            });
        }
        TrainEvent::Note(n) => pb.suspend(|| eprintln!("{n}")),
    });
    pb.finish_and_clear();
    let summary = result?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        eprintln!("model written to {}", summary.model_dir.display());
    }
    Ok(())
}

/// The model directory to use: `--model`, else the shipped model, else (when the shipped
/// one is missing) the model `train` wrote into the data directory.
pub fn model_dir(data_dir: &DataDir, explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let trained = data_dir.trained_model_dir();
    crate::model::default_model_dir()
        .or_else(|| {
            trained
                .join(crate::model::CONFIG_FILE)
                .is_file()
                .then_some(trained)
        })
        .context("no model found: the shipped model is missing (resources/model); pass --model DIR")
}

/// Options shared by the jobs that use a trained model.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Model directory (default: the shipped model).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Era scheme.
    #[arg(long, default_value = "hollywood")]
    pub scheme: String,
    /// Backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl ModelArgs {
    /// Loads the model these options name.
    fn load(&self, data_dir: &DataDir) -> Result<EraModel> {
        let dir = model_dir(data_dir, self.model.as_deref())?;
        let chosen = backend::choose(self.backend)?;
        EraModel::load(&dir, &chosen.device)
            .with_context(|| format!("loading the model in {}", dir.display()))
    }
}

/// Options of `predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Model directory (default: the shipped model).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `predict` did.
#[derive(Debug, serde::Serialize)]
struct PredictSummary {
    /// Posters with a prediction of this model now.
    posters: usize,
    /// Predicted on this run (the rest were stored by an earlier run or the Gallery).
    computed: usize,
    /// The model's fingerprint (the key of its stored predictions).
    model: String,
    /// Seconds taken.
    seconds: f64,
}

/// Runs `predict`: the model over every ok poster of the catalog (the Gallery's pass),
/// storing each prediction so that `export` and the window read it back.
pub fn cmd_predict(data_dir: &DataDir, args: &PredictArgs) -> Result<()> {
    let dir = model_dir(data_dir, args.model.as_deref())?;
    let chosen = backend::choose(args.backend)?;
    let model = EraModel::load(&dir, &chosen.device)
        .with_context(|| format!("loading the model in {}", dir.display()))?;
    let catalog = Catalog::open(&data_dir.catalog_path())
        .with_context(|| format!("opening the catalog in {}", data_dir.root().display()))?;
    let posters = catalog_pass::catalog_posters(&catalog.movies()?, data_dir);
    drop(catalog);
    let fingerprint = model.fingerprint.clone();
    let start = std::time::Instant::now();
    let catalog_path = data_dir.catalog_path();
    let job = JobHandle::spawn(
        "prediction pass",
        crate::jobs::no_waker(),
        move |control, progress| {
            catalog_pass::predict_catalog(
                &model,
                &catalog_path,
                &posters,
                control,
                progress,
                &mut || {},
            )
        },
    )?;
    let pb = super::progress_bar(0, "predicting");
    let result = job.join_with(|p: catalog_pass::PassProgress| {
        pb.set_length(p.total as u64);
        pb.set_position(p.done as u64);
    });
    pb.finish_and_clear();
    let analysis = result
        .context("the prediction pass failed")?
        .context("the prediction pass was cancelled")?;
    let summary = PredictSummary {
        posters: analysis.movie_ids.len(),
        computed: analysis.computed,
        model: fingerprint,
        seconds: start.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if summary.computed == 0 {
        eprintln!(
            "nothing to do: all {} posters already have a stored prediction of this model",
            summary.posters
        );
    } else {
        eprintln!(
            "predicted {} posters ({} were stored already) in {:.1} s; `export` now carries them",
            summary.computed,
            summary.posters - summary.computed,
            summary.seconds
        );
    }
    Ok(())
}

/// Options of `evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Folder of posters (with --labels); default: the catalog's validation split.
    #[arg(long, value_name = "DIR", requires = "labels")]
    pub images: Option<PathBuf>,
    /// CSV `file,year` for --images.
    #[arg(long, value_name = "CSV", requires = "images")]
    pub labels: Option<PathBuf>,
    /// Scale every poster by this factor first (robustness check), e.g. 0.5 or 2.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
    /// Re-encode every poster as JPEG at this quality first (robustness check).
    #[arg(long, value_name = "1-100", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: Option<u8>,
    /// Also write the era confusion matrix as a PNG.
    #[arg(long, value_name = "OUT.png")]
    pub confusion_png: Option<PathBuf>,
    /// Score the poster alone, without averaging with its mirror image.
    #[arg(long)]
    pub no_flip: bool,
    /// Catalog split: keep near-duplicate posters together even if the model's recipe
    /// did not (to compare older models on the same split).
    #[arg(long, conflicts_with = "no_near_duplicates")]
    pub near_duplicates: bool,
    /// Catalog split: by poster hash only, even if the model was trained with groups.
    #[arg(long)]
    pub no_near_duplicates: bool,
    /// Also run this model and average the two models' bin probabilities (an ensemble),
    /// each as it answers (its members and prior correction included).
    #[arg(long, value_name = "DIR")]
    pub ensemble: Option<PathBuf>,
    /// Only the held-out posters whose file lies under this folder (one of several
    /// imported folders, say); without --images.
    #[arg(long, value_name = "DIR", conflicts_with = "images")]
    pub under: Option<PathBuf>,
    /// Only the held-out posters that a split with this smaller validation share would
    /// train on: with a model trained at --val-share 0.3, `--outside-share 0.15` scores
    /// the band between the two, which a model trained at 0.15 trains on and is never
    /// tested on (where to tune a setting honestly); without --images.
    #[arg(long, value_name = "SHARE", conflicts_with = "images")]
    pub outside_share: Option<f64>,
    /// Score the model at each of these prior-correction strengths (comma-separated,
    /// 0 … 2, the training year mix the model's own, or on the catalog its training
    /// split's) instead of at the model's own strength.
    #[arg(long, value_name = "TAU,...", value_delimiter = ',')]
    pub prior_strength: Vec<f32>,
    /// Also write each scored poster's file, release year and bin probabilities (after
    /// any --ensemble and the model's own prior correction) to this CSV file, for
    /// analysis in other tools.
    #[arg(long, value_name = "OUT.csv", conflicts_with = "prior_strength")]
    pub probs_csv: Option<PathBuf>,
    /// Model, scheme, backend, output.
    #[command(flatten)]
    pub common: ModelArgs,
}

fn read_labels(images: &Path, labels: &Path) -> Result<Vec<data::Sample>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(labels)
        .with_context(|| format!("reading {}", labels.display()))?;
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{} line {}", labels.display(), i + 1))?;
        let (Some(file), Some(year)) = (rec.get(0), rec.get(1)) else {
            continue;
        };
        let Ok(year) = year.trim().parse::<i32>() else {
            continue; // header or a row without a year
        };
        out.push(data::Sample {
            path: images.join(file.trim()),
            year,
            key: file.to_owned(),
            title: rec.get(2).unwrap_or("").to_owned(),
            split_key: None,
        });
    }
    Ok(out)
}

/// How to choose the catalog's held-out posters (see [`EvaluateArgs`]).
#[derive(Debug, Default, Clone, Copy)]
struct SplitChoice<'a> {
    near_duplicates: bool,
    no_near_duplicates: bool,
    outside_share: Option<f64>,
    under: Option<&'a Path>,
}

/// The catalog's posters that `model` was not trained on (its recipe's split, or the one
/// `choice` asks for), and the training posters' years.
fn held_out_samples(
    data_dir: &DataDir,
    model: &EraModel,
    choice: SplitChoice<'_>,
) -> Result<(Vec<data::Sample>, Vec<i32>)> {
    let catalog = Catalog::open(&data_dir.catalog_path())?;
    let mut all = data::samples_from_catalog(&catalog, data_dir)?;
    let seed = model.config.recipe["seed"].as_u64().unwrap_or(42);
    let share = model.config.recipe["val_share"].as_f64().unwrap_or(0.15);
    // The split the model was trained with (near-duplicates kept together unless it
    // predates that), or the one asked for.
    let grouped = model.config.recipe["near_duplicates"]
        .as_bool()
        .unwrap_or(false);
    if (grouped || choice.near_duplicates) && !choice.no_near_duplicates {
        data::group_near_duplicates(&mut all);
    }
    let (train, mut held_out) = data::split(all, share, seed);
    let train_years = train.iter().map(|s| s.year).collect();
    if let Some(inner) = choice.outside_share {
        anyhow::ensure!(
            (0.0..share).contains(&inner),
            "--outside-share must be below the model's validation share ({share})"
        );
        held_out = data::split(held_out, inner, seed).0;
    }
    if let Some(dir) = choice.under {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("--under {}", dir.display()))?;
        held_out.retain(|s| s.path.canonicalize().is_ok_and(|p| p.starts_with(&dir)));
    }
    Ok((held_out, train_years))
}

/// A model's answers on labelled posters.
struct Scored {
    /// Bin probabilities per readable poster: the mean of the model's networks'.
    probs: Vec<Vec<f32>>,
    /// Release year per readable poster.
    years: Vec<i32>,
    /// The posters that could not be read, and why.
    failed: Failed,
}

/// Posters that could not be read, and why.
type Failed = Vec<(PathBuf, String)>;

/// Whether two networks failed on the same posters (so that their answers line up).
fn same_posters(a: &Failed, b: &Failed) -> bool {
    a.iter().map(|(p, _)| p).eq(b.iter().map(|(p, _)| p))
}

/// Scores `samples` with `model` and its members, each network on its own input size,
/// corrected for its training year mix as its config says unless `raw`.
fn score_samples(
    model: &EraModel,
    samples: &[data::Sample],
    reencode: &data::Reencode,
    flip_average: bool,
    raw: bool,
) -> Result<Scored> {
    let mut parts = Vec::new();
    // The first network's years and unreadable posters.
    let mut first: Option<(Vec<i32>, Failed)> = None;
    for m in std::iter::once(model).chain(&model.members) {
        let (prepared, failed) = data::prepare_with(samples, &m.config.network, reencode);
        let config = crate::model::ModelConfig {
            prior: if raw { None } else { m.config.prior.clone() },
            ..m.config.clone()
        };
        parts.push(training::predict_prepared(
            &m.net,
            &prepared,
            &config,
            &m.device,
            128,
            flip_average,
        )?);
        match &first {
            None => first = Some((prepared.iter().map(|p| p.year).collect(), failed)),
            Some((_, f)) => anyhow::ensure!(
                same_posters(f, &failed),
                "the model's networks could not read the same posters"
            ),
        }
    }
    let (years, failed) = first.unwrap_or_default();
    Ok(Scored {
        probs: crate::model::inference::mean_probs(&parts),
        years,
        failed,
    })
}

/// Options of `combine`.
#[derive(Debug, clap::Args)]
pub struct CombineArgs {
    /// The first model: its network is the one saliency explains.
    #[arg(value_name = "DIR")]
    pub primary: PathBuf,
    /// The models whose answers are averaged with the first's (typically the same recipe
    /// at another input size).
    #[arg(value_name = "MEMBER", required = true)]
    pub members: Vec<PathBuf>,
    /// The new model folder (absent or empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Do not score the new model on the catalog's held-out split (its validation
    /// figures, shown in the model menus, stay empty).
    #[arg(long)]
    pub no_score: bool,
    /// Era scheme of the recorded era accuracy.
    #[arg(long, default_value = "hollywood")]
    pub scheme: String,
    /// Print the new model's config as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `combine`: joins trained models into one whose answer is the mean of theirs,
/// then scores it on the catalog's held-out split and records the figures.
pub fn cmd_combine(data_dir: &DataDir, schemes: &EraSchemes, args: &CombineArgs) -> Result<()> {
    let scheme = schemes.get(&args.scheme)?;
    let mut config =
        crate::model::inference::combine_models(&args.primary, &args.members, &args.out)
            .context("combining the models")?;
    let model = EraModel::load(&args.out, &burn::prelude::Device::flex())
        .with_context(|| format!("loading the combined model in {}", args.out.display()))?;
    let samples = if args.no_score || !data_dir.catalog_path().is_file() {
        Vec::new()
    } else {
        held_out_samples(data_dir, &model, SplitChoice::default())?.0
    };
    if samples.is_empty() {
        eprintln!(
            "wrote {} ({}); not scored (no held-out posters in the catalog)",
            args.out.display(),
            model.input_sizes()
        );
    } else {
        let scored = score_samples(&model, &samples, &data::Reencode::default(), true, false)?;
        let e = metrics::evaluate(&scored.probs, &scored.years, &config.bins, scheme);
        eprintln!(
            "wrote {} ({}); held-out split ({} posters): decade {:.1}%, balanced {:.1}%, \
             within one decade {:.1}%, MAE {:.2} years",
            args.out.display(),
            model.input_sizes(),
            e.count,
            100.0 * e.decade_top1,
            100.0 * e.balanced_decade_accuracy,
            100.0 * e.within_one_decade,
            e.mae_years
        );
        config.validation = Some(e);
        config.save(&args.out)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&config)?);
    }
    Ok(())
}

/// Runs `evaluate`.
pub fn cmd_evaluate(data_dir: &DataDir, schemes: &EraSchemes, args: &EvaluateArgs) -> Result<()> {
    let model = args.common.load(data_dir)?;
    let scheme = schemes.get(&args.common.scheme)?;
    for &tau in &args.prior_strength {
        PriorCorrection::check_strength(tau).map_err(anyhow::Error::msg)?;
    }
    // A strength sweep reads raw probabilities and applies the correction once below,
    // at each strength; otherwise each network corrects its own as it would answer.
    let sweep = !args.prior_strength.is_empty();
    let mut train_years = Vec::new();
    let samples = match (&args.images, &args.labels) {
        (Some(images), Some(labels)) => read_labels(images, labels)?,
        _ => {
            let choice = SplitChoice {
                near_duplicates: args.near_duplicates,
                no_near_duplicates: args.no_near_duplicates,
                outside_share: args.outside_share,
                under: args.under.as_deref(),
            };
            let (held_out, years) = held_out_samples(data_dir, &model, choice)?;
            train_years = years;
            held_out
        }
    };
    anyhow::ensure!(!samples.is_empty(), "nothing to evaluate");
    anyhow::ensure!(
        args.scale > 0.0 && args.scale <= 8.0,
        "--scale must be in (0, 8]"
    );
    let reencode = data::Reencode {
        scale: args.scale,
        jpeg_quality: args.jpeg_quality,
    };
    let Scored {
        mut probs,
        years,
        failed,
    } = score_samples(&model, &samples, &reencode, !args.no_flip, sweep)?;
    for (path, why) in failed.iter().take(10) {
        eprintln!("skipped {}: {why}", path.display());
    }
    if let Some(dir) = &args.ensemble {
        let other = EraModel::load(dir, &model.device)
            .with_context(|| format!("loading the model in {}", dir.display()))?;
        anyhow::ensure!(
            other.config.bins == model.config.bins,
            "--ensemble: the models' year bins differ"
        );
        let theirs = score_samples(&other, &samples, &reencode, !args.no_flip, sweep)?;
        anyhow::ensure!(
            same_posters(&theirs.failed, &failed),
            "--ensemble: the models could not read the same posters"
        );
        probs = crate::model::inference::mean_probs(&[probs, theirs.probs]);
    }
    if sweep {
        let mix = match &model.config.prior {
            Some(p) => p.clone(),
            None if !train_years.is_empty() => {
                PriorCorrection::from_years(train_years, &model.config.bins, 0.0)
            }
            None => anyhow::bail!(
                "--prior-strength: this model records no training year mix; score it on the \
                 catalog's split (without --images), or train it again, which records one"
            ),
        };
        return report_strengths(&probs, &years, &mix, &model.config.bins, scheme, args);
    }
    if let Some(out) = &args.probs_csv {
        let failed: std::collections::HashSet<&Path> =
            failed.iter().map(|(p, _)| p.as_path()).collect();
        let paths = samples
            .iter()
            .map(|s| s.path.as_path())
            .filter(|p| !failed.contains(p));
        write_probs_csv(out, paths, &years, &probs, &model.config.bins)?;
    }
    let e = metrics::evaluate(&probs, &years, &model.config.bins, scheme);
    if let Some(out) = &args.confusion_png {
        let png = imaging::encode_png(&metrics::confusion_image(&e.era_confusion))?;
        crate::fsutil::write_atomic(out, &png)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", e.report());
        if !failed.is_empty() {
            println!("({} files could not be read)", failed.len());
        }
    }
    Ok(())
}

/// `evaluate --probs-csv`: one row per poster (file, year, then each bin's probability,
/// the header naming each bin by its years), written atomically.
fn write_probs_csv<'a>(
    out: &Path,
    paths: impl Iterator<Item = &'a Path>,
    years: &[i32],
    probs: &[Vec<f32>],
    bins: &crate::model::YearBins,
) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["file".to_string(), "year".to_string()];
    header.extend((0..bins.count).map(|b| {
        let (first, last) = bins.range(b);
        format!("{first}-{last}")
    }));
    w.write_record(&header)?;
    for ((path, year), p) in paths.zip(years).zip(probs) {
        let mut row = vec![path.display().to_string(), year.to_string()];
        row.extend(p.iter().map(|x| format!("{x:.6}")));
        w.write_record(&row)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::fsutil::write_atomic(out, &bytes).with_context(|| format!("writing {}", out.display()))
}

/// `evaluate --prior-strength`: the figures at each strength, as a table or JSON.
fn report_strengths(
    probs: &[Vec<f32>],
    years: &[i32],
    mix: &PriorCorrection,
    bins: &crate::model::YearBins,
    scheme: &crate::eras::EraScheme,
    args: &EvaluateArgs,
) -> Result<()> {
    let mut rows = Vec::new();
    for &tau in &args.prior_strength {
        let mut corrected = probs.to_vec();
        mix.with_strength(tau).apply_all(&mut corrected);
        rows.push((tau, metrics::evaluate(&corrected, years, bins, scheme)));
    }
    if args.common.json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|(tau, e)| serde_json::json!({"prior_strength": tau, "evaluation": e}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} posters; always {}s: top-1 {:.1}%, balanced {:.1}%",
        rows.first().map_or(0, |(_, e)| e.count),
        rows.first().map_or(0, |(_, e)| e.baseline.decade),
        rows.first()
            .map_or(0.0, |(_, e)| 100.0 * e.baseline.decade_top1),
        rows.first()
            .map_or(0.0, |(_, e)| 100.0 * e.baseline.balanced_decade_accuracy),
    );
    println!("strength   top-1  balanced  within one   MAE (y)   era acc.");
    for (tau, e) in &rows {
        println!(
            "{tau:>8.2}  {:>5.1}%  {:>7.1}%  {:>9.1}%  {:>8.2}  {:>8.1}%",
            100.0 * e.decade_top1,
            100.0 * e.balanced_decade_accuracy,
            100.0 * e.within_one_decade,
            e.mae_years,
            100.0 * e.era_accuracy
        );
    }
    Ok(())
}

/// Options of `classify`.
#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// Poster images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Model, scheme, backend, output.
    #[command(flatten)]
    pub common: ModelArgs,
    /// Write a saliency overlay PNG: this file for one image; with several images, a
    /// folder that receives `<image name>.<method>.png` for each.
    #[arg(long, value_name = "OUT.png")]
    pub saliency: Option<PathBuf>,
    /// Saliency method.
    #[arg(long, value_enum, default_value_t = SaliencyMethod::GradCam)]
    pub method: SaliencyMethod,
    /// Era to explain (a name of the scheme; default: the predicted era).
    #[arg(long)]
    pub era: Option<String>,
    /// How the overlay is drawn.
    #[arg(long, value_enum, default_value_t = OverlayMode::Heatmap)]
    pub overlay: OverlayMode,
    /// Overlay opacity, 0..1.
    #[arg(long, default_value_t = 0.6)]
    pub opacity: f32,
    /// SmoothGrad samples.
    #[arg(long, default_value_t = 16)]
    pub samples: usize,
    /// SmoothGrad noise (share of the input range).
    #[arg(long, default_value_t = 0.15)]
    pub noise: f32,
    /// Integrated Gradients steps.
    #[arg(long, default_value_t = 16)]
    pub steps: usize,
}

impl ClassifyArgs {
    fn settings(&self) -> SaliencySettings {
        SaliencySettings {
            method: self.method,
            samples: self.samples,
            noise: self.noise,
            steps: self.steps,
            ..SaliencySettings::default()
        }
    }

    /// Where the overlay of `image` goes, if one was asked for.
    fn overlay_path(&self, image: &Path) -> Option<PathBuf> {
        let out = self.saliency.as_ref()?;
        if self.images.len() == 1 && !out.is_dir() {
            return Some(out.clone());
        }
        let stem = image
            .file_stem()
            .map_or_else(|| "poster".into(), |s| s.to_string_lossy().into_owned());
        let method = self
            .method
            .to_possible_value()
            .map_or_else(|| "saliency".to_owned(), |v| v.get_name().to_owned());
        Some(out.join(format!("{stem}.{method}.png")))
    }
}

/// Classifies one file and writes its overlay if asked; the JSON record or the error.
fn classify_one(
    model: &EraModel,
    scheme: &crate::eras::EraScheme,
    args: &ClassifyArgs,
    path: &Path,
) -> Result<serde_json::Value> {
    let decoded = imaging::decode_poster_file(path, &ImageLimits::default())?;
    let p = model.predict(&decoded.rgb, scheme)?;
    // Years to one decimal; probabilities to four.
    let tenth = |y: f64| (y * 10.0).round() / 10.0;
    let prob = |v: f64| (v * 1e4).round() / 1e4;
    let decade = p
        .decades
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(d, _)| *d);
    let mut record = serde_json::json!({
        "file": path, "format": imaging::format_name(decoded.format),
        "conversion": decoded.conversion,
        "width": decoded.rgb.width(), "height": decoded.rgb.height(),
        "era": p.best_era_name(), "decade": decade, "year": tenth(p.year),
        "interval": [tenth(p.interval.0), tenth(p.interval.1)],
        "eras": p.eras.iter().map(|(n, v)| (n.clone(), prob(*v))).collect::<Vec<_>>(),
        "decades": p.decades.iter().map(|(d, v)| (*d, prob(*v))).collect::<Vec<_>>(),
        "two_readings": p.two_readings.map(|r| serde_json::json!({
            "art_decade": r.art_decade, "art_share": prob(r.art_share),
            "other_decade": r.other_decade, "other_share": prob(r.other_share),
            "sentence": r.sentence(),
        })),
    });
    if let Some(out) = args.overlay_path(path) {
        let era = match &args.era {
            Some(name) => scheme
                .eras
                .iter()
                .position(|e| e.name.eq_ignore_ascii_case(name))
                .with_context(|| {
                    let names: Vec<&str> = scheme.eras.iter().map(|e| e.name.as_str()).collect();
                    format!(
                        "no era {name:?} in the {} scheme ({})",
                        scheme.name,
                        names.join(", ")
                    )
                })?,
            None => p.best_era,
        };
        let started = std::time::Instant::now();
        let map = saliency::saliency(model, &decoded.rgb, scheme, era, &args.settings())?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let overlay = saliency::render_overlay(&decoded.rgb, &map, args.overlay, args.opacity);
        let png = saliency::encode_overlay_png(&overlay)?;
        crate::fsutil::write_atomic(&out, &png)
            .with_context(|| format!("writing {}", out.display()))?;
        record["saliency"] = serde_json::json!({
            "file": out, "method": args.method, "era": scheme.eras[era].name, "ms": ms,
        });
    }
    Ok(record)
}

/// Runs `classify`; fails (non-zero exit) if any image could not be classified.
pub fn cmd_classify(data_dir: &DataDir, schemes: &EraSchemes, args: &ClassifyArgs) -> Result<()> {
    let model = args.common.load(data_dir)?;
    let scheme = schemes.get(&args.common.scheme)?;
    let json = args.common.json;
    // Which model answered: once for the run, not per poster.
    let source = model.describe_source();
    let mut failures = 0usize;
    let mut results = Vec::new();
    for path in &args.images {
        match classify_one(&model, scheme, args, path) {
            Ok(mut r) => {
                r["model"] = source.clone().into();
                if !json {
                    let prob = r["eras"]
                        .as_array()
                        .and_then(|a| a.iter().find(|e| e[0] == r["era"]))
                        .and_then(|e| e[1].as_f64())
                        .unwrap_or(0.0);
                    println!(
                        "{}: {} ({:.0}%), about {:.0} (80% interval {:.0}–{:.0})",
                        path.display(),
                        r["era"].as_str().unwrap_or("?"),
                        100.0 * prob,
                        r["year"].as_f64().unwrap_or(0.0),
                        r["interval"][0].as_f64().unwrap_or(0.0),
                        r["interval"][1].as_f64().unwrap_or(0.0),
                    );
                    if let Some(two) = r["two_readings"]["sentence"].as_str() {
                        println!("  two readings: {two}");
                    }
                    if let Some(note) = r["conversion"].as_str() {
                        println!("  note: {note}");
                    }
                    if let Some(s) = r.get("saliency") {
                        println!(
                            "  saliency ({}, {}): {} in {:.0} ms",
                            s["method"].as_str().unwrap_or("?"),
                            s["era"].as_str().unwrap_or("?"),
                            s["file"].as_str().unwrap_or("?"),
                            s["ms"].as_f64().unwrap_or(0.0)
                        );
                    }
                }
                results.push(r);
            }
            Err(e) => {
                failures += 1;
                if json {
                    results.push(serde_json::json!({"file": path, "error": format!("{e:#}")}));
                } else {
                    eprintln!("{}: {e:#}", path.display());
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    anyhow::ensure!(
        failures == 0,
        "{failures} of {} images could not be classified",
        args.images.len()
    );
    Ok(())
}
