//! Importing a folder of posters from the window: pick (or drop) a folder, take the
//! years from a labels CSV or from the file names with a preview of what was understood,
//! then import on a worker thread with progress and cancel, and list the files that were
//! not imported with the reason.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};

use eframe::egui;

use super::{AppCommand, CommandSender};
use crate::imaging::ImageLimits;
use crate::import::{
    ImportError, ImportOptions, ImportProgress, ImportSummary, LabelRow, Skipped, import_into,
};
use crate::joblock::JobLock;
use crate::jobs::JobHandle;
use crate::paths::DataDir;

/// What a file dialog gave back.
enum Picked {
    Folder(PathBuf),
    Labels(PathBuf),
    /// No dialog could be shown (why).
    NoDialog(String),
}

struct Running {
    job: JobHandle<ImportSummary, ImportProgress, ImportError>,
    progress: ImportProgress,
}

/// What the labels preview shows: the rows understood and the files skipped.
type Preview = Result<(Vec<LabelRow>, Vec<Skipped>), String>;

/// The import window and its job.
#[derive(Default)]
pub struct ImportPanel {
    open: bool,
    dir: Option<PathBuf>,
    labels: Option<PathBuf>,
    copy: bool,
    preview: Option<Preview>,
    picking: Option<Receiver<Picked>>,
    running: Option<Running>,
    result: Option<Result<ImportSummary, String>>,
    note: Option<String>,
    /// Where "the catalog changed" goes when an import stored posters.
    commands: CommandSender,
}

impl ImportPanel {
    /// Sends app commands (an import that stored posters reloads the catalog) to
    /// `commands`.
    #[must_use]
    pub fn with_commands(mut self, commands: CommandSender) -> Self {
        self.commands = commands;
        self
    }

    /// Opens the window on `dir` (years from the file names until a CSV is chosen).
    pub fn open_folder(&mut self, dir: PathBuf) {
        self.open = true;
        self.dir = Some(dir);
        self.labels = None;
        self.result = None;
        self.note = None;
        self.refresh_preview();
    }

    /// Asks for a folder with the system's file dialog (on a helper thread).
    pub fn pick_folder(&mut self, ctx: &egui::Context) {
        self.open = true;
        self.pick(ctx, true);
    }

    /// Whether the import window is open.
    pub fn is_open(&self) -> bool {
        self.open
    }

    fn pick(&mut self, ctx: &egui::Context, folder: bool) {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        let start = self.dir.clone();
        let spawned = std::thread::Builder::new()
            .name("import-dialog".into())
            .spawn(move || {
                let picked = super::dialogs::show(|| {
                    let mut d = rfd::FileDialog::new();
                    if let Some(dir) = &start {
                        d = d.set_directory(dir);
                    }
                    if folder {
                        d.set_title("Import a folder of posters")
                            .pick_folder()
                            .map(Picked::Folder)
                    } else {
                        d.set_title("Labels CSV (file,year[,title])")
                            .add_filter("CSV", &["csv", "txt"])
                            .pick_file()
                            .map(Picked::Labels)
                    }
                });
                match picked {
                    super::dialogs::Picked::Chosen(p) => {
                        let _ = tx.send(p);
                    }
                    super::dialogs::Picked::Cancelled => {}
                    super::dialogs::Picked::Unavailable(why) => {
                        let _ = tx.send(Picked::NoDialog(why));
                    }
                }
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => self.picking = Some(rx),
            Err(e) => self.note = Some(format!("cannot open a file dialog: {e}")),
        }
    }

    fn refresh_preview(&mut self) {
        let Some(dir) = &self.dir else {
            self.preview = None;
            return;
        };
        let opts = self.options(dir.clone(), None);
        self.preview = Some(crate::import::labels_for(&opts).map_err(|e| e.to_string()));
    }

    fn options(&self, dir: PathBuf, copy_into: Option<PathBuf>) -> ImportOptions {
        ImportOptions {
            dir,
            labels: self.labels.clone(),
            copy_into,
            limits: ImageLimits::default(),
            batch: 64,
        }
    }

    fn poll(&mut self) {
        if let Some(rx) = &self.picking {
            match rx.try_recv() {
                Ok(Picked::Folder(dir)) => {
                    self.picking = None;
                    self.open_folder(dir);
                }
                Ok(Picked::Labels(csv)) => {
                    self.picking = None;
                    self.labels = Some(csv);
                    self.refresh_preview();
                }
                Ok(Picked::NoDialog(why)) => {
                    self.picking = None;
                    self.note = Some(why);
                }
                Err(TryRecvError::Disconnected) => self.picking = None,
                Err(TryRecvError::Empty) => {}
            }
        }
        let Some(run) = &mut self.running else { return };
        let polled = run.job.poll();
        if let Some(p) = polled.progress.last() {
            run.progress = *p;
        }
        if let Some(r) = polled.done {
            let r = r.map_err(|e| e.to_string());
            if r.as_ref().is_ok_and(|s| s.added_ok + s.added_failed > 0) {
                self.commands.send(AppCommand::ReloadCatalog);
            }
            self.result = Some(r);
            self.running = None;
        }
    }

    fn start(&mut self, ctx: &egui::Context, data_dir: &DataDir) {
        let Some(dir) = self.dir.clone() else { return };
        let lock = match JobLock::acquire(data_dir, "import") {
            Ok(l) => l,
            Err(e) => {
                self.result = Some(Err(e.to_string()));
                return;
            }
        };
        let opts = self.options(dir, self.copy.then(|| data_dir.posters_dir()));
        let catalog_path = data_dir.catalog_path();
        let job = JobHandle::spawn("import", super::job_waker(ctx), move |control, progress| {
            let _lock = lock;
            import_into(&catalog_path, &opts, control, progress)
        });
        match job {
            Ok(job) => {
                self.result = None;
                self.running = Some(Running {
                    job,
                    progress: ImportProgress::default(),
                });
            }
            Err(e) => self.result = Some(Err(e.to_string())),
        }
    }

    /// Draws the import window (when open).
    pub fn ui(&mut self, ctx: &egui::Context, data_dir: &DataDir) {
        self.poll();
        if !self.open {
            return;
        }
        let mut open = true;
        egui::Window::new("Import posters")
            .open(&mut open)
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(ctx.content_rect().center())
            .default_width(560.0)
            .show(ctx, |ui| self.contents(ui, data_dir));
        // Closing the window does not stop a running import.
        self.open = open || self.running.is_some();
    }

    fn contents(&mut self, ui: &mut egui::Ui, data_dir: &DataDir) {
        let busy = self.running.is_some();
        ui.horizontal(|ui| {
            ui.label("Folder:");
            match &self.dir {
                Some(d) => ui.monospace(d.display().to_string()),
                None => ui.weak("none chosen"),
            };
            if ui
                .add_enabled(!busy, egui::Button::new("Choose folder…"))
                .clicked()
            {
                self.pick(ui.ctx(), true);
            }
        });
        ui.horizontal(|ui| {
            ui.label("Years:");
            match &self.labels {
                Some(csv) => ui.monospace(format!("from {}", csv.display())),
                None => ui.label("from the file names (`Title (1977).jpg`, `title_1977.jpg`)"),
            };
        });
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!busy, egui::Button::new("Choose labels CSV…"))
                .clicked()
            {
                self.pick(ui.ctx(), false);
            }
            if self.labels.is_some()
                && ui
                    .add_enabled(!busy, egui::Button::new("Use file names"))
                    .clicked()
            {
                self.labels = None;
                self.refresh_preview();
            }
        });
        ui.checkbox(
            &mut self.copy,
            "Copy the posters into the data folder (otherwise they are read where they are)",
        );
        if let Some(note) = &self.note {
            ui.colored_label(ui.visuals().warn_fg_color, note);
        }
        let mut can_import = false;
        match &self.preview {
            Some(Ok((rows, skipped))) => {
                can_import = !rows.is_empty();
                ui.label(format!(
                    "{} posters understood, {} not",
                    rows.len(),
                    skipped.len()
                ));
                egui::Grid::new("import-preview")
                    .striped(true)
                    .show(ui, |ui| {
                        ui.strong("File");
                        ui.strong("Year");
                        ui.strong("Title");
                        ui.end_row();
                        for r in rows.iter().take(8) {
                            ui.label(&r.file);
                            ui.label(r.year.to_string());
                            ui.label(&r.title);
                            ui.end_row();
                        }
                    });
                for s in skipped.iter().take(5) {
                    ui.small(format!("not understood: {}: {}", s.file, s.reason));
                }
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {}
        }
        ui.separator();
        if let Some(run) = &self.running {
            let p = run.progress;
            ui.horizontal(|ui| {
                ui.add(
                    egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32)
                        .desired_width(320.0)
                        .text(format!(
                            "{} of {} posters ({} failed)",
                            p.done, p.total, p.failed
                        )),
                );
                if ui.button("Cancel import").clicked() {
                    run.job.cancel();
                }
            });
        } else if ui
            .add_enabled(can_import, egui::Button::new("Import"))
            .clicked()
        {
            self.start(ui.ctx(), data_dir);
        }
        match &self.result {
            Some(Ok(s)) => {
                ui.label(format!(
                    "Imported {} posters ({} failed, {} already in the catalog, {} skipped).",
                    s.added_ok,
                    s.added_failed,
                    s.already_present,
                    s.skipped.len()
                ));
                egui::ScrollArea::vertical()
                    .max_height(160.0)
                    .show(ui, |ui| {
                        for bad in s.failed.iter().chain(&s.skipped).take(50) {
                            ui.small(format!("{}: {}", bad.file, bad.reason));
                        }
                    });
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("Import failed: {e}"));
            }
            None => {}
        }
    }
}
