//! The Train tab: the same job as `movie-eras train` on a worker thread, with live loss and
//! accuracy curves (egui_plot), the validation confusion matrix as a heat map, the backend
//! in use, start / cancel and resume.

use eframe::egui;
use egui_plot::{Legend, Line, Plot};

use crate::eras::EraSchemes;
use crate::jobs::JobHandle;
use crate::model::ModelError;
use crate::model::backbone::Arch;
use crate::model::backend::BackendChoice;
use crate::model::metrics::Evaluation;
use crate::model::network::{FeatureLevels, NetworkConfig};
use crate::model::train_job::{TrainRequest, run_training};
use crate::model::training::{self, EpochReport, TrainEvent, TrainOptions, TrainSummary};
use crate::paths::DataDir;

/// Train form values remembered between runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    /// Epochs (`None`: the regime's default, or a resumed run's own).
    pub epochs: Option<usize>,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Backend.
    pub backend: BackendChoice,
    /// Continue from the newest checkpoint.
    pub resume: bool,
    /// Use at most this many posters (0: all).
    pub limit: usize,
    /// Network size.
    pub network: NetworkSize,
    /// With the pretrained backbone: how many of its last blocks train too.
    pub finetune_blocks: usize,
    /// Hidden units of an MLP head (0: linear).
    pub hidden: usize,
    /// With the pretrained backbone: which of its features the head reads.
    #[serde(default = "layout_levels")]
    pub levels: FeatureLevels,
    /// With the pretrained backbone: share of steps on shrunken, re-encoded copies.
    #[serde(default = "backbone_rescale")]
    pub rescale: f32,
    /// With the pretrained backbone and no fine-tuning: heads trained side by side and
    /// averaged (an ensemble).
    #[serde(default = "backbone_heads")]
    pub heads: usize,
}

fn backbone_heads() -> usize {
    training::BACKBONE_HEADS
}

fn backbone_rescale() -> f32 {
    training::BACKBONE_RESCALE
}

fn layout_levels() -> FeatureLevels {
    FeatureLevels::Layout
}

/// Networks offered in the tab (the CLI takes any `--arch`, `--input` and `--widths`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum NetworkSize {
    /// EfficientNet-Lite0 pretrained on ImageNet, 160×240 input: the head trains on cached
    /// features in minutes on a CPU (the shipped model's recipe).
    #[default]
    Pretrained,
    /// From scratch: 48×72 input, widths 16–128; fast on a CPU.
    Small,
    /// 64×96 input, widths 32–192: better with a GPU.
    Standard,
}

impl NetworkSize {
    /// The network configuration.
    pub fn config(self) -> NetworkConfig {
        match self {
            Self::Pretrained => NetworkConfig::pretrained(Arch::EfficientnetLite0),
            Self::Small => NetworkConfig {
                input_width: 48,
                input_height: 72,
                widths: vec![16, 32, 64, 128],
                ..NetworkConfig::default()
            },
            Self::Standard => NetworkConfig::default(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Pretrained => "EfficientNet-Lite0, pretrained (recommended)",
            Self::Small => "From scratch, small (48x72, CPU-friendly)",
            Self::Standard => "From scratch, standard (64x96, for a GPU)",
        }
    }
}

impl Default for TrainSettings {
    fn default() -> Self {
        let d = TrainOptions::default();
        Self {
            epochs: None,
            batch: d.batch,
            lr: d.lr,
            backend: BackendChoice::Auto,
            resume: true,
            limit: 0,
            network: NetworkSize::Pretrained,
            finetune_blocks: 0,
            hidden: 512,
            levels: FeatureLevels::Layout,
            rescale: training::BACKBONE_RESCALE,
            heads: training::BACKBONE_HEADS,
        }
    }
}

/// A feature choice for people.
fn levels_label(l: FeatureLevels) -> &'static str {
    match l {
        FeatureLevels::Layout => "last map + style + layout",
        FeatureLevels::Style => "last map + style statistics",
        FeatureLevels::Multi => "last map + mid-level",
        FeatureLevels::Mid => "mid-level only",
        FeatureLevels::Final => "last map only",
    }
}

impl TrainSettings {
    /// The training request the form asks for (the same type the CLI fills).
    pub fn request(&self) -> TrainRequest {
        let mut r = TrainRequest {
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            backend: self.backend,
            resume: self.resume,
            limit: self.limit,
            ..TrainRequest::default()
        };
        match self.network {
            NetworkSize::Pretrained => {
                r.arch = Arch::EfficientnetLite0;
                r.finetune_blocks = self.finetune_blocks;
                r.hidden = Some(self.hidden);
                r.levels = Some(self.levels);
                r.heads = if self.finetune_blocks == 0 {
                    self.heads
                } else {
                    1
                };
                r.rescale = Some(self.rescale);
            }
            size @ (NetworkSize::Small | NetworkSize::Standard) => {
                let net = size.config();
                r.arch = Arch::Scratch;
                r.input = Some((net.input_width, net.input_height));
                r.widths = net.widths;
            }
        }
        r
    }
}

struct Running {
    job: JobHandle<TrainSummary, TrainEvent, ModelError>,
    /// Epochs of the run (known once it started).
    epochs: Option<usize>,
}

/// State of the Train tab.
#[derive(Default)]
pub struct TrainTab {
    running: Option<Running>,
    backend: Option<String>,
    data: Option<(usize, usize)>,
    step: Option<(usize, usize, usize)>,
    /// `(done, total, seconds left)` of backbone feature extraction.
    extracting: Option<(usize, usize, f64)>,
    /// `(global step, loss)`.
    losses: Vec<[f64; 2]>,
    epochs: Vec<EpochReport>,
    notes: Vec<String>,
    outcome: Option<Result<String, String>>,
    /// The model the last run wrote, offered with "Use this model".
    written: Option<std::path::PathBuf>,
    /// Where "use this model" goes.
    commands: super::CommandSender,
}

impl TrainTab {
    /// Sends app commands ("use this model") to `commands`.
    #[must_use]
    pub fn with_commands(mut self, commands: super::CommandSender) -> Self {
        self.commands = commands;
        self
    }

    /// Asks a running training job to stop after the current step.
    pub fn cancel(&self) {
        if let Some(r) = &self.running {
            r.job.cancel();
        }
    }

    /// Whether training is running.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    fn start(
        &mut self,
        ctx: &egui::Context,
        data_dir: &DataDir,
        schemes: &EraSchemes,
        s: &TrainSettings,
    ) {
        let request = s.request();
        if let Err(e) = request.validate() {
            self.outcome = Some(Err(e.to_string()));
            return;
        }
        let data_dir = data_dir.clone();
        let schemes = schemes.clone();
        let job = JobHandle::spawn(
            "training",
            super::job_waker(ctx),
            move |control, progress| run_training(&data_dir, &schemes, &request, control, progress),
        );
        match job {
            Ok(job) => {
                *self = Self {
                    running: Some(Running { job, epochs: None }),
                    commands: self.commands.clone(),
                    ..Self::default()
                };
            }
            Err(e) => self.outcome = Some(Err(e.to_string())),
        }
    }

    /// Drains worker messages.
    pub fn poll(&mut self) {
        let Some(run) = &mut self.running else {
            return;
        };
        let polled = run.job.poll();
        for ev in polled.progress {
            match ev {
                TrainEvent::Started {
                    backend,
                    train,
                    val,
                    epochs,
                    ..
                } => {
                    self.backend = Some(backend);
                    self.data = Some((train, val));
                    run.epochs = Some(epochs);
                }
                TrainEvent::Step {
                    epoch,
                    step,
                    steps,
                    loss,
                } => {
                    self.step = Some((epoch, step, steps));
                    let x = (epoch - 1) as f64 + step as f64 / steps.max(1) as f64;
                    self.losses.push([x, loss]);
                }
                TrainEvent::Epoch(r) => self.epochs.push(r),
                TrainEvent::Extracting {
                    done,
                    total,
                    eta_secs,
                } => self.extracting = Some((done, total, eta_secs)),
                TrainEvent::Note(n) => self.notes.push(n),
            }
        }
        if let Some(r) = polled.done {
            self.running = None;
            self.written = r
                .as_ref()
                .ok()
                .filter(|s| !s.epochs.is_empty())
                .map(|s| s.model_dir.clone());
            self.outcome = Some(
                r.map(|s| {
                    if s.cancelled {
                        format!(
                            "Cancelled; the model in {} is the last finished epoch.",
                            s.model_dir.display()
                        )
                    } else {
                        format!("Finished; model written to {}.", s.model_dir.display())
                    }
                })
                .map_err(|e| e.to_string()),
            );
        }
    }

    /// Draws the tab.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        data_dir: &DataDir,
        schemes: &EraSchemes,
        s: &mut TrainSettings,
    ) {
        self.poll();
        ui.heading("Train the era model");
        ui.label(
            "Trains the era model on the catalog's posters to predict the release year (5-year \
             bins); era probabilities of any scheme are sums of bins. With the pretrained \
             backbone, each poster's features are computed once (cached) and a head learns \
             on them in minutes; fine-tuning blocks of the backbone is slow without a GPU. \
             Each epoch is checkpointed; with Resume, training continues from the newest \
             checkpoint.",
        );
        ui.add_space(6.0);
        let busy = self.running.is_some();
        ui.add_enabled_ui(!busy, |ui| {
            egui::Grid::new("train_form").num_columns(2).show(ui, |ui| {
                let l = ui.label("Epochs");
                ui.horizontal(|ui| {
                    // The default depends on the regime, and a resumed run keeps its own:
                    // the same rule as the CLI without --epochs.
                    let default = s.request().default_epochs();
                    let mut auto = s.epochs.is_none();
                    let hint = if s.resume {
                        format!("default ({default}, or the checkpoint's)")
                    } else {
                        format!("default ({default})")
                    };
                    if ui.checkbox(&mut auto, hint).changed() {
                        s.epochs = (!auto).then_some(default);
                    }
                    if let Some(n) = &mut s.epochs {
                        ui.add(egui::DragValue::new(n).range(1..=500))
                            .labelled_by(l.id);
                    }
                });
                ui.end_row();
                let l = ui.label("Batch size");
                ui.add(egui::DragValue::new(&mut s.batch).range(1..=1024))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Learning rate");
                ui.add(
                    egui::DragValue::new(&mut s.lr)
                        .range(1e-5..=1.0)
                        .speed(1e-4)
                        .max_decimals(5),
                )
                .labelled_by(l.id);
                ui.end_row();
                ui.label("Backend");
                egui::ComboBox::from_label("GPU or CPU")
                    .selected_text(format!("{:?}", s.backend))
                    .show_ui(ui, |ui| {
                        for b in [BackendChoice::Auto, BackendChoice::Gpu, BackendChoice::Cpu] {
                            ui.selectable_value(&mut s.backend, b, format!("{b:?}"));
                        }
                    });
                ui.end_row();
                let l = ui.label("Network");
                egui::ComboBox::from_id_salt("train-network")
                    .selected_text(s.network.label())
                    .show_ui(ui, |ui| {
                        for n in [NetworkSize::Small, NetworkSize::Standard] {
                            ui.selectable_value(&mut s.network, n, n.label());
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.end_row();
                if s.network == NetworkSize::Pretrained {
                    let l = ui.label("Fine-tune blocks");
                    ui.add(
                        egui::DragValue::new(&mut s.finetune_blocks)
                            .range(0..=Arch::EfficientnetLite0.block_count()),
                    )
                    .labelled_by(l.id)
                    .on_hover_text(
                        "0 keeps the backbone frozen (fast: the head trains on cached \
                         features); K > 0 also trains its last K blocks (slow on a CPU)",
                    );
                    ui.end_row();
                    let l = ui.label("Features");
                    egui::ComboBox::from_id_salt("train-levels")
                        .selected_text(levels_label(s.levels))
                        .show_ui(ui, |ui| {
                            for l in [
                                FeatureLevels::Layout,
                                FeatureLevels::Style,
                                FeatureLevels::Multi,
                                FeatureLevels::Mid,
                                FeatureLevels::Final,
                            ] {
                                ui.selectable_value(&mut s.levels, l, levels_label(l));
                            }
                        })
                        .response
                        .labelled_by(l.id)
                        .on_hover_text(
                            "What the head reads from the backbone: its last feature map, \
                             the texture statistics of earlier stages and where things are \
                             on the poster (the shipped recipe)",
                        );
                    let l = ui.label("Head hidden units");
                    ui.add(egui::DragValue::new(&mut s.hidden).range(0..=4096))
                        .labelled_by(l.id)
                        .on_hover_text("0: a linear head; more: an MLP with one hidden layer");
                    ui.end_row();
                    let l = ui.label("Heads (ensemble)");
                    ui.add_enabled(
                        s.finetune_blocks == 0,
                        egui::DragValue::new(&mut s.heads).range(1..=training::MAX_HEADS),
                    )
                    .labelled_by(l.id)
                    .on_hover_text(
                        "Heads trained side by side on the same backbone features, each on \
                         its own batches, their probabilities averaged: steadier predictions \
                         for one backbone pass (not with fine-tuned blocks)",
                    );
                    ui.end_row();
                    let l = ui.label("Small-poster training");
                    ui.add(egui::Slider::new(&mut s.rescale, 0.0..=1.0).fixed_decimals(2))
                        .labelled_by(l.id)
                        .on_hover_text(
                            "Share of steps that see a shrunken, recompressed copy of the \
                             poster: keeps the model steady on small or re-encoded posters \
                             (0.3 in the shipped recipe; the copies' features are cached too)",
                        );
                    ui.end_row();
                }
                let l = ui.label("Posters");
                ui.add(egui::DragValue::new(&mut s.limit).range(0..=1_000_000))
                    .labelled_by(l.id)
                    .on_hover_text("0 uses the whole catalog");
                ui.end_row();
                ui.label("Options");
                ui.checkbox(&mut s.resume, "Resume from the newest checkpoint");
                ui.end_row();
            });
        });
        ui.horizontal(|ui| {
            if busy {
                if ui.button("Cancel training").clicked() {
                    self.cancel();
                }
                ui.spinner();
            } else if ui.button("Start training").clicked() {
                self.start(ui.ctx(), data_dir, schemes, s);
            }
            if let Some(b) = &self.backend {
                ui.label(format!("Backend: {b}"));
            }
            if let Some((t, v)) = self.data {
                ui.label(format!("{t} training / {v} validation posters"));
            }
        });
        if let Some((done, total, eta)) = self.extracting
            && busy
            && self.step.is_none()
        {
            let eta = if eta.is_finite() {
                format!(", about {} left", fmt_secs(eta))
            } else {
                String::new()
            };
            ui.add(
                egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                    .text(format!("Backbone features: {done} of {total} posters{eta}")),
            );
        }
        if let Some((epoch, step, steps)) = self.step
            && busy
        {
            ui.add(
                egui::ProgressBar::new(step as f32 / steps.max(1) as f32).text(
                    match self.running.as_ref().and_then(|r| r.epochs) {
                        Some(n) => format!("epoch {epoch} of {n}: step {step} of {steps}"),
                        None => format!("epoch {epoch}: step {step} of {steps}"),
                    },
                ),
            );
        }
        match &self.outcome {
            Some(Ok(m)) => {
                ui.horizontal(|ui| {
                    ui.label(m);
                    if let Some(dir) = &self.written
                        && ui
                            .button("Use this model")
                            .on_hover_text("Classify and the Gallery use it from now on")
                            .clicked()
                    {
                        self.commands.send(super::AppCommand::UseModel(dir.clone()));
                    }
                });
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("Training failed: {e}"));
            }
            None => {}
        }
        if let Some(last) = self.epochs.last() {
            ui.label(format!(
                "Epoch {}: validation decade top-1 {:.1}% (balanced {:.1}%; always the {}s: {:.1}%), within one decade {:.1}%, MAE {:.1} years, era accuracy {:.1}%, macro-F1 {:.3}",
                last.epoch,
                100.0 * last.validation.decade_top1,
                100.0 * last.validation.balanced_decade_accuracy,
                last.validation.baseline.decade,
                100.0 * last.validation.baseline.decade_top1,
                100.0 * last.validation.within_one_decade,
                last.validation.mae_years,
                100.0 * last.validation.era_accuracy,
                last.validation.macro_f1
            ));
        }
        ui.add_space(6.0);
        ui.columns(2, |cols| {
            self.curves_ui(&mut cols[0]);
            if let Some(last) = self.epochs.last() {
                confusion_ui(&mut cols[1], &last.validation);
            }
        });
        for n in self.notes.iter().rev().take(5) {
            ui.small(n);
        }
    }

    fn curves_ui(&self, ui: &mut egui::Ui) {
        ui.strong("Loss");
        Plot::new("train_loss")
            .height(160.0)
            .legend(Legend::default())
            .x_axis_label("epoch")
            .show(ui, |p| {
                p.line(Line::new("training loss (per step)", self.losses.clone()));
                let epoch_loss: Vec<[f64; 2]> = self
                    .epochs
                    .iter()
                    .map(|e| [e.epoch as f64, e.train_loss])
                    .collect();
                p.line(Line::new("training loss (epoch mean)", epoch_loss));
            });
        ui.strong("Validation accuracy");
        Plot::new("train_accuracy")
            .height(160.0)
            .legend(Legend::default())
            .include_y(0.0)
            .include_y(1.0)
            .x_axis_label("epoch")
            .show(ui, |p| {
                let series = |f: fn(&Evaluation) -> f64| -> Vec<[f64; 2]> {
                    self.epochs
                        .iter()
                        .map(|e| [e.epoch as f64, f(&e.validation)])
                        .collect()
                };
                p.line(Line::new("decade top-1", series(|v| v.decade_top1)));
                p.line(Line::new(
                    "within one decade",
                    series(|v| v.within_one_decade),
                ));
                p.line(Line::new("era accuracy", series(|v| v.era_accuracy)));
            });
    }
}

/// `95 s`, `4 min 05 s`, `1 h 02 min`.
fn fmt_secs(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// The era confusion matrix as a heat map (rows: true era; shade by row share).
pub fn confusion_ui(ui: &mut egui::Ui, e: &Evaluation) {
    ui.strong(format!("Confusion matrix ({} eras, validation)", e.scheme));
    let k = e.eras.len();
    if k == 0 {
        return;
    }
    let label_w = 150.0;
    let cell = ((ui.available_width() - label_w) / k as f32).clamp(14.0, 44.0);
    let (rect, _) = ui.allocate_exact_size(
        egui::vec2(label_w + cell * k as f32, cell * k as f32 + 18.0),
        egui::Sense::hover(),
    );
    let painter = ui.painter_at(rect);
    let text = ui.visuals().text_color();
    for (r, row) in e.era_confusion.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        let y = rect.top() + 18.0 + r as f32 * cell;
        painter.text(
            egui::pos2(rect.left(), y + cell / 2.0),
            egui::Align2::LEFT_CENTER,
            &e.eras[r],
            egui::FontId::proportional(11.0),
            text,
        );
        for (c, &count) in row.iter().enumerate() {
            let share = count as f32 / total as f32;
            let x = rect.left() + label_w + c as f32 * cell;
            let cell_rect =
                egui::Rect::from_min_size(egui::pos2(x, y), egui::vec2(cell - 1.0, cell - 1.0));
            let colour = egui::Color32::from_rgb(
                (30.0 + 200.0 * share) as u8,
                (40.0 + 120.0 * share) as u8,
                (60.0 + 20.0 * share) as u8,
            );
            painter.rect_filled(cell_rect, 2.0, colour);
            if count > 0 {
                painter.text(
                    cell_rect.center(),
                    egui::Align2::CENTER_CENTER,
                    count.to_string(),
                    egui::FontId::proportional(10.0),
                    egui::Color32::WHITE,
                );
            }
        }
    }
    for c in 0..k {
        painter.text(
            egui::pos2(
                rect.left() + label_w + (c as f32 + 0.5) * cell,
                rect.top() + 8.0,
            ),
            egui::Align2::CENTER_CENTER,
            (c + 1).to_string(),
            egui::FontId::proportional(10.0),
            text,
        );
    }
    ui.small("Columns: predicted era, numbered as the rows.");
}
