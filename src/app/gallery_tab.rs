//! The Gallery tab: a virtualised grid over the whole catalog (only the rows on screen
//! are laid out; thumbnails load lazily off the UI thread into a bounded cache), filters
//! by era, decade, year range, genre, title and poster status, four sort orders, a
//! thumbnail size slider, tiles with the release year and (once the model has seen the
//! catalog) its guess as badges, a details panel with the model's prediction, Grad-CAM,
//! a link to the movie's TMDB page and "Open in Classify", and a 2-D map of the catalog
//! laid out by the model's features: coloured by year, zoom and pan, posters in place of
//! points when zoomed in, and a lasso that narrows the grid to what it surrounds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;
use egui_plot::{Line, MarkerShape, Plot, PlotImage, PlotPoint, PlotPoints, Points, Polygon};

use super::analysis::{Analysis, CatalogAnalysis};
use super::thumbs::Thumbnails;
use super::{AppCommand, CommandSender};
use crate::catalog::PosterStatus;
use crate::eras::EraScheme;
use crate::explore::layout::MapLayout;
use crate::explore::{self, Explorer, Filter, SortKey};
use crate::jobs::JobHandle;
use crate::model::inference::Prediction;
use crate::model::readings;
use crate::paths::DataDir;

/// Gallery settings remembered between runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GallerySettings {
    /// Filters.
    pub filter: Filter,
    /// Order.
    pub sort: SortKey,
    /// Largest first.
    pub descending: bool,
    /// Thumbnail width in points.
    pub thumb_width: f32,
    /// Show the 2-D map instead of the grid.
    pub map: bool,
    /// Run the model over the catalog and show its guess on every tile.
    pub predictions: bool,
    /// How the Map lays posters out.
    #[serde(default)]
    pub map_layout: MapLayout,
    /// What the Map's colours show.
    #[serde(default)]
    pub map_colour: MapColour,
}

/// What the Map's colours show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum MapColour {
    /// Release year, on a colour ramp.
    #[default]
    Year,
    /// Era of the chosen scheme, one colour each.
    Era,
}

/// `(epoch, epochs)` of a t-SNE fit.
type Epochs = (usize, usize);

/// The Map's t-SNE layout of one model pass: computing, or done.
struct TsneLayout {
    /// The pass it is for (by identity).
    pass: usize,
    job: Option<JobHandle<Vec<[f32; 2]>, Epochs>>,
    progress: (usize, usize),
    coords: Option<Arc<Vec<[f32; 2]>>>,
    error: Option<String>,
}

impl Default for GallerySettings {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            sort: SortKey::Year,
            descending: false,
            thumb_width: 96.0,
            map: false,
            predictions: false,
            map_layout: MapLayout::Pca,
            map_colour: MapColour::Year,
        }
    }
}

/// What the shown list was computed for.
#[derive(Clone, PartialEq)]
struct SelectionKey {
    filter: Filter,
    sort: SortKey,
    descending: bool,
    scheme: String,
    rows: usize,
    analysed: bool,
    lasso: u64,
}

/// Largest number of posters drawn as pictures on the map (more are points).
const MAP_PICTURES: usize = 150;

/// The map's view in the previous frame: visible bounds and plot units per screen point.
#[derive(Debug, Clone, Copy)]
struct MapView {
    min: [f64; 2],
    max: [f64; 2],
    per_point: [f64; 2],
}

impl MapView {
    fn contains(&self, p: [f64; 2]) -> bool {
        (self.min[0]..=self.max[0]).contains(&p[0]) && (self.min[1]..=self.max[1]).contains(&p[1])
    }
}

enum DetailState {
    Loading,
    Ready {
        prediction: Box<Prediction>,
        poster: egui::TextureHandle,
        overlay: egui::TextureHandle,
    },
    Failed(String),
}

/// State of the Gallery tab.
pub struct GalleryTab {
    analysis: Option<Analysis>,
    /// The Map's t-SNE layout.
    tsne: Option<TsneLayout>,
    shown: Vec<usize>,
    key: Option<SelectionKey>,
    errors: HashMap<i64, f32>,
    /// The second reading's share per movie id (0 with one reading).
    second_readings: HashMap<i64, f32>,
    selected: Option<usize>,
    detail: Option<(i64, DetailState)>,
    /// The era scheme the details were asked for.
    detail_scheme: String,
    map_pick: Vec<usize>,
    /// Said once after the era scheme changed under a filter.
    note: Option<String>,
    /// The model of the model pass and details (`None`: the shipped one).
    model_dir: Option<PathBuf>,
    /// Rows the filters keep, before the lasso (the map shows all of them).
    filtered: Vec<usize>,
    /// Drawing the lasso on the map (instead of panning).
    lasso_mode: bool,
    /// The lasso being drawn, in map coordinates.
    lasso_path: Vec<[f64; 2]>,
    /// The last lasso drawn and the movies inside it.
    lasso: Option<(Vec<[f64; 2]>, HashSet<i64>)>,
    lasso_gen: u64,
    map_view: Option<MapView>,
    /// Where the map was drawn (for tests).
    map_rect: Option<egui::Rect>,
    /// Where "open in Classify" goes.
    commands: CommandSender,
    /// The TMDB website, for the details' link (the Harvest settings' site URL).
    pub site_url: String,
}

impl Default for GalleryTab {
    fn default() -> Self {
        Self::new()
    }
}

impl GalleryTab {
    /// An empty tab.
    pub fn new() -> Self {
        Self {
            analysis: None,
            tsne: None,
            shown: Vec::new(),
            key: None,
            errors: HashMap::new(),
            second_readings: HashMap::new(),
            selected: None,
            detail: None,
            detail_scheme: String::new(),
            map_pick: Vec::new(),
            note: None,
            model_dir: None,
            filtered: Vec::new(),
            lasso_mode: false,
            lasso_path: Vec::new(),
            lasso: None,
            lasso_gen: 0,
            map_view: None,
            map_rect: None,
            commands: CommandSender::default(),
            site_url: crate::harvest::tmdb::DEFAULT_SITE_URL.to_owned(),
        }
    }

    /// Where the map's plot was drawn in the last frame it was shown (for tests).
    pub fn map_rect(&self) -> Option<egui::Rect> {
        self.map_rect
    }

    /// Narrows the grid to these movies, as a lasso on the map does (`None`: no lasso).
    pub fn set_lasso(&mut self, ids: Option<HashSet<i64>>) {
        self.lasso = ids.map(|ids| (Vec::new(), ids));
        self.lasso_gen += 1;
    }

    /// Sends app commands ("open in Classify") to `commands`.
    #[must_use]
    pub fn with_commands(mut self, commands: CommandSender) -> Self {
        self.commands = commands;
        self
    }

    /// The rows shown now (indices into the explorer's rows), for tests.
    pub fn shown(&self) -> &[usize] {
        &self.shown
    }

    /// |predicted − released| per movie id, once the model has seen the catalog.
    pub fn errors(&self) -> &HashMap<i64, f32> {
        &self.errors
    }

    /// The second reading's share per movie id (0 with one reading), once the model has
    /// seen the catalog.
    pub fn second_readings(&self) -> &HashMap<i64, f32> {
        &self.second_readings
    }

    fn analysis(&mut self, data_dir: &DataDir, ctx: &egui::Context) -> &mut Analysis {
        let model = self.model_dir.clone();
        self.analysis
            .get_or_insert_with(|| Analysis::new(data_dir.catalog_path(), model, ctx))
    }

    /// Uses the model in `dir` (the shipped one for `None`) for predictions, the map and
    /// the error sort from now on: what the old model computed is dropped.
    pub fn set_model(&mut self, dir: Option<PathBuf>) {
        if self.model_dir == dir {
            return;
        }
        self.model_dir = dir;
        self.analysis = None;
        self.errors.clear();
        self.second_readings.clear();
        self.key = None;
        self.detail = None;
        self.detail_scheme.clear();
    }

    /// The model's finished pass over the catalog, if it has run.
    pub fn analysis_result(&self) -> Option<Arc<CatalogAnalysis>> {
        self.analysis.as_ref().and_then(|a| a.result.clone())
    }

    /// Runs the model over the catalog (once), as the Map and the error sort do.
    pub fn run_model_pass(&mut self, explorer: &Explorer, data_dir: &DataDir, ctx: &egui::Context) {
        self.start_pass(explorer, data_dir, ctx);
    }

    fn start_pass(&mut self, explorer: &Explorer, data_dir: &DataDir, ctx: &egui::Context) {
        // Called each frame while the map or a model sort is on: the poster list is built
        // once, when the pass starts.
        if self.analysis.as_ref().is_some_and(Analysis::started) {
            return;
        }
        let posters = crate::model::catalog_pass::catalog_posters(&explorer.rows, data_dir);
        self.analysis(data_dir, ctx).start_pass(posters);
    }

    fn poll(&mut self, ctx: &egui::Context, explorer: &Explorer) {
        let Some(a) = &mut self.analysis else { return };
        for d in a.poll() {
            if self
                .detail
                .as_ref()
                .is_some_and(|(id, _)| *id == d.movie_id)
            {
                let state = match d.result {
                    Ok((prediction, poster, overlay)) => DetailState::Ready {
                        prediction: Box::new(prediction),
                        poster: ctx.load_texture(
                            "detail-poster",
                            poster,
                            egui::TextureOptions::LINEAR,
                        ),
                        overlay: ctx.load_texture(
                            "detail-overlay",
                            overlay,
                            egui::TextureOptions::LINEAR,
                        ),
                    },
                    Err(e) => DetailState::Failed(e),
                };
                self.detail = Some((d.movie_id, state));
            }
        }
        if self.errors.is_empty()
            && let Some(r) = &a.result
        {
            self.errors = errors_of(explorer, r);
            self.second_readings = second_readings_of(r);
        }
    }

    /// Draws the tab.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        explorer: &Arc<Explorer>,
        scheme: &EraScheme,
        data_dir: &DataDir,
        thumbs: &mut Thumbnails,
        settings: &mut GallerySettings,
    ) {
        self.poll(ui.ctx(), explorer);
        // Filters hold eras by name; a name the scheme in use lacks is cleared, visibly.
        if let Some(era) = &settings.filter.era
            && !scheme.eras.iter().any(|e| e.name == *era)
        {
            self.note = Some(format!(
                "Era filter \u{201c}{era}\u{201d} cleared: {} has no such era.",
                scheme.label
            ));
            settings.filter.era = None;
        }
        // Details describe the selected poster for the scheme in use.
        if let Some(i) = self.selected
            && self.detail.is_some()
            && self.detail_scheme != scheme.name
        {
            self.select(i, explorer, scheme, data_dir, ui.ctx());
        }
        filters_ui(ui, explorer, scheme, settings);
        if let Some(note) = &self.note {
            let mut dismiss = false;
            ui.horizontal(|ui| {
                ui.colored_label(ui.visuals().warn_fg_color, note);
                dismiss = ui.small_button("OK").clicked();
            });
            if dismiss {
                self.note = None;
            }
        }
        if settings.sort.needs_model() || settings.map || settings.predictions {
            self.start_pass(explorer, data_dir, ui.ctx());
        }
        let key = SelectionKey {
            filter: settings.filter.clone(),
            sort: settings.sort,
            descending: settings.descending,
            scheme: scheme.name.clone(),
            rows: explorer.rows.len(),
            analysed: !self.errors.is_empty(),
            lasso: self.lasso_gen,
        };
        if self.key.as_ref() != Some(&key) {
            let scores = if key.sort == SortKey::TwoReadings {
                &self.second_readings
            } else {
                &self.errors
            };
            self.filtered = explorer.select(scheme, &key.filter, key.sort, key.descending, scores);
            self.shown.clone_from(&self.filtered);
            if let Some((_, ids)) = &self.lasso {
                self.shown.retain(|&i| ids.contains(&explorer.rows[i].id));
            }
            self.key = Some(key);
            if self.selected.is_some_and(|s| !self.shown.contains(&s)) {
                self.selected = None;
                self.detail = None;
            }
        }
        ui.horizontal(|ui| {
            ui.label(format!(
                "{} of {} movies",
                self.shown.len(),
                explorer.rows.len()
            ));
            if let Some((_, ids)) = &self.lasso {
                ui.separator();
                ui.label(format!("Lasso on the map: {} posters", ids.len()));
                if ui.small_button("Clear lasso").clicked() {
                    self.set_lasso(None);
                }
            }
            if let Some(a) = &self.analysis {
                if let Some((done, total)) = a.progress {
                    ui.spinner();
                    ui.label(format!("Model: predicting {done} / {total} posters…"));
                } else if let Some(e) = &a.error {
                    ui.colored_label(ui.visuals().error_fg_color, format!("Model: {e}"));
                }
            }
        });
        ui.separator();
        if self.selected.is_some() {
            egui::Panel::right("gallery-details")
                .resizable(true)
                .default_size(300.0)
                .show(ui, |ui| {
                    // Scrolls: with "More like this" the panel is taller than the window.
                    let picked = egui::ScrollArea::vertical()
                        .id_salt("gallery-details-scroll")
                        .show(ui, |ui| {
                            self.details_ui(ui, explorer, scheme, data_dir, thumbs)
                        })
                        .inner;
                    if let Some(i) = picked {
                        self.select(i, explorer, scheme, data_dir, ui.ctx());
                    }
                });
        }
        missing_files_ui(ui, thumbs);
        let clicked = if settings.map {
            self.map_ui(ui, explorer, scheme, thumbs, data_dir, settings)
        } else {
            self.grid_ui(ui, explorer, thumbs, settings.thumb_width, data_dir)
        };
        if let Some(i) = clicked {
            self.select(i, explorer, scheme, data_dir, ui.ctx());
        }
    }

    fn select(
        &mut self,
        i: usize,
        explorer: &Explorer,
        scheme: &EraScheme,
        data_dir: &DataDir,
        ctx: &egui::Context,
    ) {
        self.selected = Some(i);
        let r = &explorer.rows[i];
        self.detail = None;
        if let Some(file) = &r.poster_file
            && r.status == Some(PosterStatus::Ok)
        {
            let path = data_dir.poster_path(file);
            let id = r.id;
            self.analysis(data_dir, ctx)
                .request_detail(id, path, scheme.clone());
            self.detail = Some((id, DetailState::Loading));
            self.detail_scheme.clone_from(&scheme.name);
        }
    }

    /// The virtualised grid; returns the poster clicked.
    fn grid_ui(
        &mut self,
        ui: &mut egui::Ui,
        explorer: &Arc<Explorer>,
        thumbs: &mut Thumbnails,
        thumb_width: f32,
        data_dir: &DataDir,
    ) -> Option<usize> {
        let cell = egui::vec2(thumb_width, thumb_width * 1.5);
        let gap = 6.0;
        // What is really visible (the panel may have been widened by wide content).
        let width = (ui.clip_rect().right() - ui.cursor().left() - 16.0)
            .min(ui.available_width())
            .max(cell.x);
        let per_row = (((width + gap) / (cell.x + gap)).floor() as usize).max(1);
        let rows = self.shown.len().div_ceil(per_row);
        let analysis = self.analysis.as_ref().and_then(|a| a.result.clone());
        let mut clicked = None;
        egui::ScrollArea::vertical()
            .id_salt("gallery-grid")
            .auto_shrink([false, false])
            .show_rows(ui, cell.y, rows, |ui, range| {
                for row in range {
                    ui.horizontal(|ui| {
                        ui.spacing_mut().item_spacing.x = gap;
                        for col in 0..per_row {
                            let Some(&i) = self.shown.get(row * per_row + col) else {
                                break;
                            };
                            let r = &explorer.rows[i];
                            // The model's estimated year and its badge text, once computed.
                            let predicted = analysis
                                .as_ref()
                                .and_then(|a| a.index.get(&r.id).map(|&k| a.years[k]))
                                .map(|p| (p, explore::prediction_badge(p, r.year)));
                            let mut label = match r.year {
                                Some(y) => format!("{} ({y})", r.title),
                                None => r.title.clone(),
                            };
                            // The badges, for screen readers and tests too.
                            if let Some((_, (decade, off))) = &predicted {
                                label.push_str(&format!(" \u{2014} model {decade}"));
                                if let Some(o) = off {
                                    label.push_str(&format!(", {o}"));
                                }
                            }
                            let (rect, resp) = ui.allocate_exact_size(cell, egui::Sense::click());
                            resp.widget_info(|| {
                                egui::WidgetInfo::labeled(egui::Role::Button, true, &label)
                            });
                            if ui.is_rect_visible(rect) {
                                let file = super::thumbs::row_file(data_dir, r);
                                cell_ui(ui, thumbs, r, file.as_deref(), rect);
                                badges_ui(ui, rect, r.year, predicted.as_ref());
                                if self.selected == Some(i) {
                                    ui.painter().rect_stroke(
                                        rect.expand(2.0),
                                        2.0,
                                        egui::Stroke::new(3.0, ui.visuals().selection.bg_fill),
                                        egui::StrokeKind::Outside,
                                    );
                                }
                            }
                            if resp.on_hover_text(&label).clicked() {
                                clicked = Some(i);
                            }
                        }
                    });
                }
            });
        clicked
    }

    /// The t-SNE layout of `pass`: cached or computed on a job (with a progress bar
    /// meanwhile, the PCA layout showing); `None` until it is ready.
    fn tsne_coords(
        &mut self,
        ui: &mut egui::Ui,
        pass: &Arc<CatalogAnalysis>,
        data_dir: &DataDir,
    ) -> Option<Arc<Vec<[f32; 2]>>> {
        let id = Arc::as_ptr(pass) as usize;
        if self.tsne.as_ref().is_none_or(|t| t.pass != id) {
            let pass = Arc::clone(pass);
            let cache = data_dir
                .root()
                .join("cache")
                .join(format!("map-tsne-{}.json", layout_key(&pass)));
            let job = JobHandle::spawn("t-SNE layout", super::job_waker(ui.ctx()), move |_, p| {
                // A layout computed before for this model and catalog is read back.
                if let Some(c) = std::fs::read(&cache)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Vec<[f32; 2]>>(&b).ok())
                    .filter(|c| c.len() == pass.movie_ids.len())
                {
                    return Ok(c);
                }
                let p = p.clone();
                let coords =
                    explore::layout::tsne_2d(&pass.embeddings, pass.dim, 1, false, &mut |e, n| {
                        p.report((e, n));
                    });
                // A cache that cannot be written only costs time next time.
                if let Ok(json) = serde_json::to_vec(&coords)
                    && let Err(e) = crate::fsutil::write_atomic(&cache, &json)
                {
                    log::warn!("cannot cache the map layout in {}: {e}", cache.display());
                }
                Ok::<_, String>(coords)
            });
            let (job, error) = match job {
                Ok(j) => (Some(j), None),
                Err(e) => (None, Some(e.to_string())),
            };
            self.tsne = Some(TsneLayout {
                pass: id,
                job,
                progress: (0, explore::layout::TSNE_EPOCHS),
                coords: None,
                error,
            });
        }
        let t = self.tsne.as_mut()?;
        if let Some(job) = &mut t.job {
            let polled = job.poll();
            if let Some(&p) = polled.progress.last() {
                t.progress = p;
            }
            match polled.done {
                Some(Ok(c)) => {
                    t.coords = Some(Arc::new(c));
                    t.job = None;
                }
                Some(Err(e)) => {
                    t.error = Some(e.to_string());
                    t.job = None;
                }
                None => {}
            }
        }
        if let Some(e) = &t.error {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("t-SNE layout failed: {e}"),
            );
        } else if t.coords.is_none() {
            let (done, total) = t.progress;
            ui.add(
                egui::ProgressBar::new(done as f32 / total.max(1) as f32).text(format!(
                    "t-SNE layout: epoch {done} of {total} (the PCA layout meanwhile)"
                )),
            );
        }
        t.coords.clone()
    }

    /// The 2-D map of model features; returns the poster clicked (on the map or in the
    /// strip below it).
    // The window's state it reads: catalog, scheme, thumbnails, data directory, settings.
    #[allow(clippy::too_many_arguments)]
    fn map_ui(
        &mut self,
        ui: &mut egui::Ui,
        explorer: &Arc<Explorer>,
        scheme: &EraScheme,
        thumbs: &mut Thumbnails,
        data_dir: &DataDir,
        settings: &mut GallerySettings,
    ) -> Option<usize> {
        let Some(result) = self.analysis.as_ref().and_then(|a| a.result.clone()) else {
            ui.label(
                "The map appears when the model has seen every poster (see the progress above).",
            );
            return None;
        };
        ui.horizontal_wrapped(|ui| {
            ui.label("Layout");
            ui.selectable_value(&mut settings.map_layout, MapLayout::Pca, "PCA")
                .on_hover_text("The first two principal components of the model's features");
            ui.selectable_value(&mut settings.map_layout, MapLayout::Tsne, "t-SNE")
                .on_hover_text(
                    "Posters the model sees as alike close together (computed once per model \
                     and catalog, then cached)",
                );
            ui.separator();
            ui.label("Colour");
            ui.selectable_value(&mut settings.map_colour, MapColour::Year, "year");
            ui.selectable_value(&mut settings.map_colour, MapColour::Era, "era");
            ui.separator();
            ui.toggle_value(&mut self.lasso_mode, "Lasso")
                .on_hover_text("Drag around posters to keep only them in the grid");
        });
        let coords = match settings.map_layout {
            MapLayout::Pca => None,
            MapLayout::Tsne => self.tsne_coords(ui, &result, data_dir),
        };
        let coords: &[[f32; 2]] = coords.as_deref().map_or(&result.coords, |c| c.as_slice());
        ui.label(format!(
            "Each point is a poster, placed by {} of the model's features and coloured by \
             {}. Scroll to zoom, drag to pan, double-click to see everything; zoomed in, \
             points become posters.",
            if coords.as_ptr() == result.coords.as_ptr() {
                "the first two principal components"
            } else {
                "a t-SNE layout"
            },
            match settings.map_colour {
                MapColour::Year => "release year",
                MapColour::Era => "era",
            }
        ));
        let (first, last) = explorer.year_range.unwrap_or((1890, 2030));
        // Points of the movies the filters keep, by five-year group for their colour.
        let mut groups: BTreeMap<i32, Vec<[f64; 2]>> = BTreeMap::new();
        let mut members: Vec<(usize, [f64; 2])> = Vec::new();
        for &i in &self.filtered {
            let r = &explorer.rows[i];
            let (Some(&k), Some(year)) = (result.index.get(&r.id), r.year) else {
                continue;
            };
            let Some(c) = coords.get(k) else { continue };
            let p = [f64::from(c[0]), f64::from(c[1])];
            let group = match settings.map_colour {
                MapColour::Year => year.div_euclid(5) * 5,
                MapColour::Era => scheme.era_index(year) as i32,
            };
            groups.entry(group).or_default().push(p);
            members.push((i, p));
        }
        // Zoomed in far enough, the posters themselves (as of the previous frame's view),
        // each framed in its year's colour so the map keeps its colour key.
        let mut pictures: Vec<(PlotPoint, egui::TextureId, egui::Color32)> = Vec::new();
        let mut picture_size = egui::Vec2::ZERO;
        if let Some(view) = self.map_view {
            let in_view: Vec<&(usize, [f64; 2])> =
                members.iter().filter(|(_, p)| view.contains(*p)).collect();
            if !in_view.is_empty() && in_view.len() <= MAP_PICTURES {
                picture_size = egui::vec2(
                    (36.0 * view.per_point[0]) as f32,
                    (54.0 * view.per_point[1]) as f32,
                );
                for (i, p) in in_view {
                    let r = &explorer.rows[*i];
                    let file = super::thumbs::row_file(data_dir, r);
                    if let Some(pid) = r.poster_id
                        && let Some(tex) = thumbs.get(pid, file.as_deref())
                    {
                        let year = r.year.unwrap_or(first);
                        let [cr, cg, cb] = explore::year_colour(year as f32, first, last);
                        let colour = egui::Color32::from_rgb(cr, cg, cb);
                        pictures.push((PlotPoint::new(p[0], p[1]), tex, colour));
                    }
                }
            }
        }
        let selected = self
            .selected
            .and_then(|i| members.iter().find(|(m, _)| *m == i))
            .map(|(_, p)| *p);
        let lasso_outline = if self.lasso_path.is_empty() {
            self.lasso.as_ref().map(|(poly, _)| poly.clone())
        } else {
            Some(self.lasso_path.clone())
        };
        let lasso_mode = self.lasso_mode;
        let map_colour = settings.map_colour;
        let scroll = ui.input(|i| i.smooth_scroll_delta.y);
        let height = (ui.available_height() - 150.0).max(200.0);
        let width = ui.available_width();
        let response = Plot::new("feature-map")
            .height(height)
            .width(width)
            .set_margin_fraction(egui::vec2(0.01, 0.01))
            .show_axes(false)
            .show_grid(false)
            .allow_scroll(false)
            .allow_drag(!lasso_mode)
            .allow_double_click_reset(true)
            .show_x(false)
            .show_y(false)
            .show(ui, |plot| {
                if plot.response().hovered() && scroll != 0.0 {
                    let f = (scroll * 0.004).exp();
                    plot.zoom_bounds_around_hovered(egui::vec2(f, f));
                }
                for (group, pts) in groups {
                    let ([r, g, b], name) = match map_colour {
                        MapColour::Year => (
                            explore::year_colour(group as f32 + 2.0, first, last),
                            format!("{group}\u{2013}{}", group + 4),
                        ),
                        MapColour::Era => (
                            explore::column_colour(group as usize),
                            scheme
                                .eras
                                .get(group as usize)
                                .map_or_else(String::new, |e| e.name.clone()),
                        ),
                    };
                    plot.points(
                        Points::new(name, PlotPoints::from(pts))
                            .radius(2.0)
                            .color(egui::Color32::from_rgb(r, g, b)),
                    );
                }
                let (hw, hh) = (
                    f64::from(picture_size.x) / 2.0,
                    f64::from(picture_size.y) / 2.0,
                );
                for (at, tex, colour) in pictures {
                    plot.image(PlotImage::new("poster", tex, at, picture_size));
                    let (x0, x1, y0, y1) = (at.x - hw, at.x + hw, at.y - hh, at.y + hh);
                    let frame = vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
                    plot.polygon(
                        Polygon::new("year frame", PlotPoints::from(frame))
                            .stroke(egui::Stroke::new(2.0, colour))
                            .fill_color(egui::Color32::TRANSPARENT)
                            .allow_hover(false),
                    );
                }
                if let Some(poly) = lasso_outline
                    && poly.len() > 1
                {
                    let mut closed = poly;
                    closed.push(closed[0]);
                    plot.line(
                        Line::new("lasso", PlotPoints::from(closed))
                            .color(egui::Color32::WHITE)
                            .width(1.5),
                    );
                }
                if let Some(p) = selected {
                    plot.points(
                        Points::new("selected poster", PlotPoints::from(vec![p]))
                            .shape(MarkerShape::Circle)
                            .filled(false)
                            .radius(8.0)
                            .color(egui::Color32::WHITE),
                    );
                }
                plot.pointer_coordinate()
            });
        self.map_rect = Some(*response.transform.frame());
        let t = &response.transform;
        let b = t.bounds();
        let per = t.dvalue_dpos();
        self.map_view = Some(MapView {
            min: b.min(),
            max: b.max(),
            per_point: [per[0].abs(), per[1].abs()],
        });
        match map_colour {
            MapColour::Year => year_scale_ui(ui, first, last, width),
            MapColour::Era => {
                // The eras' colours, as the points use them.
                ui.horizontal_wrapped(|ui| {
                    for (k, e) in scheme.eras.iter().enumerate() {
                        let [r, g, b] = explore::column_colour(k);
                        let (dot, _) =
                            ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
                        ui.painter().circle_filled(
                            dot.center(),
                            4.0,
                            egui::Color32::from_rgb(r, g, b),
                        );
                        ui.small(&e.name);
                    }
                });
            }
        }
        let r = &response.response;
        let pointer = response.inner.map(|p| [p.x, p.y]);
        if lasso_mode {
            if r.drag_started() {
                self.lasso_path.clear();
            }
            if r.dragged()
                && let Some(p) = pointer
                && self.lasso_path.last() != Some(&p)
            {
                self.lasso_path.push(p);
            }
            if r.drag_stopped() {
                let poly = std::mem::take(&mut self.lasso_path);
                let ids: HashSet<i64> = members
                    .iter()
                    .filter(|(_, p)| explore::inside_polygon(*p, &poly))
                    .map(|(i, _)| explorer.rows[*i].id)
                    .collect();
                if poly.len() >= 3 {
                    self.lasso = Some((poly, ids));
                    self.lasso_gen += 1;
                }
            }
        }
        let mut clicked = None;
        if r.clicked()
            && let Some(p) = pointer
        {
            // The 24 posters nearest the click; the nearest, if it is under the pointer,
            // is selected and marked.
            let mut near: Vec<(f64, usize)> = members
                .iter()
                .map(|(i, c)| {
                    let dx = (c[0] - p[0]) / per[0].abs().max(1e-12);
                    let dy = (c[1] - p[1]) / per[1].abs().max(1e-12);
                    (dx * dx + dy * dy, *i)
                })
                .collect();
            near.sort_by(|a, b| a.0.total_cmp(&b.0));
            if let Some(&(d2, i)) = near.first()
                && d2 <= 10.0 * 10.0
            {
                clicked = Some(i);
            }
            self.map_pick = near.into_iter().take(24).map(|(_, i)| i).collect();
        }
        if !self.map_pick.is_empty() {
            ui.label("Posters near the point clicked:");
            egui::ScrollArea::horizontal()
                .id_salt("map-pick")
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        for &i in &self.map_pick {
                            let r = &explorer.rows[i];
                            let (rect, resp) = ui
                                .allocate_exact_size(egui::vec2(64.0, 96.0), egui::Sense::click());
                            let file = super::thumbs::row_file(data_dir, r);
                            cell_ui(ui, thumbs, r, file.as_deref(), rect);
                            let label = format!("{} ({})", r.title, r.year.unwrap_or(0));
                            if resp.on_hover_text(label).clicked() {
                                clicked = Some(i);
                            }
                        }
                    });
                });
        }
        clicked
    }

    /// The details panel; returns a poster picked from "More like this".
    fn details_ui(
        &mut self,
        ui: &mut egui::Ui,
        explorer: &Explorer,
        scheme: &EraScheme,
        data_dir: &DataDir,
        thumbs: &mut Thumbnails,
    ) -> Option<usize> {
        let i = self.selected?;
        let r = &explorer.rows[i];
        ui.horizontal(|ui| {
            ui.heading(&r.title);
            if ui.button("Close").clicked() {
                self.selected = None;
                self.detail = None;
            }
        });
        egui::Grid::new("details").num_columns(2).show(ui, |ui| {
            ui.label("Year");
            ui.label(r.year.map_or_else(|| "unknown".into(), |y| y.to_string()));
            ui.end_row();
            ui.label("Era");
            ui.label(
                r.year
                    .map_or_else(|| "unknown".into(), |y| scheme.era_of(y).name.clone()),
            );
            ui.end_row();
            ui.label("Genres");
            ui.label(if r.genres.is_empty() {
                "none listed"
            } else {
                r.genres.as_str()
            });
            ui.end_row();
            if let Some(p) = r.popularity {
                ui.label("Popularity");
                ui.label(format!("{p:.1}"));
                ui.end_row();
            }
            if let Some(id) = r.tmdb_id {
                ui.label("TMDB");
                let url = format!("{}/movie/{id}", self.site_url.trim_end_matches('/'));
                ui.hyperlink_to(format!("movie {id} on TMDB"), url);
                ui.end_row();
            }
            ui.label("Poster");
            ui.label(match r.status {
                Some(PosterStatus::Ok) => "ok".to_owned(),
                Some(PosterStatus::Failed) => {
                    format!(
                        "failed: {}",
                        r.reason.as_deref().unwrap_or("no reason recorded")
                    )
                }
                Some(PosterStatus::Pending) => "not downloaded yet".to_owned(),
                None => "none".to_owned(),
            });
            ui.end_row();
            if let Some(f) = &r.poster_file {
                ui.label("File");
                ui.label(data_dir.poster_path(f).display().to_string());
                ui.end_row();
            }
        });
        if let Some(f) = &r.poster_file
            && r.status == Some(PosterStatus::Ok)
            && ui
                .button("Open in Classify")
                .on_hover_text("Saliency methods, every era's probability and the decade chart")
                .clicked()
        {
            self.commands
                .send(AppCommand::OpenInClassify(data_dir.poster_path(f)));
        }
        ui.separator();
        match &self.detail {
            None => {}
            Some((_, DetailState::Loading)) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Asking the model…");
                });
            }
            Some((_, DetailState::Failed(e))) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("Model: {e}"));
            }
            Some((
                _,
                DetailState::Ready {
                    prediction,
                    poster,
                    overlay,
                },
            )) => {
                let (era, p) = &prediction.eras[prediction.best_era];
                ui.strong(format!("Model: {era} ({:.0}%)", 100.0 * p));
                ui.label(format!(
                    "Estimated year {:.0} (80% interval {:.0}–{:.0})",
                    prediction.year, prediction.interval.0, prediction.interval.1
                ));
                if let Some(two) = &prediction.two_readings {
                    ui.horizontal_wrapped(|ui| {
                        ui.colored_label(ui.visuals().warn_fg_color, "Two readings:");
                        ui.label(two.sentence());
                    });
                }
                if let Some(y) = r.year {
                    ui.label(format!(
                        "Off by {}",
                        explore::years_apart(prediction.year, y)
                    ));
                }
                ui.label("Poster and Grad-CAM (what drove the prediction):");
                let w = (ui.available_width() / 2.0 - 4.0).max(60.0);
                let size = poster.size_vec2() * (w / poster.size_vec2().x);
                ui.horizontal(|ui| {
                    ui.image((poster.id(), size));
                    ui.image((overlay.id(), size));
                });
            }
        }
        self.more_like_this_ui(ui, explorer, r.id, thumbs, data_dir)
    }

    /// "More like this": the catalog's posters nearest to this one in the model's feature
    /// space (cosine similarity), once the model has seen the catalog.
    fn more_like_this_ui(
        &mut self,
        ui: &mut egui::Ui,
        explorer: &Explorer,
        movie_id: i64,
        thumbs: &mut Thumbnails,
        data_dir: &DataDir,
    ) -> Option<usize> {
        ui.separator();
        ui.strong("More like this");
        let Some(result) = self.analysis.as_ref().and_then(|a| a.result.clone()) else {
            if ui.button("Find similar posters").clicked() {
                self.start_pass(explorer, data_dir, ui.ctx());
            }
            return None;
        };
        let similar = result.more_like(movie_id, 8);
        if similar.is_empty() {
            ui.label("The model has not seen this poster.");
            return None;
        }
        let w = ((ui.available_width() - 12.0) / 4.0).clamp(40.0, 120.0);
        let mut picked = None;
        ui.horizontal_wrapped(|ui| {
            for (id, sim) in similar {
                let Some(row) = explorer.rows.iter().position(|r| r.id == id) else {
                    continue;
                };
                let r = &explorer.rows[row];
                let (rect, resp) =
                    ui.allocate_exact_size(egui::vec2(w, w * 1.5), egui::Sense::click());
                let label = format!("Similar: {}", r.title);
                resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
                let file = super::thumbs::row_file(data_dir, r);
                cell_ui(ui, thumbs, r, file.as_deref(), rect);
                let resp = resp.on_hover_text(format!(
                    "{} ({}) — similarity {sim:.2}",
                    r.title,
                    r.year
                        .map_or_else(|| "year unknown".into(), |y| y.to_string())
                ));
                if resp.clicked() {
                    picked = Some(row);
                }
            }
        });
        picked
    }
}

/// Says why posters cannot be shown when their files are gone: the catalog keeps no copy
/// of a poster that fits the thumbnail box, so such a poster is shown from its file.
fn missing_files_ui(ui: &mut egui::Ui, thumbs: &Thumbnails) {
    if let Some(e) = thumbs.loader_error() {
        ui.colored_label(
            ui.visuals().error_fg_color,
            format!("Thumbnails cannot be loaded: {e}"),
        );
    }
    let (n, first) = thumbs.missing_files();
    let Some(first) = first else { return };
    let folder = first
        .parent()
        .map_or_else(|| first.display().to_string(), |d| d.display().to_string());
    ui.colored_label(
        ui.visuals().warn_fg_color,
        format!(
            "{n} of the posters loaded so far cannot be shown: {} file{} missing from {folder} \
             (moved or deleted?). The catalog keeps no copy of posters of thumbnail size: put \
             the files back, or import or harvest them again.",
            if n == 1 { "its" } else { "their" },
            if n == 1 { " is" } else { "s are" },
        ),
    )
    .on_hover_text(format!("First missing file: {}", first.display()));
}

/// One grid cell: the thumbnail, or a placeholder while it loads, or the reason a poster
/// is missing.
fn cell_ui(
    ui: &egui::Ui,
    thumbs: &mut Thumbnails,
    r: &crate::catalog::MovieRow,
    file: Option<&str>,
    rect: egui::Rect,
) {
    let painter = ui.painter();
    let bg = ui.visuals().extreme_bg_color;
    match (r.status, r.poster_id) {
        (Some(PosterStatus::Ok), Some(pid)) => match thumbs.get(pid, file) {
            Some(tex) => {
                painter.image(
                    tex,
                    rect,
                    egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                    egui::Color32::WHITE,
                );
            }
            None => super::thumbs::paint_placeholder(ui, thumbs, pid, rect),
        },
        (status, _) => {
            painter.rect_filled(rect, 2.0, bg);
            let text = match status {
                Some(PosterStatus::Failed) => "failed",
                Some(PosterStatus::Pending) => "pending",
                _ => "no poster",
            };
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                format!(
                    "{text}\n{}",
                    r.year.map_or(String::new(), |y| y.to_string())
                ),
                egui::FontId::proportional(10.0),
                ui.visuals().weak_text_color(),
            );
        }
    }
}

/// Badges on a grid tile: the release year (bottom left) and, once predicted, the
/// model's decade and its error in years (bottom right, tinted by how far off it is).
/// `predicted`: the estimated year and its badge text ([`explore::prediction_badge`]).
fn badges_ui(
    ui: &egui::Ui,
    rect: egui::Rect,
    year: Option<i32>,
    predicted: Option<&(f32, (String, Option<String>))>,
) {
    let painter = ui.painter_at(rect);
    let font = egui::FontId::proportional(if rect.width() >= 90.0 { 11.0 } else { 9.0 });
    let pad = egui::vec2(3.0, 1.0);
    let badge = |text: String, anchor: egui::Align2, at: egui::Pos2, fill: egui::Color32| {
        let galley = painter.layout_no_wrap(text, font.clone(), egui::Color32::WHITE);
        let size = galley.size() + 2.0 * pad;
        let r = anchor.anchor_size(at, size);
        painter.rect_filled(r, 3.0, fill);
        painter.galley(r.min + pad, galley, egui::Color32::WHITE);
    };
    let inset = rect.shrink(3.0);
    if let Some(y) = year {
        badge(
            y.to_string(),
            egui::Align2::LEFT_BOTTOM,
            inset.left_bottom(),
            egui::Color32::from_black_alpha(190),
        );
    }
    // Small tiles keep only the year.
    if let Some((p, (decade, off))) = predicted
        && rect.width() >= 70.0
    {
        let err = year.map_or(0.0, |y| (p - y as f32).abs());
        let fill = if year.is_none() {
            egui::Color32::from_black_alpha(190)
        } else if err < 5.0 {
            egui::Color32::from_rgba_unmultiplied(0, 110, 60, 220)
        } else if err < 15.0 {
            egui::Color32::from_rgba_unmultiplied(150, 100, 0, 220)
        } else {
            egui::Color32::from_rgba_unmultiplied(170, 30, 30, 220)
        };
        let text = match off {
            Some(o) if rect.width() >= 110.0 => format!("{decade} {o}"),
            _ => decade.clone(),
        };
        badge(text, egui::Align2::RIGHT_BOTTOM, inset.right_bottom(), fill);
    }
}

/// The map's colour key: release years on the sequential scale, with decade labels.
fn year_scale_ui(ui: &mut egui::Ui, first: i32, last: i32, width: f32) {
    let w = width.clamp(120.0, 600.0);
    let (rect, _) = ui.allocate_exact_size(egui::vec2(w, 26.0), egui::Sense::hover());
    let bar = egui::Rect::from_min_size(rect.min, egui::vec2(w, 10.0));
    let painter = ui.painter();
    let steps = 64;
    for k in 0..steps {
        let t0 = k as f32 / steps as f32;
        let [r, g, b] = explore::sequential_colour(t0 + 0.5 / steps as f32);
        let x0 = bar.left() + t0 * w;
        painter.rect_filled(
            egui::Rect::from_min_max(
                egui::pos2(x0, bar.top()),
                egui::pos2(x0 + w / steps as f32 + 0.5, bar.bottom()),
            ),
            0.0,
            egui::Color32::from_rgb(r, g, b),
        );
    }
    let span = (last - first).max(1) as f32;
    let step = if last - first > 60 { 20 } else { 10 };
    let mut y = (first + step - 1).div_euclid(step) * step;
    while y <= last {
        let x = bar.left() + (y - first) as f32 / span * w;
        painter.text(
            egui::pos2(x, bar.bottom() + 1.0),
            egui::Align2::CENTER_TOP,
            y.to_string(),
            egui::FontId::proportional(10.0),
            ui.visuals().text_color(),
        );
        y += step;
    }
}

/// |predicted − actual| per movie with a year and a prediction.
fn errors_of(explorer: &Explorer, a: &CatalogAnalysis) -> HashMap<i64, f32> {
    explorer
        .rows
        .iter()
        .filter_map(|r| {
            let k = *a.index.get(&r.id)?;
            Some((r.id, (a.years[k] - r.year? as f32).abs()))
        })
        .collect()
}

/// The second reading's share per movie id ([`readings::second_reading_share`]).
fn second_readings_of(a: &CatalogAnalysis) -> HashMap<i64, f32> {
    a.movie_ids
        .iter()
        .zip(&a.probs)
        .map(|(&id, probs)| {
            let decades = a.bins.decade_probs(probs);
            (id, readings::second_reading_share(&decades) as f32)
        })
        .collect()
}

/// The filter bar.
fn filters_ui(ui: &mut egui::Ui, explorer: &Explorer, scheme: &EraScheme, s: &mut GallerySettings) {
    ui.horizontal_wrapped(|ui| {
        ui.selectable_value(&mut s.map, false, "Grid");
        ui.selectable_value(&mut s.map, true, "Map");
        ui.checkbox(&mut s.predictions, "Model's guesses")
            .on_hover_text(
                "Runs the model over the catalog once and shows its decade on each tile",
            );
        ui.separator();
        let label = ui.label("Era");
        egui::ComboBox::from_id_salt("gallery-era")
            .selected_text(s.filter.era.as_deref().unwrap_or("All"))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut s.filter.era, None, "All");
                for e in &scheme.eras {
                    ui.selectable_value(&mut s.filter.era, Some(e.name.clone()), &e.name);
                }
            })
            .response
            .labelled_by(label.id);
        let decades: Vec<i32> = explorer.year_range.map_or_else(Vec::new, |(a, b)| {
            (a.div_euclid(10)..=b.div_euclid(10))
                .map(|d| d * 10)
                .collect()
        });
        let label = ui.label("Decade");
        egui::ComboBox::from_id_salt("gallery-decade")
            .selected_text(
                s.filter
                    .decade
                    .map_or_else(|| "All".into(), |d| format!("{d}s")),
            )
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut s.filter.decade, None, "All");
                for d in decades {
                    ui.selectable_value(&mut s.filter.decade, Some(d), format!("{d}s"));
                }
            })
            .response
            .labelled_by(label.id);
        let mut use_years = s.filter.years.is_some();
        ui.checkbox(&mut use_years, "Years");
        if use_years {
            let (lo, hi) = explorer.year_range.unwrap_or((1900, 2030));
            let (mut a, mut b) = s.filter.years.unwrap_or((lo, hi));
            ui.add(egui::DragValue::new(&mut a).range(1870..=2100));
            ui.label("to");
            ui.add(egui::DragValue::new(&mut b).range(1870..=2100));
            s.filter.years = Some((a.min(b), a.max(b)));
        } else {
            s.filter.years = None;
        }
        let label = ui.label("Genre");
        egui::ComboBox::from_id_salt("gallery-genre")
            .selected_text(s.filter.genre.as_deref().unwrap_or("All"))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut s.filter.genre, None, "All");
                for g in &explorer.genres {
                    ui.selectable_value(&mut s.filter.genre, Some(g.clone()), g);
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();
        ui.add(
            egui::TextEdit::singleline(&mut s.filter.title)
                .hint_text("Search titles")
                .desired_width(160.0),
        );
        let label = ui.label("Poster");
        egui::ComboBox::from_id_salt("gallery-status")
            .selected_text(match s.filter.status {
                None => "Any",
                Some(PosterStatus::Ok) => "Ok",
                Some(PosterStatus::Failed) => "Failed",
                Some(PosterStatus::Pending) => "Pending",
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut s.filter.status, None, "Any");
                ui.selectable_value(&mut s.filter.status, Some(PosterStatus::Ok), "Ok");
                ui.selectable_value(&mut s.filter.status, Some(PosterStatus::Failed), "Failed");
                ui.selectable_value(&mut s.filter.status, Some(PosterStatus::Pending), "Pending");
            })
            .response
            .labelled_by(label.id);
        ui.separator();
        let label = ui.label("Sort");
        egui::ComboBox::from_id_salt("gallery-sort")
            .selected_text(s.sort.label())
            .show_ui(ui, |ui| {
                for k in SortKey::ALL {
                    ui.selectable_value(&mut s.sort, k, k.label());
                }
            })
            .response
            .labelled_by(label.id);
        ui.checkbox(&mut s.descending, "Descending");
        ui.add(egui::Slider::new(&mut s.thumb_width, 48.0..=200.0).text("Size"));
        if ui.button("Reset filters").clicked() {
            s.filter = Filter::default();
        }
    });
}

/// The cache key of a pass's map layout: its model and posters.
fn layout_key(pass: &CatalogAnalysis) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(pass.model.as_bytes());
    for id in &pass.movie_ids {
        h.update(id.to_le_bytes());
    }
    h.update(explore::layout::TSNE_EPOCHS.to_le_bytes());
    let d = h.finalize();
    d.iter().take(12).map(|b| format!("{b:02x}")).collect()
}
