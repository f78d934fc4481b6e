//! The Classify tab: drop poster files on the window or open them with a file dialog; a
//! worker thread holding the model predicts each one (era probabilities for the chosen
//! scheme, the decade distribution, the estimated year with an 80% interval). Bad files
//! get their reason on screen; nothing blocks the UI.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use eframe::egui;
use egui_plot::{Bar, BarChart, Plot};

use crate::eras::EraSchemes;
use crate::imaging::{self, ImageLimits};
use crate::model::backend::{self, BackendChoice};
use crate::model::inference::{EraModel, Prediction};

/// A poster to classify.
enum Job {
    File(PathBuf),
}

struct Outcome {
    id: usize,
    result: Result<(Prediction, egui::ColorImage), String>,
}

enum Request {
    Classify(usize, Job, crate::eras::EraScheme),
}

/// One poster on screen.
struct Entry {
    id: usize,
    name: String,
    state: EntryState,
}

enum EntryState {
    Waiting,
    Done {
        prediction: Box<Prediction>,
        image: egui::ColorImage,
        texture: Option<egui::TextureHandle>,
    },
    Failed(String),
}

/// State of the Classify tab.
pub struct ClassifyTab {
    requests: Option<Sender<Request>>,
    outcomes: Option<Receiver<Outcome>>,
    model_status: Result<String, String>,
    status_rx: Option<Receiver<Result<String, String>>>,
    picked: Option<Receiver<Vec<PathBuf>>>,
    entries: Vec<Entry>,
    next_id: usize,
    model_dir: Option<PathBuf>,
}

impl ClassifyTab {
    /// A tab using the model in `model_dir` (the shipped one when `None`).
    pub fn new(model_dir: Option<PathBuf>) -> Self {
        Self {
            requests: None,
            outcomes: None,
            model_status: Ok("Loading the model…".into()),
            status_rx: None,
            picked: None,
            entries: Vec::new(),
            next_id: 0,
            model_dir,
        }
    }

    /// Starts the worker that owns the model (once).
    fn ensure_worker(&mut self, ctx: &egui::Context) {
        if self.requests.is_some() {
            return;
        }
        let (req_tx, req_rx) = mpsc::channel::<Request>();
        let (out_tx, out_rx) = mpsc::channel();
        let (status_tx, status_rx) = mpsc::channel();
        let dir = self
            .model_dir
            .clone()
            .or_else(crate::model::default_model_dir);
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("classify".into())
            .spawn(move || {
                let model = dir
                    .ok_or_else(|| "no model found (resources/model is missing)".to_owned())
                    .and_then(|dir| {
                        let chosen =
                            backend::choose(BackendChoice::Cpu).map_err(|e| e.to_string())?;
                        EraModel::load(&dir, &chosen.device)
                            .map(|m| (m, dir))
                            .map_err(|e| e.to_string())
                    });
                let model = match model {
                    Ok((m, dir)) => {
                        let _ = status_tx.send(Ok(format!("Model: {}", dir.display())));
                        m
                    }
                    Err(e) => {
                        let _ = status_tx.send(Err(e));
                        ctx.request_repaint();
                        return;
                    }
                };
                ctx.request_repaint();
                for Request::Classify(id, job, scheme) in req_rx {
                    let result = classify(&model, job, &scheme);
                    if out_tx.send(Outcome { id, result }).is_err() {
                        break;
                    }
                    ctx.request_repaint();
                }
            });
        if let Err(e) = spawned {
            self.model_status = Err(format!("cannot start the classifier: {e}"));
            return;
        }
        self.requests = Some(req_tx);
        self.outcomes = Some(out_rx);
        self.status_rx = Some(status_rx);
    }

    fn submit(&mut self, name: String, job: Job, scheme: &crate::eras::EraScheme) {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            0,
            Entry {
                id,
                name,
                state: EntryState::Waiting,
            },
        );
        if let Some(tx) = &self.requests
            && tx.send(Request::Classify(id, job, scheme.clone())).is_err()
            && let Some(e) = self.entries.first_mut()
        {
            e.state = EntryState::Failed("the classifier stopped".into());
        }
    }

    /// Classifies dropped files and the files picked in the dialog.
    fn take_inputs(&mut self, ctx: &egui::Context, scheme: &crate::eras::EraScheme) {
        let dropped = ctx.input(|i| i.raw.dropped_files.clone());
        for f in dropped {
            let path = f.path().to_path_buf();
            self.submit(path.display().to_string(), Job::File(path), scheme);
        }
        if let Some(rx) = &self.picked {
            match rx.try_recv() {
                Ok(paths) => {
                    self.picked = None;
                    for p in paths {
                        self.submit(p.display().to_string(), Job::File(p), scheme);
                    }
                }
                Err(TryRecvError::Disconnected) => self.picked = None,
                Err(TryRecvError::Empty) => {}
            }
        }
    }

    fn poll(&mut self) {
        if let Some(rx) = &self.status_rx
            && let Ok(s) = rx.try_recv()
        {
            self.model_status = s;
        }
        let Some(rx) = &self.outcomes else { return };
        while let Ok(o) = rx.try_recv() {
            if let Some(e) = self.entries.iter_mut().find(|e| e.id == o.id) {
                e.state = match o.result {
                    Ok((prediction, image)) => EntryState::Done {
                        prediction: Box::new(prediction),
                        image,
                        texture: None,
                    },
                    Err(reason) => EntryState::Failed(reason),
                };
            }
        }
    }

    /// Opens a file dialog on a helper thread (the UI keeps running).
    fn open_dialog(&mut self, ctx: &egui::Context) {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("open-dialog".into())
            .spawn(move || {
                let files = rfd::FileDialog::new()
                    .set_title("Open posters")
                    .add_filter("Images", &["jpg", "jpeg", "png", "webp", "gif", "bmp"])
                    .pick_files()
                    .unwrap_or_default();
                let _ = tx.send(files);
                ctx.request_repaint();
            });
        if spawned.is_ok() {
            self.picked = Some(rx);
        }
    }

    /// Draws the tab.
    pub fn ui(&mut self, ui: &mut egui::Ui, schemes: &EraSchemes, scheme_name: &str) {
        self.ensure_worker(ui.ctx());
        self.poll();
        let Ok(scheme) = schemes.get(scheme_name).cloned() else {
            ui.label(format!("Unknown era scheme {scheme_name}"));
            return;
        };
        self.take_inputs(ui.ctx(), &scheme);
        ui.heading("Classify a poster");
        ui.horizontal(|ui| {
            ui.label("Drop poster files anywhere on this window, or");
            if ui.button("Open posters…").clicked() {
                self.open_dialog(ui.ctx());
            }
            if !self.entries.is_empty() && ui.button("Clear").clicked() {
                self.entries.clear();
            }
        });
        match &self.model_status {
            Ok(s) => {
                ui.small(s);
            }
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("Model: {e}"));
            }
        }
        ui.separator();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for entry in &mut self.entries {
                    entry_ui(ui, entry);
                    ui.separator();
                }
            });
    }
}

fn classify(
    model: &EraModel,
    job: Job,
    scheme: &crate::eras::EraScheme,
) -> Result<(Prediction, egui::ColorImage), String> {
    let limits = ImageLimits::default();
    let Job::File(path) = job;
    if path.is_dir() {
        return Err(format!("{} is a folder, not an image", path.display()));
    }
    let decoded = imaging::decode_poster_file(&path, &limits).map_err(|e| e.to_string())?;
    let prediction = model.predict(&decoded.rgb, scheme);
    let shown = imaging::fit_within(&decoded.rgb, 240, 360);
    let image = egui::ColorImage::from_rgb(
        [shown.width() as usize, shown.height() as usize],
        shown.as_raw(),
    );
    Ok((prediction, image))
}

fn entry_ui(ui: &mut egui::Ui, entry: &mut Entry) {
    ui.strong(&entry.name);
    match &mut entry.state {
        EntryState::Waiting => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Classifying…");
            });
        }
        EntryState::Failed(reason) => {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("Cannot classify: {reason}"),
            );
        }
        EntryState::Done {
            prediction,
            image,
            texture,
        } => {
            let tex = texture.get_or_insert_with(|| {
                ui.ctx().load_texture(
                    format!("poster-{}", entry.id),
                    image.clone(),
                    egui::TextureOptions::LINEAR,
                )
            });
            ui.horizontal_top(|ui| {
                ui.image((tex.id(), tex.size_vec2()));
                ui.vertical(|ui| prediction_ui(ui, entry.id, prediction));
            });
        }
    }
}

fn prediction_ui(ui: &mut egui::Ui, id: usize, p: &Prediction) {
    let (best, prob) = &p.eras[p.best_era];
    ui.heading(format!("{best} ({:.0}%)", 100.0 * prob));
    ui.label(format!(
        "Estimated year: {:.0} (80% interval {:.0}–{:.0})",
        p.year, p.interval.0, p.interval.1
    ));
    ui.add_space(4.0);
    for (name, prob) in &p.eras {
        ui.horizontal(|ui| {
            ui.add_sized([170.0, 16.0], egui::Label::new(name));
            ui.add(
                egui::ProgressBar::new(*prob as f32)
                    .desired_width(200.0)
                    .text(format!("{:.1}%", 100.0 * prob)),
            );
        });
    }
    ui.add_space(4.0);
    ui.label("Decades:");
    let bars: Vec<Bar> = p
        .decades
        .iter()
        .map(|(d, v)| Bar::new(f64::from(*d) + 5.0, *v).width(8.0))
        .collect();
    Plot::new(("decades", id))
        .height(120.0)
        .width(420.0)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .include_y(0.0)
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("decade probability", bars));
        });
}
