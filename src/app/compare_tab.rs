//! The Compare tab: columns side by side for chosen eras (of any scheme, decades
//! included), in chronological order, each a reproducible sample of that era's posters
//! with its average poster (pixel mean over all of the era's posters) and palette, large
//! enough to read; plots of poster statistics over the years with decade ticks, the
//! number of posters behind each year (sparse years are drawn as dots, not joined into a
//! trend), and the posters of the year under the pointer; a hue histogram per chosen era;
//! and a PNG contact sheet of the comparison. Each column has its own colour, distinct
//! from the others and from the grey of the years no column covers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};

use eframe::egui;
use egui_plot::{
    Bar, BarChart, GridInput, GridMark, Legend, Line, Plot, PlotPoints, Points, VLine,
};
use image::RgbImage;

use super::analysis::CatalogAnalysis;
use super::thumbs::Thumbnails;
use super::{AppCommand, CommandSender};
use crate::catalog::Catalog;
use crate::catalog::PosterStatus;
use crate::eras::EraScheme;
use crate::explore::walls::{
    self, Agreement, ModelAnswer, WallColumn, WallFilter, WallLayout, WallRequest, WallSort,
    WallStyle,
};
use crate::explore::{self, Explorer, YearStats, era_looks};
use crate::imaging::HUE_BINS;
use crate::jobs::JobHandle;
use crate::paths::DataDir;

/// Compare settings remembered between runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CompareSettings {
    /// Era index of each column, per scheme name.
    pub columns: HashMap<String, Vec<usize>>,
    /// Posters sampled per column (unless `all_posters`).
    pub per_column: usize,
    /// Every poster of each era instead of a sample.
    pub all_posters: bool,
    /// Sampling seed (also of the random order).
    pub seed: u64,
    /// Walls or statistics.
    pub view: CompareView,
    /// Eras side by side or one under another.
    pub layout: WallLayout,
    /// Poster width on the walls, in points.
    pub tile: f32,
    /// Order within a wall.
    pub sort: WallSort,
    /// The filter every column shares.
    pub filter: WallFilter,
    /// One scroll bar for all columns (else one each).
    pub scroll_together: bool,
}

impl Default for CompareSettings {
    fn default() -> Self {
        Self {
            columns: HashMap::new(),
            per_column: 60,
            all_posters: false,
            seed: 1,
            view: CompareView::Walls,
            layout: WallLayout::Columns,
            tile: 80.0,
            sort: WallSort::Year,
            filter: WallFilter::default(),
            scroll_together: true,
        }
    }
}

/// What the Compare tab shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum CompareView {
    /// Poster walls per era.
    #[default]
    Walls,
    /// Poster statistics over the years and hue mix per era.
    Statistics,
}

/// Smallest and largest wall tile width.
const TILE_RANGE: std::ops::RangeInclusive<f32> = 40.0..=240.0;
/// Space between wall tiles.
const TILE_GAP: f32 = 4.0;

/// Default columns: three eras spread over the scheme (e.g. 1950s, 1980s, 2010s).
fn default_columns(scheme: &EraScheme) -> Vec<usize> {
    let n = scheme.eras.len();
    let pick = |year: i32| scheme.era_index(year);
    let mut cols = vec![pick(1952), pick(1985), pick(2015)];
    cols.dedup();
    cols.retain(|&c| c < n);
    if cols.is_empty() && n > 0 {
        cols.push(0);
    }
    cols
}

/// Most columns side by side.
const MAX_COLUMNS: usize = 6;

/// Years with fewer posters than this are drawn as dots, not joined into the trend line.
const SPARSE_YEAR: usize = 5;

/// Grid marks on a year axis: every decade, with every half-century drawn heavier (and
/// single years once zoomed far in).
#[allow(clippy::needless_pass_by_value)] // the signature egui_plot's grid spacers have
pub fn decade_marks(input: GridInput) -> Vec<GridMark> {
    let (lo, hi) = input.bounds;
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || hi - lo > 10_000.0 {
        return Vec::new();
    }
    let mut marks = Vec::new();
    let fine = input.base_step_size <= 1.0 && hi - lo <= 30.0;
    let step = if fine { 1 } else { 10 };
    let first = (lo / f64::from(step)).ceil() as i64 * i64::from(step);
    let mut y = first;
    while (y as f64) <= hi {
        let step_size = if y % 50 == 0 {
            50.0
        } else if y % 10 == 0 {
            10.0
        } else {
            1.0
        };
        marks.push(GridMark {
            value: y as f64,
            step_size,
        });
        y += i64::from(step);
    }
    marks
}

/// The average poster and palette of one era.
struct EraLook {
    average: RgbImage,
    texture: Option<egui::TextureHandle>,
    palette: Vec<([u8; 3], f32)>,
    count: u64,
}

type LookKey = (String, usize);

use crate::explore::era_looks::{PosterSource, SheetSource};

/// A statistic plotted over the years.
#[derive(Clone, Copy)]
struct Stat {
    name: &'static str,
    get: fn(&YearStats) -> f32,
}

const STATS: [Stat; 7] = [
    Stat {
        name: "Brightness",
        get: |s| s.brightness,
    },
    Stat {
        name: "Dark-pixel share",
        get: |s| s.dark_share,
    },
    Stat {
        name: "Saturation",
        get: |s| s.saturation,
    },
    Stat {
        name: "Colourfulness",
        get: |s| s.colourfulness,
    },
    Stat {
        name: "Near-greyscale share",
        get: |s| s.grey_share,
    },
    Stat {
        name: "Warm-hue share",
        get: |s| s.warm_share,
    },
    Stat {
        name: "Cool-hue share",
        get: |s| s.cool_share,
    },
];

/// State of the Compare tab.
pub struct CompareTab {
    requests: Option<Sender<(LookKey, Vec<PosterSource>)>>,
    looks_job: Option<JobHandle<(), (LookKey, Option<era_looks::EraLook>)>>,
    /// Why the averages cannot be computed (the catalog does not open, the worker died).
    looks_error: Option<String>,
    /// Computed (`Some`) or asked for (`None`) averages.
    looks: HashMap<LookKey, Option<EraLook>>,
    /// Eras whose average came back empty.
    empty_looks: std::collections::HashSet<LookKey>,
    year_stats: Option<(usize, Vec<YearStats>)>,
    hovered_year: Option<i32>,
    export_job: Option<JobHandle<String>>,
    export_status: Option<String>,
    /// The walls, and what they were computed for.
    samples: Option<(WallKey, Arc<Vec<WallColumn>>)>,
    /// The average poster shown enlarged (scheme, era).
    enlarged: Option<LookKey>,
    /// Where "run the model" goes.
    commands: CommandSender,
}

/// What the walls depend on: the catalog read and the model pass (by identity), the
/// scheme and the request.
type WallKey = (usize, usize, String, WallRequest);

impl Default for CompareTab {
    fn default() -> Self {
        Self::new()
    }
}

impl CompareTab {
    /// An empty tab.
    pub fn new() -> Self {
        Self {
            requests: None,
            looks_job: None,
            looks_error: None,
            looks: HashMap::new(),
            empty_looks: Default::default(),
            year_stats: None,
            hovered_year: None,
            export_job: None,
            export_status: None,
            samples: None,
            enlarged: None,
            commands: CommandSender::default(),
        }
    }

    /// Sends app commands ("run the model over the catalog") to `commands`.
    #[must_use]
    pub fn with_commands(mut self, commands: CommandSender) -> Self {
        self.commands = commands;
        self
    }

    /// Starts the worker computing average posters and palettes (once).
    fn ensure_worker(&mut self, data_dir: &DataDir, ctx: &egui::Context) {
        if self.requests.is_some() {
            return;
        }
        let (req_tx, req_rx) = mpsc::channel::<(LookKey, Vec<PosterSource>)>();
        let path = data_dir.catalog_path();
        let job = JobHandle::spawn(
            "averaging worker",
            super::job_waker(ctx),
            move |control, out| {
                let catalog = Catalog::open(&path).map_err(|e| e.to_string())?;
                for (key, posters) in req_rx {
                    if control.is_cancelled() {
                        break;
                    }
                    out.report((key, era_looks::era_look(&catalog, &posters)));
                }
                Ok(())
            },
        );
        match job {
            Ok(job) => self.looks_job = Some(job),
            Err(e) => self.looks_error = Some(e.to_string()),
        }
        self.requests = Some(req_tx);
    }

    /// Takes in finished averages and the export's message.
    fn poll(&mut self) {
        if let Some(job) = &mut self.looks_job {
            let polled = job.poll();
            for (key, look) in polled.progress {
                match look {
                    Some(l) => {
                        self.looks.insert(
                            key,
                            Some(EraLook {
                                average: l.average,
                                texture: None,
                                palette: l.palette,
                                count: l.count,
                            }),
                        );
                    }
                    None => {
                        self.empty_looks.insert(key.clone());
                        self.looks.insert(key, None);
                    }
                }
            }
            // The worker only ends when the tab is dropped: an end now is a failure.
            if let Some(end) = polled.done {
                self.looks_job = None;
                self.looks_error = Some(match end {
                    Err(e) => format!("Average posters unavailable: {e}"),
                    Ok(()) => "Average posters unavailable: the worker stopped".into(),
                });
            }
        }
        if let Some(job) = &mut self.export_job
            && let Some(done) = job.poll().done
        {
            self.export_status = Some(done.unwrap_or_else(|e| e.to_string()));
            self.export_job = None;
        }
    }

    /// Forgets computed averages (after the catalog changed).
    pub fn invalidate(&mut self) {
        self.looks.clear();
        self.empty_looks.clear();
        self.year_stats = None;
        self.samples = None;
    }

    /// Draws the tab.
    // The window's state it reads: catalog, scheme, data directory, thumbnails, its
    // settings and the model's pass.
    #[allow(clippy::too_many_arguments)]
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        explorer: &Arc<Explorer>,
        scheme: &EraScheme,
        data_dir: &DataDir,
        thumbs: &mut Thumbnails,
        settings: &mut CompareSettings,
        analysis: Option<&Arc<CatalogAnalysis>>,
    ) {
        self.ensure_worker(data_dir, ui.ctx());
        self.poll();
        if self
            .year_stats
            .as_ref()
            .is_none_or(|(n, _)| *n != explorer.rows.len())
        {
            self.year_stats = Some((explorer.rows.len(), explore::year_stats(&explorer.rows)));
        }
        let columns = settings
            .columns
            .entry(scheme.name.clone())
            .or_insert_with(|| default_columns(scheme));
        *columns = explore::chronological(columns, scheme.eras.len());
        let mut export = false;
        ui.horizontal_wrapped(|ui| {
            // First in the row, so it stays under the pointer as columns come and go.
            let can_add = columns.len() < MAX_COLUMNS && columns.len() < scheme.eras.len();
            if ui
                .add_enabled(can_add, egui::Button::new("Add column"))
                .on_hover_text("Adds the next era not shown")
                .on_disabled_hover_text("Every era is shown, or six columns already")
                .clicked()
            {
                *columns = explore::add_column(columns, scheme.eras.len());
            }
            let label = ui.label("Columns:");
            let mut remove = None;
            for (k, col) in columns.iter_mut().enumerate() {
                egui::ComboBox::from_id_salt(("compare-col", k))
                    .selected_text(scheme.eras.get(*col).map_or("?", |e| e.name.as_str()))
                    .show_ui(ui, |ui| {
                        for (i, e) in scheme.eras.iter().enumerate() {
                            ui.selectable_value(col, i, &e.name);
                        }
                    })
                    .response
                    .labelled_by(label.id);
                if ui
                    .small_button("x")
                    .on_hover_text("Remove this column")
                    .clicked()
                {
                    remove = Some(k);
                }
            }
            if let Some(k) = remove {
                columns.remove(k);
            }
            // A column switched to another era moves to its place in time.
            *columns = explore::chronological(columns, scheme.eras.len());
            ui.separator();
            ui.selectable_value(&mut settings.view, CompareView::Walls, "Walls");
            ui.selectable_value(&mut settings.view, CompareView::Statistics, "Statistics");
        });
        let mut export_wall = false;
        if settings.view == CompareView::Walls {
            ui.horizontal_wrapped(|ui| {
                ui.selectable_value(&mut settings.layout, WallLayout::Columns, "Columns")
                    .on_hover_text("Eras side by side");
                ui.selectable_value(&mut settings.layout, WallLayout::Rows, "Rows")
                    .on_hover_text("Eras one under another, scrolled sideways (a timeline)");
                ui.separator();
                let l = ui.label("Tile size");
                ui.add(egui::Slider::new(&mut settings.tile, TILE_RANGE).show_value(false))
                    .labelled_by(l.id);
                ui.separator();
                ui.checkbox(&mut settings.all_posters, "All posters");
                if !settings.all_posters {
                    let l = ui.label("Posters per era");
                    ui.add(egui::DragValue::new(&mut settings.per_column).range(1..=5000))
                        .labelled_by(l.id);
                }
                let l = ui.label("Sort by");
                egui::ComboBox::from_id_salt("wall-sort")
                    .selected_text(settings.sort.label())
                    .show_ui(ui, |ui| {
                        for s in WallSort::ALL {
                            ui.selectable_value(&mut settings.sort, s, s.label());
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.add(egui::DragValue::new(&mut settings.seed).prefix("seed "));
                if settings.layout == WallLayout::Columns {
                    ui.checkbox(&mut settings.scroll_together, "Scroll together");
                }
                ui.separator();
                if ui.button("Export wall…").clicked() {
                    export_wall = true;
                }
                if ui.button("Export contact sheet…").clicked() {
                    export = true;
                }
            });
            filter_bar(ui, explorer, &mut settings.filter);
        }
        if let Some(s) = &self.export_status {
            ui.small(s.as_str());
        }
        if let Some(e) = &self.looks_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        let columns = columns.clone();
        let request = WallRequest {
            eras: columns.clone(),
            per_era: (!settings.all_posters).then_some(settings.per_column.max(1)),
            sort: settings.sort,
            seed: settings.seed,
            filter: settings.filter.clone(),
        };
        let needs_model =
            settings.sort == WallSort::Confidence || settings.filter.agreement != Agreement::Any;
        if needs_model && analysis.is_none() && settings.view == CompareView::Walls {
            ui.horizontal(|ui| {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    "This sort or filter needs the model's view of every poster.",
                );
                if ui.button("Run the model over the catalog").clicked() {
                    self.commands.send(AppCommand::RunModelPass);
                }
            });
        }
        // The walls are computed when what they depend on changes, not per frame.
        let key: WallKey = (
            Arc::as_ptr(explorer) as usize,
            analysis.map_or(0, |a| Arc::as_ptr(a) as usize),
            scheme.name.clone(),
            request.clone(),
        );
        if self.samples.as_ref().is_none_or(|(k, _)| *k != key) {
            let answers = if needs_model {
                analysis
                    .map(|a| model_answers(a, scheme))
                    .unwrap_or_default()
            } else {
                HashMap::new()
            };
            let lookup = |id: i64| answers.get(&id).copied();
            let walls = walls::wall_columns(explorer, scheme, &request, Some(&lookup));
            self.samples = Some((key, Arc::new(walls)));
        }
        let Some((_, samples)) = &self.samples else {
            return;
        };
        let samples = Arc::clone(samples);
        // Ask for the averages not computed yet.
        for era in samples.iter().map(|c| &c.era) {
            let key = (scheme.name.clone(), *era);
            if !self.looks.contains_key(&key)
                && let Some(tx) = &self.requests
            {
                let ids: Vec<PosterSource> = explorer
                    .era_members(scheme, *era)
                    .into_iter()
                    .filter_map(|i| {
                        let r = &explorer.rows[i];
                        Some((
                            r.poster_id?,
                            r.poster_file.as_deref().map(|f| data_dir.poster_path(f)),
                        ))
                    })
                    .collect();
                if tx.send((key.clone(), ids)).is_ok() {
                    self.looks.insert(key, None);
                }
            }
        }
        if export {
            self.export(ui.ctx(), data_dir, explorer, scheme, &samples);
        }
        if export_wall {
            self.export_wall(ui.ctx(), data_dir, explorer, scheme, &samples, settings);
        }
        ui.separator();
        match settings.view {
            CompareView::Statistics => {
                egui::ScrollArea::vertical()
                    .id_salt("compare")
                    .auto_shrink([false, false])
                    .show(ui, |ui| {
                        self.plots_ui(ui, explorer, scheme, data_dir, thumbs, &columns);
                    });
            }
            CompareView::Walls => {
                let view = WallView {
                    explorer,
                    scheme,
                    data_dir,
                    tile: settings.tile.clamp(*TILE_RANGE.start(), *TILE_RANGE.end()),
                };
                match settings.layout {
                    WallLayout::Columns => {
                        self.columns_ui(ui, &view, thumbs, &samples, settings.scroll_together);
                    }
                    WallLayout::Rows => self.rows_ui(ui, &view, thumbs, &samples),
                }
                self.enlarged_ui(ui.ctx(), scheme);
            }
        }
    }

    /// Eras side by side: compact headers, then the walls, scrolled together or each on
    /// its own; only the tiles in view are drawn.
    fn columns_ui(
        &mut self,
        ui: &mut egui::Ui,
        view: &WallView<'_>,
        thumbs: &mut Thumbnails,
        samples: &[WallColumn],
        together: bool,
    ) {
        let k = samples.len().max(1);
        let spacing = ui.spacing().item_spacing.x;
        let col_w = ((ui.available_width() - spacing * (k - 1) as f32) / k as f32).max(view.tile);
        ui.columns(k, |cols| {
            for (slot, (ui, column)) in cols.iter_mut().zip(samples).enumerate() {
                self.header_ui(ui, view, slot, column);
            }
        });
        let per_row = view.per_row(col_w);
        // Tiles widen to fill the column's width.
        let view = &WallView {
            tile: ((col_w + TILE_GAP) / per_row as f32 - TILE_GAP).max(view.tile),
            ..*view
        };
        let cell_h = view.tile * 1.5 + TILE_GAP;
        if together {
            let rows = samples
                .iter()
                .map(|c| c.rows.len().div_ceil(per_row))
                .max()
                .unwrap_or(0);
            egui::ScrollArea::vertical()
                .id_salt("compare-walls")
                .auto_shrink([false, false])
                .show_viewport(ui, |ui, viewport| {
                    let (rect, _) = ui.allocate_exact_size(
                        egui::vec2(ui.available_width(), rows as f32 * cell_h),
                        egui::Sense::hover(),
                    );
                    for (slot, column) in samples.iter().enumerate() {
                        let origin = rect.min + egui::vec2(slot as f32 * (col_w + spacing), 0.0);
                        view.grid_ui(
                            ui,
                            thumbs,
                            slot,
                            column,
                            origin,
                            per_row,
                            viewport.y_range(),
                        );
                    }
                });
        } else {
            ui.columns(k, |cols| {
                for (slot, (ui, column)) in cols.iter_mut().zip(samples).enumerate() {
                    let rows = column.rows.len().div_ceil(per_row);
                    egui::ScrollArea::vertical()
                        .id_salt(("compare-wall", slot))
                        .auto_shrink([false, false])
                        .show_viewport(ui, |ui, viewport| {
                            let (rect, _) = ui.allocate_exact_size(
                                egui::vec2(ui.available_width(), rows as f32 * cell_h),
                                egui::Sense::hover(),
                            );
                            view.grid_ui(
                                ui,
                                thumbs,
                                slot,
                                column,
                                rect.min,
                                per_row,
                                viewport.y_range(),
                            );
                        });
                }
            });
        }
    }

    /// Eras one under another, each a row of posters scrolled sideways (a timeline).
    fn rows_ui(
        &mut self,
        ui: &mut egui::Ui,
        view: &WallView<'_>,
        thumbs: &mut Thumbnails,
        samples: &[WallColumn],
    ) {
        let step = view.tile + TILE_GAP;
        egui::ScrollArea::vertical()
            .id_salt("compare-rows")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for (slot, column) in samples.iter().enumerate() {
                    self.header_ui(ui, view, slot, column);
                    egui::ScrollArea::horizontal()
                        .id_salt(("compare-row", slot))
                        .auto_shrink([false, true])
                        .show_viewport(ui, |ui, viewport| {
                            let n = column.rows.len();
                            let (rect, _) = ui.allocate_exact_size(
                                egui::vec2(n as f32 * step, view.tile * 1.5),
                                egui::Sense::hover(),
                            );
                            let first = (viewport.min.x / step).floor().max(0.0) as usize;
                            let last = ((viewport.max.x / step).ceil() as usize + 1).min(n);
                            for idx in first..last {
                                let min = rect.min + egui::vec2(idx as f32 * step, 0.0);
                                view.tile_ui(ui, thumbs, (slot, idx), column.rows[idx], min);
                            }
                        });
                    ui.add_space(6.0);
                }
            });
    }

    /// A column's compact header: era and years in its colour, counts, the average
    /// poster at tile size (click to enlarge) and the palette as a thin strip.
    fn header_ui(
        &mut self,
        ui: &mut egui::Ui,
        view: &WallView<'_>,
        slot: usize,
        column: &WallColumn,
    ) {
        let Some(e) = view.scheme.eras.get(column.era) else {
            return;
        };
        let [r, g, b] = explore::column_colour(slot);
        ui.horizontal_wrapped(|ui| {
            ui.colored_label(
                egui::Color32::from_rgb(r, g, b),
                egui::RichText::new(format!("{} ({})", e.name, e.range_label())).strong(),
            );
            ui.label(format!("{} posters", column.matching));
            if column.rows.len() < column.matching {
                ui.small(format!("showing {}", column.rows.len()));
            }
        });
        let key = (view.scheme.name.clone(), column.era);
        match self.looks.get_mut(&key) {
            Some(Some(look)) => {
                let tex = look.texture.get_or_insert_with(|| {
                    ui.ctx().load_texture(
                        format!("average-{}-{}", view.scheme.name, column.era),
                        egui::ColorImage::from_rgb(
                            [
                                look.average.width() as usize,
                                look.average.height() as usize,
                            ],
                            look.average.as_raw(),
                        ),
                        egui::TextureOptions::LINEAR,
                    )
                });
                let w = view.tile.min(ui.available_width());
                ui.horizontal(|ui| {
                    let avg = ui
                        .add(
                            egui::Image::new((tex.id(), egui::vec2(w * 0.5, w * 0.75)))
                                .sense(egui::Sense::click()),
                        )
                        .on_hover_text("The average poster: click to enlarge");
                    if avg.clicked() {
                        self.enlarged = Some(key.clone());
                    }
                    ui.vertical(|ui| {
                        ui.small(format!("Average of {} posters", look.count));
                        palette_strip(ui, &look.palette, ui.available_width().min(160.0), 10.0);
                    });
                });
            }
            Some(None) if self.empty_looks.contains(&key) => {
                ui.small("No readable posters to average");
            }
            Some(None) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.small("Averaging posters…");
                });
            }
            None => {}
        }
    }

    /// The enlarged average poster, when one was clicked.
    fn enlarged_ui(&mut self, ctx: &egui::Context, scheme: &EraScheme) {
        let Some(key) = self.enlarged.clone() else {
            return;
        };
        let Some(Some(look)) = self.looks.get(&key) else {
            self.enlarged = None;
            return;
        };
        let name = scheme.eras.get(key.1).map_or("?", |e| e.name.as_str());
        let mut open = true;
        egui::Window::new(format!("Average poster: {name}"))
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                if let Some(tex) = &look.texture {
                    ui.image((tex.id(), egui::vec2(240.0, 360.0)));
                }
                ui.small(format!("Average of {} posters", look.count));
                palette_strip(ui, &look.palette, 240.0, 28.0);
                ui.small("Palette (share of pixels)");
            });
        if !open {
            self.enlarged = None;
        }
    }

    fn plots_ui(
        &mut self,
        ui: &mut egui::Ui,
        explorer: &Explorer,
        scheme: &EraScheme,
        data_dir: &DataDir,
        thumbs: &mut Thumbnails,
        columns: &[usize],
    ) {
        let Some((_, stats)) = &self.year_stats else {
            return;
        };
        ui.heading("Poster statistics over the years");
        ui.label(format!(
            "Coloured segments are the chosen eras, grey the other years; years with fewer \
             than {SPARSE_YEAR} posters are dots, not part of the line. Hover a plot to see \
             that year's posters."
        ));
        let boundaries: Vec<i32> = scheme.eras.iter().skip(1).filter_map(|e| e.from).collect();
        // Posters of the year under the pointer (the previous frame's hover).
        if let Some(year) = self.hovered_year {
            let members = explorer.year_members(year);
            ui.label(format!("Posters from {year} ({}):", members.len()));
            let picked = explore::sample(&explorer.rows, &members, 16, 3);
            ui.horizontal_wrapped(|ui| {
                for i in picked {
                    let m = &explorer.rows[i];
                    let (rect, resp) =
                        ui.allocate_exact_size(egui::vec2(48.0, 72.0), egui::Sense::hover());
                    let file = super::thumbs::row_file(data_dir, m);
                    if let Some(pid) = m.poster_id
                        && let Some(tex) = thumbs.get(pid, file.as_deref())
                    {
                        ui.painter().image(
                            tex,
                            rect,
                            egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                            egui::Color32::WHITE,
                        );
                    }
                    resp.on_hover_text(&m.title);
                }
            });
        } else {
            // The same room, so that the plots do not move when the posters appear.
            ui.label("Posters from the year under the pointer appear here.");
            ui.add_space(72.0 + ui.spacing().item_spacing.y);
        }
        let mut hovered = None;
        let plot_w = ((ui.available_width() - 24.0) / 2.0).max(240.0);
        let grid = egui::Grid::new("stat-plots").num_columns(2).show(ui, |ui| {
            for (k, stat) in STATS.iter().enumerate() {
                // Years with enough posters make the trend; sparse ones are only dots.
                let all: Vec<[f64; 2]> = stats
                    .iter()
                    .filter(|s| s.count >= SPARSE_YEAR)
                    .map(|s| [f64::from(s.year), f64::from((stat.get)(s))])
                    .collect();
                let sparse: Vec<[f64; 2]> = stats
                    .iter()
                    .filter(|s| s.count > 0 && s.count < SPARSE_YEAR)
                    .map(|s| [f64::from(s.year), f64::from((stat.get)(s))])
                    .collect();
                let resp = ui
                    .vertical(|ui| {
                        ui.strong(stat.name);
                        Plot::new(("stat", k))
                            .height(140.0)
                            .width(plot_w)
                            .allow_drag(false)
                            .allow_zoom(false)
                            .allow_scroll(false)
                            .x_grid_spacer(decade_marks)
                            .show(ui, |plot| {
                                plot.line(
                                    Line::new(stat.name, PlotPoints::from(all.clone()))
                                        .color(egui::Color32::GRAY),
                                );
                                plot.points(
                                    Points::new(
                                        format!("years with under {SPARSE_YEAR} posters"),
                                        PlotPoints::from(sparse.clone()),
                                    )
                                    .radius(1.5)
                                    .color(egui::Color32::from_gray(110)),
                                );
                                for (slot, &era) in columns.iter().enumerate() {
                                    let pts: Vec<[f64; 2]> = all
                                        .iter()
                                        .filter(|p| scheme.era_index(p[0] as i32) == era)
                                        .copied()
                                        .collect();
                                    let [r, g, b] = explore::column_colour(slot);
                                    plot.line(
                                        Line::new(
                                            scheme.eras[era].name.clone(),
                                            PlotPoints::from(pts),
                                        )
                                        .color(egui::Color32::from_rgb(r, g, b))
                                        .width(2.5),
                                    );
                                }
                                for &b in &boundaries {
                                    plot.vline(
                                        VLine::new("", f64::from(b))
                                            .color(egui::Color32::from_gray(90))
                                            .width(0.5),
                                    );
                                }
                                plot.pointer_coordinate()
                            })
                    })
                    .inner;
                if resp.response.hovered()
                    && let Some(p) = resp.inner
                {
                    hovered = Some(p.x.round() as i32);
                }
                if k % 2 == 1 {
                    ui.end_row();
                }
            }
            // How many posters stand behind each year's figures.
            let counts: Vec<Bar> = stats
                .iter()
                .filter(|s| s.count > 0)
                .map(|s| {
                    let bar = Bar::new(f64::from(s.year), s.count as f64).width(0.9);
                    if s.count < SPARSE_YEAR {
                        bar.fill(egui::Color32::from_gray(110))
                    } else {
                        bar.fill(egui::Color32::from_gray(160))
                    }
                })
                .collect();
            let resp = ui
                .vertical(|ui| {
                    ui.strong("Posters per year");
                    Plot::new("year-counts")
                        .height(140.0)
                        .width(plot_w)
                        .allow_drag(false)
                        .allow_zoom(false)
                        .allow_scroll(false)
                        .include_y(0.0)
                        .x_grid_spacer(decade_marks)
                        .show(ui, |plot| {
                            plot.bar_chart(BarChart::new("posters", counts));
                            for (slot, &era) in columns.iter().enumerate() {
                                let [r, g, b] = explore::column_colour(slot);
                                let bars: Vec<Bar> = stats
                                    .iter()
                                    .filter(|s| s.count > 0 && scheme.era_index(s.year) == era)
                                    .map(|s| Bar::new(f64::from(s.year), s.count as f64).width(0.9))
                                    .collect();
                                plot.bar_chart(
                                    BarChart::new(scheme.eras[era].name.clone(), bars)
                                        .color(egui::Color32::from_rgb(r, g, b)),
                                );
                            }
                            plot.pointer_coordinate()
                        })
                })
                .inner;
            if resp.response.hovered()
                && let Some(p) = resp.inner
            {
                hovered = Some(p.x.round() as i32);
            }
            ui.end_row();
            // The hue histogram of each chosen era, in the grid's last cell.
            let bars: Vec<BarChart> = columns
                .iter()
                .enumerate()
                .map(|(n, &era)| {
                    let members = explorer.era_members(scheme, era);
                    let h = explore::hue_histogram(&explorer.rows, &members);
                    let width = 24.0 / (columns.len().max(1) as f64 + 1.0);
                    let [r, g, b] = explore::column_colour(n);
                    BarChart::new(
                        scheme.eras[era].name.clone(),
                        (0..HUE_BINS)
                            .map(|i| {
                                Bar::new(
                                    i as f64 * 30.0 + (n as f64 - 1.0) * width,
                                    f64::from(h[i]),
                                )
                                .width(width)
                            })
                            .collect(),
                    )
                    .color(egui::Color32::from_rgb(r, g, b))
                })
                .collect();
            ui.vertical(|ui| {
                ui.strong("Hue mix of the chosen eras");
                Plot::new("hue-hist")
                    .height(140.0)
                    .width(plot_w)
                    .legend(Legend::default())
                    .allow_drag(false)
                    .allow_zoom(false)
                    .allow_scroll(false)
                    .x_axis_label("hue (degrees, 30-degree bins from red)")
                    .show(ui, |plot| {
                        for b in bars {
                            plot.bar_chart(b);
                        }
                    });
            });
            ui.end_row();
        });
        // The strip of the hovered year's posters goes when the pointer leaves the plots
        // (drawn from this frame's hover in the next one, so ask for it). While the
        // pointer stays over the plots, a frame in which no plot reports a hover (the
        // window does have such frames) keeps the year.
        let over_plots = ui.rect_contains_pointer(grid.response.rect);
        let next = hovered.or(if over_plots { self.hovered_year } else { None });
        if self.hovered_year != next {
            self.hovered_year = next;
            ui.ctx().request_repaint();
        }
    }

    /// Builds the contact sheet and saves it, on a helper thread.
    /// "Export wall…": asks where, then reads the posters and writes the labelled PNG
    /// (what `movie-eras compare` writes) on a job.
    fn export_wall(
        &mut self,
        ctx: &egui::Context,
        data_dir: &DataDir,
        explorer: &Arc<Explorer>,
        scheme: &EraScheme,
        samples: &Arc<Vec<WallColumn>>,
        settings: &CompareSettings,
    ) {
        let names: Vec<String> = samples
            .iter()
            .map(|c| scheme.eras[c.era].name.replace(' ', "-"))
            .collect();
        let style = WallStyle {
            width: 1600,
            layout: settings.layout,
            tile: 96,
            captions: true,
        };
        let (explorer, scheme, samples, data_dir) = (
            Arc::clone(explorer),
            scheme.clone(),
            Arc::clone(samples),
            data_dir.clone(),
        );
        let job = JobHandle::spawn("wall export", super::job_waker(ctx), move |_, _| {
            let picked = super::dialogs::show(|| {
                rfd::FileDialog::new()
                    .set_title("Export wall")
                    .set_file_name(format!("wall-{}.png", names.join("-vs-")))
                    .add_filter("PNG", &["png"])
                    .save_file()
            });
            let out = match picked {
                super::dialogs::Picked::Chosen(out) => out,
                super::dialogs::Picked::Cancelled => return Ok("Export cancelled".into()),
                super::dialogs::Picked::Unavailable(why) => return Ok(why),
            };
            let catalog = Catalog::open(&data_dir.catalog_path()).map_err(|e| e.to_string())?;
            let blocks = walls::wall_blocks(&catalog, &explorer, &scheme, &samples, &data_dir);
            Ok::<_, String>(match walls::write_wall(&blocks, &style, &out) {
                Ok((w, h)) => format!("Saved {} ({w}×{h})", out.display()),
                Err(e) => format!("Could not save: {e}"),
            })
        });
        match job {
            Ok(job) => self.export_job = Some(job),
            Err(e) => self.export_status = Some(e.to_string()),
        }
    }

    fn export(
        &mut self,
        ctx: &egui::Context,
        data_dir: &DataDir,
        explorer: &Explorer,
        scheme: &EraScheme,
        samples: &[WallColumn],
    ) {
        // The contact sheet keeps its size: at most 24 posters per era.
        let columns: Vec<SheetSource> = samples
            .iter()
            .map(|c| {
                let (era, picked) = (&c.era, &c.rows[..c.rows.len().min(24)]);
                let look = self
                    .looks
                    .get(&(scheme.name.clone(), *era))
                    .and_then(Option::as_ref);
                (
                    *era,
                    look.map(|l| l.average.clone()),
                    look.map(|l| l.palette.clone()).unwrap_or_default(),
                    picked
                        .iter()
                        .filter_map(|&i| {
                            let r = &explorer.rows[i];
                            Some((
                                r.poster_id?,
                                r.poster_file.as_deref().map(|f| data_dir.poster_path(f)),
                            ))
                        })
                        .collect(),
                )
            })
            .collect();
        let names: Vec<String> = samples
            .iter()
            .map(|c| scheme.eras[c.era].name.replace(' ', "-"))
            .collect();
        let path = data_dir.catalog_path();
        let job = JobHandle::spawn(
            "contact sheet export",
            super::job_waker(ctx),
            move |_, _| {
                let picked = super::dialogs::show(|| {
                    rfd::FileDialog::new()
                        .set_title("Export contact sheet")
                        .set_file_name(format!("compare-{}.png", names.join("-vs-")))
                        .add_filter("PNG", &["png"])
                        .save_file()
                });
                Ok::<_, String>(match picked {
                    super::dialogs::Picked::Chosen(out) => {
                        match era_looks::write_contact_sheet(&path, columns, &out) {
                            Ok(()) => format!("Saved {}", out.display()),
                            Err(e) => format!("Could not save {}: {e}", out.display()),
                        }
                    }
                    super::dialogs::Picked::Cancelled => "Export cancelled".into(),
                    super::dialogs::Picked::Unavailable(why) => why,
                })
            },
        );
        match job {
            Ok(job) => self.export_job = Some(job),
            Err(e) => self.export_status = Some(e.to_string()),
        }
    }
}

/// What the wall views read.
#[derive(Clone, Copy)]
struct WallView<'a> {
    explorer: &'a Explorer,
    scheme: &'a EraScheme,
    data_dir: &'a DataDir,
    /// Tile width in points.
    tile: f32,
}

impl WallView<'_> {
    /// Tiles per row in `width` points.
    fn per_row(&self, width: f32) -> usize {
        (((width + TILE_GAP) / (self.tile + TILE_GAP)).floor() as usize).max(1)
    }

    /// The rows of `column`'s grid within `visible` (content coordinates), drawn from
    /// `origin`: a virtualised wall.
    #[allow(clippy::too_many_arguments)] // where, what and which part of it
    fn grid_ui(
        &self,
        ui: &mut egui::Ui,
        thumbs: &mut Thumbnails,
        slot: usize,
        column: &WallColumn,
        origin: egui::Pos2,
        per_row: usize,
        visible: egui::Rangef,
    ) {
        let cell_h = self.tile * 1.5 + TILE_GAP;
        let rows = column.rows.len().div_ceil(per_row);
        let first = (visible.min / cell_h).floor().max(0.0) as usize;
        let last = ((visible.max / cell_h).ceil() as usize + 1).min(rows);
        for row in first..last {
            for c in 0..per_row {
                let idx = row * per_row + c;
                let Some(&i) = column.rows.get(idx) else {
                    break;
                };
                let min =
                    origin + egui::vec2(c as f32 * (self.tile + TILE_GAP), row as f32 * cell_h);
                self.tile_ui(ui, thumbs, (slot, idx), i, min);
            }
        }
    }

    /// One poster tile at `min`, labelled with its title and year.
    fn tile_ui(
        &self,
        ui: &mut egui::Ui,
        thumbs: &mut Thumbnails,
        id: (usize, usize),
        row: usize,
        min: egui::Pos2,
    ) {
        let rect = egui::Rect::from_min_size(min, egui::vec2(self.tile, self.tile * 1.5));
        let m = &self.explorer.rows[row];
        let label = match m.year {
            Some(y) => format!("{} ({y})", m.title),
            None => m.title.clone(),
        };
        let resp = ui.interact(
            rect,
            ui.scope_id().with(("wall-tile", id)),
            egui::Sense::hover(),
        );
        resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &label));
        if ui.is_rect_visible(rect)
            && let Some(pid) = m.poster_id
        {
            let file = super::thumbs::row_file(self.data_dir, m);
            match thumbs.get(pid, file.as_deref()) {
                Some(tex) => {
                    ui.painter().image(
                        tex,
                        rect,
                        egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                        egui::Color32::WHITE,
                    );
                }
                None => super::thumbs::paint_placeholder(ui, thumbs, pid, rect),
            }
        }
        resp.on_hover_text(label);
    }
}

/// A palette as a strip of proportional colour cells, with the share written on cells
/// wide enough.
fn palette_strip(ui: &mut egui::Ui, palette: &[([u8; 3], f32)], width: f32, height: f32) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(width, height), egui::Sense::hover());
    let mut x = rect.left();
    for (c, share) in palette {
        let cw = share * rect.width();
        let cell =
            egui::Rect::from_min_size(egui::pos2(x, rect.top()), egui::vec2(cw, rect.height()));
        ui.painter()
            .rect_filled(cell, 0.0, egui::Color32::from_rgb(c[0], c[1], c[2]));
        if cw > 30.0 && height >= 16.0 {
            let luma = 0.299 * f32::from(c[0]) + 0.587 * f32::from(c[1]) + 0.114 * f32::from(c[2]);
            let ink = if luma > 140.0 {
                egui::Color32::BLACK
            } else {
                egui::Color32::WHITE
            };
            ui.painter().text(
                cell.center(),
                egui::Align2::CENTER_CENTER,
                format!("{:.0}%", 100.0 * share),
                egui::FontId::proportional(11.0),
                ink,
            );
        }
        x += cw;
    }
}

/// The filter bar every wall shares: genre, title, poster status and the model's
/// agreement with the release year.
fn filter_bar(ui: &mut egui::Ui, explorer: &Explorer, f: &mut WallFilter) {
    ui.horizontal_wrapped(|ui| {
        ui.label("Filter every column:");
        let l = ui.label("Genre");
        egui::ComboBox::from_id_salt("wall-genre")
            .selected_text(f.genre.as_deref().unwrap_or("any"))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut f.genre, None, "any");
                for g in &explorer.genres {
                    ui.selectable_value(&mut f.genre, Some(g.clone()), g);
                }
            })
            .response
            .labelled_by(l.id);
        let l = ui.label("Title");
        ui.add(egui::TextEdit::singleline(&mut f.title).desired_width(140.0))
            .labelled_by(l.id);
        let l = ui.label("Poster");
        let status_label = |s: Option<PosterStatus>| match s {
            Some(PosterStatus::Ok) => "good",
            Some(PosterStatus::Failed) => "failed",
            Some(PosterStatus::Pending) => "pending",
            None => "any",
        };
        egui::ComboBox::from_id_salt("wall-status")
            .selected_text(status_label(f.status))
            .show_ui(ui, |ui| {
                for s in [Some(PosterStatus::Ok), Some(PosterStatus::Failed), None] {
                    ui.selectable_value(&mut f.status, s, status_label(s));
                }
            })
            .response
            .labelled_by(l.id);
        let l = ui.label("Model");
        egui::ComboBox::from_id_salt("wall-agreement")
            .selected_text(f.agreement.label())
            .show_ui(ui, |ui| {
                for a in Agreement::ALL {
                    ui.selectable_value(&mut f.agreement, a, a.label());
                }
            })
            .response
            .labelled_by(l.id);
        if *f != WallFilter::default() && ui.button("Clear filter").clicked() {
            *f = WallFilter::default();
        }
    });
}

/// The model's era and confidence per movie, from its pass over the catalog.
fn model_answers(a: &CatalogAnalysis, scheme: &EraScheme) -> HashMap<i64, ModelAnswer> {
    a.movie_ids
        .iter()
        .zip(&a.probs)
        .map(|(&id, probs)| {
            let p = crate::model::inference::Prediction::new(a.bins, probs.clone(), scheme);
            let confidence = p.eras.get(p.best_era).map_or(0.0, |(_, c)| *c as f32);
            (
                id,
                ModelAnswer {
                    era: p.best_era,
                    confidence,
                },
            )
        })
        .collect()
}
