//! The Classify tab: drop poster files on the window, open them with a file dialog or
//! paste an image; a worker thread holding the model predicts each one (era
//! probabilities for the chosen scheme, the decade distribution, the estimated year with
//! an 80% interval) and computes saliency overlays on request, drawn with their colour
//! key. A poster the catalog holds (same file contents) shows its title and release year
//! beside the guess. The layout follows the window's width. Bad files get their reason
//! on screen; nothing blocks the UI.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Instant;

use eframe::egui;
use egui_plot::{Bar, BarChart, Plot};
use image::RgbImage;

use crate::eras::{EraScheme, EraSchemes};
use crate::imaging::{self, ImageLimits};
use crate::jobs::JobHandle;
use crate::model::backend::{self, BackendChoice};
use crate::model::inference::{EraModel, Prediction};
use crate::model::library::ModelEntry;
use crate::model::saliency::{self, OverlayMode, SaliencyMap, SaliencyMethod, SaliencySettings};

/// Largest poster kept for saliency (bigger ones are scaled down first).
const KEEP_W: u32 = 600;
const KEEP_H: u32 = 900;

/// A poster to classify.
enum Job {
    File(PathBuf),
    Pixels(RgbImage),
}

/// What an overlay was computed for: the era by name (indices differ between schemes).
#[derive(Debug, Clone, PartialEq)]
struct SaliencyKey {
    scheme: String,
    era: String,
    settings: SaliencySettings,
}

enum Request {
    Classify(usize, Job, EraScheme),
    Saliency(usize, SaliencyKey, EraScheme),
}

enum Outcome {
    Classified {
        id: usize,
        result: Result<Classified, String>,
    },
    Saliency {
        id: usize,
        key: SaliencyKey,
        result: Result<(SaliencyMap, f64), String>,
    },
}

/// A movie of the catalog: title and release year.
type KnownMovie = (String, Option<i32>);

/// A classified poster.
struct Classified {
    prediction: Prediction,
    /// The poster, at most 600×900.
    poster: Arc<RgbImage>,
    /// How an unusual input was converted.
    note: Option<String>,
    /// The catalog's movie with this very poster, if any.
    known: Option<KnownMovie>,
}

/// Saliency state of one poster.
struct Overlay {
    show: bool,
    settings: SaliencySettings,
    /// The era explained, by name.
    era: String,
    mode: OverlayMode,
    opacity: f32,
    /// The key of the request in flight, if any.
    pending: Option<SaliencyKey>,
    /// The newest map and what it was computed for, with its time in ms.
    map: Option<(SaliencyKey, SaliencyMap, f64)>,
    error: Option<String>,
    /// Texture of the overlay layer and what it shows (the opacity is a tint when drawn).
    texture: Option<(egui::TextureHandle, SaliencyKey, OverlayMode)>,
    export_status: Option<String>,
    /// Which of the model's networks saliency explains, when it has several.
    scope: Option<String>,
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
        poster: Arc<RgbImage>,
        note: Option<String>,
        texture: Option<egui::TextureHandle>,
        overlay: Box<Overlay>,
        /// The model that made the prediction.
        model: String,
        /// The catalog's movie with this poster.
        known: Option<KnownMovie>,
    },
    Failed(String),
}

/// What the classifier's worker reports.
enum WorkerEvent {
    /// The model loaded (its label, and which network saliency explains when it has
    /// several) or could not be.
    Model(Result<(String, Option<String>), String>),
    /// A poster classified or an overlay computed.
    Outcome(Outcome),
}

/// State of the Classify tab.
pub struct ClassifyTab {
    requests: Option<Sender<Request>>,
    worker: Option<JobHandle<(), WorkerEvent>>,
    model_status: Result<String, String>,
    picked: Option<JobHandle<super::dialogs::Picked<Vec<PathBuf>>>>,
    pasted: Option<JobHandle<RgbImage>>,
    exported: Option<(usize, JobHandle<String>)>,
    entries: Vec<Entry>,
    next_id: usize,
    model_dir: Option<PathBuf>,
    paste_note: Option<String>,
    queued: Vec<PathBuf>,
    /// The model loaded by the worker, for people.
    model_label: String,
    /// Which of the model's networks saliency explains, when it has several.
    saliency_scope: Option<String>,
    /// The catalog to look dropped posters up in.
    catalog: Option<PathBuf>,
    /// Why no file dialog could be shown, when one could not.
    dialog_note: Option<String>,
}

impl ClassifyTab {
    /// A tab using the model in `model_dir` (the shipped one when `None`).
    pub fn new(model_dir: Option<PathBuf>) -> Self {
        Self {
            requests: None,
            worker: None,
            model_status: Ok("Loading the model…".into()),
            picked: None,
            pasted: None,
            exported: None,
            entries: Vec::new(),
            next_id: 0,
            model_dir,
            paste_note: None,
            queued: Vec::new(),
            model_label: String::new(),
            saliency_scope: None,
            catalog: None,
            dialog_note: None,
        }
    }

    /// Looks classified posters up in the catalog at `path` (by file contents), to show
    /// their title and release year.
    #[must_use]
    pub fn with_catalog(mut self, path: PathBuf) -> Self {
        self.catalog = Some(path);
        self
    }

    /// Files to classify on the next frame (e.g. named on the command line).
    pub fn queue_files(&mut self, files: Vec<PathBuf>) {
        self.queued.extend(files);
    }

    /// Switches to the model in `dir` (the shipped one for `None`): the worker restarts
    /// with it. Results shown so far stay, each naming its model; posters still waiting
    /// for the old model are marked so.
    pub fn set_model(&mut self, dir: Option<PathBuf>) {
        if self.model_dir == dir {
            return;
        }
        self.model_dir = dir;
        self.requests = None;
        self.worker = None;
        self.model_status = Ok("Loading the model…".into());
        for e in &mut self.entries {
            if matches!(e.state, EntryState::Waiting) {
                e.state = EntryState::Failed(
                    "the model was changed before it answered; drop the poster again".into(),
                );
            }
        }
    }

    /// Starts the worker that owns the model (once).
    fn ensure_worker(&mut self, ctx: &egui::Context) {
        if self.requests.is_some() {
            return;
        }
        let (req_tx, req_rx) = mpsc::channel::<Request>();
        let dir = self.model_dir.clone();
        let catalog = self.catalog.clone();
        let job = JobHandle::spawn("classifier", super::job_waker(ctx), move |_, events| {
            // Finding the shipped model may unpack it: here, not on the UI thread.
            let model = dir
                .or_else(crate::model::default_model_dir)
                .ok_or_else(|| "no model found (resources/model is missing)".to_owned())
                .and_then(|dir| {
                    let chosen = backend::choose(BackendChoice::Cpu).map_err(|e| e.to_string())?;
                    EraModel::load(&dir, &chosen.device)
                        .map(|m| (m, dir))
                        .map_err(|e| e.to_string())
                });
            let model = match model {
                Ok((m, dir)) => {
                    let shipped = m.is_shipped();
                    let label = ModelEntry::read(&dir, shipped)
                        .map_or_else(|| dir.display().to_string(), |e| e.label());
                    events.report(WorkerEvent::Model(Ok((label, saliency_scope(&m)))));
                    m
                }
                Err(e) => {
                    events.report(WorkerEvent::Model(Err(e)));
                    return Ok(());
                }
            };
            let catalog = catalog.and_then(|p| crate::catalog::Catalog::open(&p).ok());
            worker_loop(&model, catalog.as_ref(), &req_rx, events);
            Ok::<_, String>(())
        });
        match job {
            Ok(job) => self.worker = Some(job),
            Err(e) => {
                self.model_status = Err(e.to_string());
                return;
            }
        }
        self.requests = Some(req_tx);
    }

    fn submit(&mut self, name: String, job: Job, scheme: &EraScheme) {
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

    /// Classifies dropped files, picked files and pasted images or paths.
    fn take_inputs(&mut self, ctx: &egui::Context, scheme: &EraScheme) {
        for path in std::mem::take(&mut self.queued) {
            self.submit(path.display().to_string(), Job::File(path), scheme);
        }
        let dropped = ctx.input(|i| i.raw.dropped_files.clone());
        for f in dropped {
            let path = f.path().to_path_buf();
            self.submit(path.display().to_string(), Job::File(path), scheme);
        }
        // Ctrl+V: a pasted file path (or file:// URI) is classified as a file; anything
        // else asks the clipboard for an image.
        let pasted_text: Vec<String> = ctx.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::Paste(t) => Some(t.clone()),
                    _ => None,
                })
                .collect()
        });
        // An image on the clipboard arrives as its pixels (egui-winit reads it on Ctrl+V).
        let pasted_images: Vec<RgbImage> = ctx.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::PasteImage(img) => rgb_of(img),
                    _ => None,
                })
                .collect()
        });
        for rgb in pasted_images {
            self.submit("Pasted image".into(), Job::Pixels(rgb), scheme);
        }
        for text in pasted_text {
            let paths: Vec<PathBuf> = text
                .lines()
                .map(|l| PathBuf::from(l.trim().trim_start_matches("file://")))
                .filter(|p| p.exists())
                .collect();
            if paths.is_empty() {
                let shown: String = text.trim().chars().take(60).collect();
                self.paste_note = Some(format!(
                    "The pasted text is not a poster file or image: {shown:?}"
                ));
            }
            for p in paths {
                self.paste_note = None;
                self.submit(p.display().to_string(), Job::File(p), scheme);
            }
        }
        if let Some(done) = self.picked.as_mut().and_then(|j| j.poll().done) {
            self.picked = None;
            match done {
                Ok(super::dialogs::Picked::Chosen(paths)) => {
                    for p in paths {
                        self.submit(p.display().to_string(), Job::File(p), scheme);
                    }
                }
                Ok(super::dialogs::Picked::Cancelled) => {}
                Ok(super::dialogs::Picked::Unavailable(why)) => self.dialog_note = Some(why),
                Err(e) => self.dialog_note = Some(e.to_string()),
            }
        }
        if let Some(done) = self.pasted.as_mut().and_then(|j| j.poll().done) {
            self.pasted = None;
            match done {
                Ok(rgb) => {
                    self.paste_note = None;
                    self.submit("Pasted image".into(), Job::Pixels(rgb), scheme);
                }
                Err(e) => self.paste_note = Some(e.to_string()),
            }
        }
    }

    /// Reads an image from the clipboard on a helper thread.
    fn paste_image(&mut self, ctx: &egui::Context) {
        if self.pasted.is_some() {
            return;
        }
        match JobHandle::spawn("clipboard reader", super::job_waker(ctx), |_, _| {
            clipboard_image()
        }) {
            Ok(job) => self.pasted = Some(job),
            Err(e) => self.paste_note = Some(e.to_string()),
        }
    }

    fn poll(&mut self) {
        let mut outcomes = Vec::new();
        if let Some(worker) = &mut self.worker {
            let polled = worker.poll();
            for ev in polled.progress {
                match ev {
                    WorkerEvent::Model(s) => {
                        if let Ok((label, scope)) = &s {
                            self.model_label.clone_from(label);
                            self.saliency_scope.clone_from(scope);
                        }
                        self.model_status = s.map(|(label, _)| format!("Model: {label}"));
                    }
                    WorkerEvent::Outcome(o) => outcomes.push(o),
                }
            }
            // The worker runs until the tab goes: an end now is a failure (or a model
            // that did not load, already shown).
            if let Some(end) = polled.done {
                self.worker = None;
                if let Err(e) = end {
                    self.model_status = Err(e.to_string());
                }
            }
        }
        if let Some((id, job)) = &mut self.exported
            && let Some(done) = job.poll().done
        {
            let id = *id;
            self.exported = None;
            self.set_export_status(id, done.unwrap_or_else(|e| e.to_string()));
        }
        for o in outcomes {
            match o {
                Outcome::Classified { id, result } => {
                    if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
                        e.state = match result {
                            Ok(Classified {
                                prediction,
                                poster,
                                note,
                                known,
                            }) => EntryState::Done {
                                overlay: Box::new(Overlay {
                                    show: false,
                                    settings: SaliencySettings::default()
                                        .with_method(SaliencyMethod::GradCam),
                                    era: prediction.best_era_name().to_owned(),
                                    mode: OverlayMode::Heatmap,
                                    opacity: 0.6,
                                    pending: None,
                                    map: None,
                                    error: None,
                                    texture: None,
                                    export_status: None,
                                    scope: self.saliency_scope.clone(),
                                }),
                                prediction: Box::new(prediction),
                                poster,
                                note,
                                texture: None,
                                model: self.model_label.clone(),
                                known,
                            },
                            Err(reason) => EntryState::Failed(reason),
                        };
                    }
                }
                Outcome::Saliency { id, key, result } => {
                    if let Some(Entry {
                        state: EntryState::Done { overlay, .. },
                        ..
                    }) = self.entries.iter_mut().find(|e| e.id == id)
                    {
                        overlay.pending = None;
                        match result {
                            Ok((map, ms)) => {
                                overlay.map = Some((key, map, ms));
                                overlay.error = None;
                            }
                            Err(e) => overlay.error = Some(e),
                        }
                    }
                }
            }
        }
    }

    /// Describes every result for `scheme` when it was made for another one (the era
    /// scheme changed): probabilities are regrouped from the year bins, and an overlay
    /// keeps its era when the scheme has one of that name, else explains the new best era.
    fn follow_scheme(&mut self, scheme: &EraScheme) {
        for entry in &mut self.entries {
            let EntryState::Done {
                prediction,
                overlay,
                ..
            } = &mut entry.state
            else {
                continue;
            };
            let same = prediction.eras.len() == scheme.eras.len()
                && prediction
                    .eras
                    .iter()
                    .zip(&scheme.eras)
                    .all(|((a, _), b)| *a == b.name);
            if same {
                continue;
            }
            **prediction = prediction.for_scheme(scheme);
            if !scheme.eras.iter().any(|e| e.name == overlay.era) {
                overlay.era = prediction.best_era_name().to_owned();
            }
            overlay.map = None;
            overlay.texture = None;
            overlay.error = None;
        }
    }

    /// Asks the worker for overlays that are wanted and not yet computed (one request in
    /// flight per poster, so dragging a slider does not queue a backlog).
    fn request_overlays(&mut self, scheme: &EraScheme) {
        let Some(tx) = &self.requests else { return };
        for entry in &mut self.entries {
            let EntryState::Done { overlay, .. } = &mut entry.state else {
                continue;
            };
            if !overlay.show || overlay.pending.is_some() {
                continue;
            }
            let key = SaliencyKey {
                scheme: scheme.name.clone(),
                era: overlay.era.clone(),
                settings: overlay.settings,
            };
            if overlay.map.as_ref().is_some_and(|(k, _, _)| *k == key) || overlay.error.is_some() {
                continue;
            }
            if tx
                .send(Request::Saliency(entry.id, key.clone(), scheme.clone()))
                .is_ok()
            {
                overlay.pending = Some(key);
            }
        }
    }

    /// Opens a file dialog on a helper thread (the UI keeps running); says so in the
    /// tab when the system has no file dialog.
    pub fn open_dialog(&mut self, ctx: &egui::Context) {
        let job = JobHandle::spawn("file dialog", super::job_waker(ctx), |_, _| {
            Ok::<_, String>(super::dialogs::show(|| {
                rfd::FileDialog::new()
                    .set_title("Open posters")
                    .add_filter("Images", &["jpg", "jpeg", "png", "webp", "gif", "bmp"])
                    .pick_files()
            }))
        });
        match job {
            Ok(job) => {
                self.picked = Some(job);
                self.dialog_note = None;
            }
            Err(e) => self.dialog_note = Some(e.to_string()),
        }
    }

    /// Renders the overlay, asks where to save it and writes it there, on a job.
    fn export(&mut self, ctx: &egui::Context, id: usize, name: &str, what: OverlayExport) {
        let file_name = format!(
            "{}.saliency.png",
            std::path::Path::new(name)
                .file_stem()
                .map_or_else(|| "poster".into(), |s| s.to_string_lossy().into_owned())
        );
        let job = JobHandle::spawn("overlay export", super::job_waker(ctx), move |_, _| {
            let img = saliency::render_overlay(&what.poster, &what.map, what.mode, what.opacity);
            let png = saliency::encode_overlay_png(&img)
                .map_err(|e| format!("Could not encode the PNG: {e}"))?;
            let picked = super::dialogs::show(|| {
                rfd::FileDialog::new()
                    .set_title("Export overlay")
                    .set_file_name(&file_name)
                    .add_filter("PNG", &["png"])
                    .save_file()
            });
            Ok(match picked {
                super::dialogs::Picked::Chosen(path) => {
                    match crate::fsutil::write_atomic(&path, &png) {
                        Ok(()) => format!("Saved {}", path.display()),
                        Err(e) => format!("Could not save {}: {e}", path.display()),
                    }
                }
                super::dialogs::Picked::Cancelled => "Export cancelled".into(),
                super::dialogs::Picked::Unavailable(why) => why,
            })
        });
        match job {
            Ok(job) => self.exported = Some((id, job)),
            Err(e) => self.set_export_status(id, e.to_string()),
        }
    }

    fn set_export_status(&mut self, id: usize, msg: String) {
        if let Some(Entry {
            state: EntryState::Done { overlay, .. },
            ..
        }) = self.entries.iter_mut().find(|e| e.id == id)
        {
            overlay.export_status = Some(msg);
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
        self.follow_scheme(&scheme);
        self.take_inputs(ui.ctx(), &scheme);
        ui.heading("Classify a poster");
        ui.horizontal(|ui| {
            ui.label("Drop poster files anywhere on this window, paste one (Ctrl+V), or");
            if ui.button("Open posters…").clicked() {
                self.open_dialog(ui.ctx());
            }
            if ui.button("Paste image").clicked() {
                self.paste_image(ui.ctx());
            }
            if !self.entries.is_empty() && ui.button("Clear").clicked() {
                self.entries.clear();
            }
        });
        if let Some(note) = &self.paste_note {
            ui.colored_label(ui.visuals().warn_fg_color, note);
        }
        if let Some(note) = &self.dialog_note {
            ui.colored_label(ui.visuals().warn_fg_color, note);
        }
        match &self.model_status {
            Ok(s) => {
                ui.small(s);
            }
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("Model: {e}"));
            }
        }
        ui.separator();
        let mut export = None;
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for entry in &mut self.entries {
                    if let Some(what) = entry_ui(ui, entry, &scheme) {
                        export = Some((entry.id, entry.name.clone(), what));
                    }
                    ui.separator();
                }
            });
        if let Some((id, name, what)) = export {
            self.export(ui.ctx(), id, &name, what);
        }
        self.request_overlays(&scheme);
    }
}

/// The worker: classifies posters and computes overlays for the ones it has seen.
fn worker_loop(
    model: &EraModel,
    catalog: Option<&crate::catalog::Catalog>,
    requests: &Receiver<Request>,
    events: &crate::jobs::Progress<WorkerEvent>,
) {
    let mut posters: HashMap<usize, Arc<RgbImage>> = HashMap::new();
    for request in requests {
        let outcome = match request {
            Request::Classify(id, job, scheme) => {
                let result = classify(model, catalog, job, &scheme);
                if let Ok(c) = &result {
                    posters.insert(id, c.poster.clone());
                }
                Outcome::Classified { id, result }
            }
            Request::Saliency(id, key, scheme) => {
                let result = match posters.get(&id) {
                    Some(poster) => {
                        let started = Instant::now();
                        match scheme.eras.iter().position(|e| e.name == key.era) {
                            Some(era) => {
                                saliency::saliency(model, poster, &scheme, era, &key.settings)
                                    .map(|m| (m, started.elapsed().as_secs_f64() * 1e3))
                                    .map_err(|e| e.to_string())
                            }
                            None => Err(format!("{} is not an era of {}", key.era, scheme.label)),
                        }
                    }
                    None => Err("the poster is no longer loaded".into()),
                };
                Outcome::Saliency { id, key, result }
            }
        };
        events.report(WorkerEvent::Outcome(outcome));
    }
}

/// The RGB pixels of a pasted image (alpha dropped), if it has a usable size.
fn rgb_of(img: &egui::ColorImage) -> Option<RgbImage> {
    let [w, h] = img.size;
    let limits = ImageLimits::default();
    if w == 0
        || h == 0
        || w as u64 > u64::from(limits.max_side)
        || h as u64 > u64::from(limits.max_side)
    {
        return None;
    }
    let mut raw = Vec::with_capacity(w * h * 3);
    for c in &img.pixels {
        let [r, g, b, _] = c.to_srgba_unmultiplied();
        raw.extend([r, g, b]);
    }
    RgbImage::from_raw(w as u32, h as u32, raw)
}

/// Reads an image from the system clipboard.
fn clipboard_image() -> Result<RgbImage, String> {
    let mut clipboard =
        arboard::Clipboard::new().map_err(|e| format!("cannot open the clipboard: {e}"))?;
    let img = clipboard
        .get_image()
        .map_err(|e| format!("no image on the clipboard ({e})"))?;
    let (w, h) = (img.width as u32, img.height as u32);
    let limits = ImageLimits::default();
    if w == 0 || h == 0 || w > limits.max_side || h > limits.max_side {
        return Err(format!(
            "the clipboard image is {w}x{h}, outside the limits"
        ));
    }
    let rgba = image::RgbaImage::from_raw(w, h, img.bytes.into_owned())
        .ok_or_else(|| "the clipboard image data is incomplete".to_owned())?;
    Ok(image::DynamicImage::ImageRgba8(rgba).to_rgb8())
}

fn classify(
    model: &EraModel,
    catalog: Option<&crate::catalog::Catalog>,
    job: Job,
    scheme: &EraScheme,
) -> Result<Classified, String> {
    let (rgb, note, known) = match job {
        Job::File(path) => {
            let d = imaging::decode_poster_file(&path, &ImageLimits::default())
                .map_err(|e| e.to_string())?;
            let note = d
                .conversion
                .map(|c| format!("{} poster; {c}", imaging::format_name(d.format)));
            // A catalog that cannot be read only loses the title line.
            let known = catalog.and_then(|c| c.movie_by_poster_sha256(&d.sha256).ok().flatten());
            (d.rgb, note, known)
        }
        Job::Pixels(rgb) => (rgb, None, None),
    };
    let prediction = model.predict(&rgb, scheme).map_err(|e| e.to_string())?;
    let poster = Arc::new(imaging::fit_within(&rgb, KEEP_W, KEEP_H));
    Ok(Classified {
        prediction,
        poster,
        note,
        known,
    })
}

/// What saliency explains in a model of several networks: its first (the answer
/// averages them all; explaining one keeps SmoothGrad within its time budget).
fn saliency_scope(model: &EraModel) -> Option<String> {
    let n = &model.config.network;
    (!model.members.is_empty()).then(|| {
        format!(
            "Explains the model's {}×{} network; its answer averages {} networks ({}).",
            n.input_width,
            n.input_height,
            model.members.len() + 1,
            model.input_sizes()
        )
    })
}

fn colour_image(rgb: &RgbImage) -> egui::ColorImage {
    egui::ColorImage::from_rgb([rgb.width() as usize, rgb.height() as usize], rgb.as_raw())
}

/// Draws one poster; returns the overlay to export when the user asked for it.
fn entry_ui(ui: &mut egui::Ui, entry: &mut Entry, scheme: &EraScheme) -> Option<OverlayExport> {
    ui.strong(&entry.name);
    match &mut entry.state {
        EntryState::Waiting => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Classifying…");
            });
            None
        }
        EntryState::Failed(reason) => {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("Cannot classify: {reason}"),
            );
            None
        }
        EntryState::Done {
            prediction,
            poster,
            note,
            texture,
            overlay,
            model,
            known,
        } => {
            let id = entry.id;
            if let Some((title, year)) = known {
                let line = match year {
                    Some(y) => format!(
                        "In the catalog: {title} ({y}) \u{2014} the guess is off by {}",
                        crate::explore::years_apart(prediction.year, *y)
                    ),
                    None => format!("In the catalog: {title} (year unknown)"),
                };
                ui.label(egui::RichText::new(line).strong());
            }
            ui.small(format!("Predicted by: {model}"));
            if let Some(note) = note {
                ui.small(note.as_str());
            }
            let plain = texture.get_or_insert_with(|| {
                ui.ctx().load_texture(
                    format!("poster-{id}"),
                    colour_image(poster),
                    egui::TextureOptions::LINEAR,
                )
            });
            let plain = plain.id();
            let overlaid = overlay_texture(ui.ctx(), id, poster, overlay);
            // Posters grow with the window: a fifth of its width each, 160–360 wide.
            let full = ui.available_width();
            let size = display_size(poster, (full * 0.2).clamp(160.0, 360.0));
            let mut export = None;
            ui.horizontal_top(|ui| {
                // With an overlay, the poster and its overlay side by side, with its key.
                ui.image((plain, size));
                if let Some(tex) = overlaid {
                    // The poster with the layer over it, the opacity as the layer's tint.
                    let (rect, resp) = ui.allocate_exact_size(size, egui::Sense::hover());
                    resp.widget_info(|| {
                        egui::WidgetInfo::labeled(egui::Role::Image, true, "saliency overlay")
                    });
                    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
                    let painter = ui.painter_at(rect);
                    painter.image(plain, rect, uv, egui::Color32::WHITE);
                    let a = (overlay.opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
                    painter.image(tex, rect, uv, egui::Color32::from_white_alpha(a));
                    colour_key_ui(ui, overlay.mode, size.y);
                }
                ui.vertical(|ui| {
                    let rest = ui.available_width();
                    prediction_ui(ui, id, prediction, overlay, rest);
                    ui.add_space(6.0);
                    export = saliency_ui(ui, id, scheme, poster, overlay);
                });
            });
            export
        }
    }
}

/// On-screen size of a poster: at most `max_w` wide and 1.5 × `max_w` high, small
/// posters scaled up to fill it.
fn display_size(poster: &RgbImage, max_w: f32) -> egui::Vec2 {
    let (w, h) = (poster.width() as f32, poster.height() as f32);
    let scale = (max_w / w).min(1.5 * max_w / h);
    egui::vec2(w * scale, h * scale)
}

/// The overlay's colour key beside it: what its colours (or, for a mask, its shading)
/// mean, from the pixels that drove the prediction most (top) to least (bottom).
fn colour_key_ui(ui: &mut egui::Ui, mode: OverlayMode, height: f32) {
    ui.vertical(|ui| {
        ui.small("more");
        let bar_h = (height - 2.0 * ui.text_style_height(&egui::TextStyle::Small) - 8.0).max(40.0);
        let (rect, resp) = ui.allocate_exact_size(egui::vec2(14.0, bar_h), egui::Sense::hover());
        let steps = 48;
        for k in 0..steps {
            let t0 = k as f32 / steps as f32;
            let v = 1.0 - (t0 + 0.5 / steps as f32);
            let [r, g, b] = match mode {
                OverlayMode::Mask => {
                    let g = (40.0 + 215.0 * v).round() as u8;
                    [g, g, g]
                }
                OverlayMode::Heatmap | OverlayMode::Blend => saliency::heat_colour(v),
            };
            let y0 = rect.top() + t0 * rect.height();
            ui.painter().rect_filled(
                egui::Rect::from_min_max(
                    egui::pos2(rect.left(), y0),
                    egui::pos2(rect.right(), y0 + rect.height() / steps as f32 + 0.5),
                ),
                0.0,
                egui::Color32::from_rgb(r, g, b),
            );
        }
        resp.on_hover_text(
            "Saliency: how much each pixel drove the prediction (scaled per poster, top = most)",
        );
        ui.small("less");
    });
}

/// The overlay layer's texture, rendered when its map or mode changed (not when the
/// opacity moves: that is a tint when drawn); `None` when the overlay is off or not
/// computed yet.
fn overlay_texture(
    ctx: &egui::Context,
    id: usize,
    poster: &RgbImage,
    overlay: &mut Overlay,
) -> Option<egui::TextureId> {
    if !overlay.show {
        return None;
    }
    let (key, map, _) = overlay.map.as_ref()?;
    let fresh = overlay
        .texture
        .as_ref()
        .is_some_and(|(_, k, m)| k == key && *m == overlay.mode);
    if !fresh {
        let img = saliency::render_layer(map, poster.width(), poster.height(), overlay.mode);
        let colour = egui::ColorImage::from_rgba_unmultiplied(
            [img.width() as usize, img.height() as usize],
            img.as_raw(),
        );
        let handle = ctx.load_texture(
            format!("overlay-{id}"),
            colour,
            egui::TextureOptions::LINEAR,
        );
        overlay.texture = Some((handle, key.clone(), overlay.mode));
    }
    overlay.texture.as_ref().map(|(t, _, _)| t.id())
}

/// What "Export overlay PNG" writes: rendered and encoded on the export's job, not in
/// the frame of the click.
struct OverlayExport {
    poster: RgbImage,
    map: SaliencyMap,
    mode: OverlayMode,
    opacity: f32,
}

/// Saliency controls; returns the overlay to export when asked.
fn saliency_ui(
    ui: &mut egui::Ui,
    id: usize,
    scheme: &EraScheme,
    poster: &RgbImage,
    o: &mut Overlay,
) -> Option<OverlayExport> {
    ui.checkbox(
        &mut o.show,
        "Show saliency (which pixels drove the prediction)",
    );
    if !o.show {
        return None;
    }
    if let Some(scope) = &o.scope {
        ui.weak(scope);
    }
    let before = (o.settings, o.era.clone());
    ui.horizontal(|ui| {
        let method = ui.label("Method");
        egui::ComboBox::from_id_salt(("method", id))
            .selected_text(o.settings.method.label())
            .show_ui(ui, |ui| {
                for m in SaliencyMethod::ALL {
                    ui.selectable_value(&mut o.settings.method, m, m.label());
                }
            })
            .response
            .labelled_by(method.id);
        let era = ui.label("for the era");
        egui::ComboBox::from_id_salt(("era", id))
            .selected_text(o.era.as_str())
            .show_ui(ui, |ui| {
                for e in &scheme.eras {
                    ui.selectable_value(&mut o.era, e.name.clone(), &e.name);
                }
            })
            .response
            .labelled_by(era.id);
    });
    match o.settings.method {
        SaliencyMethod::SmoothGrad => {
            ui.horizontal(|ui| {
                ui.add(egui::Slider::new(&mut o.settings.samples, 2..=64).text("samples"));
                ui.add(egui::Slider::new(&mut o.settings.noise, 0.0..=0.5).text("noise"));
            });
        }
        SaliencyMethod::Ig => {
            ui.add(egui::Slider::new(&mut o.settings.steps, 2..=64).text("steps"));
        }
        SaliencyMethod::Occlusion => {
            ui.add(egui::Slider::new(&mut o.settings.patch, 0.05..=0.5).text("patch size"));
        }
        SaliencyMethod::Gradient | SaliencyMethod::GradCam => {}
    }
    if (o.settings, o.era.as_str()) != (before.0, before.1.as_str()) {
        o.error = None;
    }
    ui.horizontal(|ui| {
        for mode in OverlayMode::ALL {
            ui.radio_value(&mut o.mode, mode, mode.label());
        }
        ui.add(egui::Slider::new(&mut o.opacity, 0.0..=1.0).text("opacity"));
    });
    let mut export = None;
    ui.horizontal(|ui| {
        if o.pending.is_some() {
            ui.spinner();
            ui.label(format!("Computing {}…", o.settings.method.label()));
        } else if let Some(e) = &o.error {
            ui.colored_label(ui.visuals().error_fg_color, format!("Saliency failed: {e}"));
        } else if let Some((key, _, ms)) = &o.map {
            let era = &key.era;
            ui.label(format!(
                "{} for {era} in {ms:.0} ms",
                key.settings.method.label()
            ));
        }
        if let Some((_, map, _)) = &o.map
            && ui.button("Export overlay PNG…").clicked()
        {
            export = Some(OverlayExport {
                poster: poster.clone(),
                map: map.clone(),
                mode: o.mode,
                opacity: o.opacity,
            });
        }
    });
    if let Some(s) = &o.export_status {
        ui.small(s);
    }
    export
}

/// The colour of the second reading (its note and its decade's bar).
const SECOND_READING: egui::Color32 = egui::Color32::from_rgb(214, 140, 40);

/// The note shown when a poster reads two ways.
fn two_readings_ui(ui: &mut egui::Ui, two: &crate::model::readings::TwoReadings) {
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.0, SECOND_READING))
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.colored_label(SECOND_READING, "Two readings:");
                ui.label(two.sentence());
            });
        })
        .response
        .on_hover_text(
            "The year distribution has two separate peaks. Many posters of old films are \
             later art (DVD, Criterion or re-release designs): true of the art, not of the \
             film. The highlighted bar is the second reading's decade.",
        );
}

fn prediction_ui(ui: &mut egui::Ui, id: usize, p: &Prediction, overlay: &mut Overlay, width: f32) {
    let (best, prob) = &p.eras[p.best_era];
    ui.heading(format!("{best} ({:.0}%)", 100.0 * prob));
    ui.label(format!(
        "Estimated year: {:.0} (80% interval {:.0}–{:.0})",
        p.year, p.interval.0, p.interval.1
    ));
    if let Some(two) = &p.two_readings {
        two_readings_ui(ui, two);
    }
    ui.add_space(4.0);
    for (name, prob) in &p.eras {
        ui.horizontal(|ui| {
            // Clicking an era explains that era.
            let chosen = overlay.show && overlay.era == *name;
            let label = ui.add_sized(
                [170.0, 16.0],
                egui::Button::selectable(chosen, name.as_str()),
            );
            if label
                .on_hover_text("Show which pixels point to this era")
                .clicked()
            {
                overlay.era.clone_from(name);
                overlay.show = true;
                overlay.error = None;
            }
            // An era with (almost) no probability gets no bar, only its figure.
            if *prob >= 0.0005 {
                ui.add(
                    egui::ProgressBar::new(*prob as f32)
                        .desired_width((width - 190.0).clamp(120.0, 480.0))
                        .text(format!("{:.1}%", 100.0 * prob)),
                );
            } else {
                ui.weak("0%");
            }
        });
    }
    ui.add_space(4.0);
    ui.label("Decades:");
    // The second reading's peak decade stands out in the chart.
    let other = p.two_readings.map(|r| r.other_decade);
    let bars: Vec<Bar> = p
        .decades
        .iter()
        .map(|(d, v)| {
            let bar = Bar::new(f64::from(*d) + 5.0, *v).width(8.0);
            if other == Some(*d) {
                bar.fill(SECOND_READING)
            } else {
                bar
            }
        })
        .collect();
    Plot::new(("decades", id))
        .height(120.0)
        .width((width - 10.0).clamp(260.0, 900.0))
        .x_grid_spacer(super::compare_tab::decade_marks)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .include_y(0.0)
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("decade probability", bars));
        });
}
