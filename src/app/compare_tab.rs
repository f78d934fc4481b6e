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

use super::thumbs::Thumbnails;
use crate::catalog::Catalog;
use crate::eras::EraScheme;
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
    /// Posters sampled per column.
    pub per_column: usize,
    /// Sampling seed.
    pub seed: u64,
}

impl Default for CompareSettings {
    fn default() -> Self {
        Self {
            columns: HashMap::new(),
            per_column: 12,
            seed: 1,
        }
    }
}

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

/// One column to draw: its position (which sets its colour), era and sampled posters.
struct Column<'a> {
    slot: usize,
    era: usize,
    picked: &'a [usize],
    total: usize,
}

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
    /// The columns' members and samples, and what they were computed for.
    samples: Option<(SampleKey, Arc<Vec<ColumnSample>>)>,
}

/// A column's era, its sampled rows and its number of posters.
type ColumnSample = (usize, Vec<usize>, usize);

/// What a column sample depends on: the catalog read (by identity), scheme, columns,
/// sample size and seed.
type SampleKey = (usize, String, Vec<usize>, usize, u64);

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
        }
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
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        explorer: &Arc<Explorer>,
        scheme: &EraScheme,
        data_dir: &DataDir,
        thumbs: &mut Thumbnails,
        settings: &mut CompareSettings,
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
            ui.add(egui::Slider::new(&mut settings.per_column, 3..=30).text("posters each"));
            ui.add(egui::DragValue::new(&mut settings.seed).prefix("sample seed "));
            if ui.button("Export contact sheet…").clicked() {
                export = true;
            }
        });
        if let Some(s) = &self.export_status {
            ui.small(s.as_str());
        }
        if let Some(e) = &self.looks_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        let columns = columns.clone();
        // Members and samples are computed when what they depend on changes, not per frame.
        let key: SampleKey = (
            Arc::as_ptr(explorer) as usize,
            scheme.name.clone(),
            columns.clone(),
            settings.per_column,
            settings.seed,
        );
        if self.samples.as_ref().is_none_or(|(k, _)| *k != key) {
            let samples: Vec<(usize, Vec<usize>, usize)> = columns
                .iter()
                .map(|&era| {
                    let members = explorer.era_members(scheme, era);
                    let picked = explore::sample(
                        &explorer.rows,
                        &members,
                        settings.per_column,
                        settings.seed,
                    );
                    (era, picked, members.len())
                })
                .collect();
            self.samples = Some((key, Arc::new(samples)));
        }
        let Some((_, samples)) = &self.samples else {
            return;
        };
        let samples = Arc::clone(samples);
        // Ask for the averages not computed yet.
        for (era, _, _) in samples.iter() {
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
        ui.separator();
        egui::ScrollArea::vertical()
            .id_salt("compare")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.columns(samples.len().max(1), |cols| {
                    for (slot, (ui, (era, picked, total))) in
                        cols.iter_mut().zip(samples.iter()).enumerate()
                    {
                        let column = Column {
                            slot,
                            era: *era,
                            picked,
                            total: *total,
                        };
                        self.column_ui(ui, explorer, scheme, data_dir, thumbs, &column);
                    }
                });
                ui.separator();
                self.plots_ui(ui, explorer, scheme, data_dir, thumbs, &columns);
            });
    }

    fn column_ui(
        &mut self,
        ui: &mut egui::Ui,
        explorer: &Explorer,
        scheme: &EraScheme,
        data_dir: &DataDir,
        thumbs: &mut Thumbnails,
        column: &Column<'_>,
    ) {
        let Column {
            slot,
            era,
            picked,
            total,
        } = *column;
        let Some(e) = scheme.eras.get(era) else {
            return;
        };
        let [r, g, b] = explore::column_colour(slot);
        ui.colored_label(
            egui::Color32::from_rgb(r, g, b),
            egui::RichText::new(format!("{} ({})", e.name, e.range_label())).strong(),
        );
        ui.label(format!("{total} posters"));
        let key = (scheme.name.clone(), era);
        match self.looks.get_mut(&key) {
            Some(Some(look)) => {
                let tex = look.texture.get_or_insert_with(|| {
                    ui.ctx().load_texture(
                        format!("average-{}-{era}", scheme.name),
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
                // The average as large as the column allows (2:3, at most 240 wide), each
                // caption under what it describes.
                let w = ui.available_width().clamp(60.0, 240.0);
                ui.image((tex.id(), egui::vec2(w, w * 1.5)));
                ui.small(format!("Average of {} posters", look.count));
                ui.add_space(4.0);
                let (rect, _) = ui.allocate_exact_size(egui::vec2(w, 28.0), egui::Sense::hover());
                let mut x = rect.left();
                for (c, share) in &look.palette {
                    let cw = share * rect.width();
                    let cell = egui::Rect::from_min_size(
                        egui::pos2(x, rect.top()),
                        egui::vec2(cw, rect.height()),
                    );
                    ui.painter()
                        .rect_filled(cell, 0.0, egui::Color32::from_rgb(c[0], c[1], c[2]));
                    // Shares wide enough to hold their figure show it.
                    if cw > 30.0 {
                        let luma = 0.299 * f32::from(c[0])
                            + 0.587 * f32::from(c[1])
                            + 0.114 * f32::from(c[2]);
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
                ui.small("Palette (share of pixels)");
                ui.add_space(4.0);
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
        let cell = egui::vec2(64.0, 96.0);
        let per_row = ((ui.available_width() + 4.0) / (cell.x + 4.0))
            .floor()
            .max(1.0) as usize;
        for row in picked.chunks(per_row) {
            ui.horizontal(|ui| {
                ui.spacing_mut().item_spacing.x = 4.0;
                for &i in row {
                    let m = &explorer.rows[i];
                    let (rect, resp) = ui.allocate_exact_size(cell, egui::Sense::hover());
                    let file = super::thumbs::row_file(data_dir, m);
                    if let Some(pid) = m.poster_id {
                        match thumbs.get(pid, file.as_deref()) {
                            Some(tex) => {
                                ui.painter().image(
                                    tex,
                                    rect,
                                    egui::Rect::from_min_max(
                                        egui::pos2(0.0, 0.0),
                                        egui::pos2(1.0, 1.0),
                                    ),
                                    egui::Color32::WHITE,
                                );
                            }
                            None => super::thumbs::paint_placeholder(ui, thumbs, pid, rect),
                        }
                    }
                    resp.on_hover_text(format!("{} ({})", m.title, m.year.unwrap_or(0)));
                }
            });
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
    fn export(
        &mut self,
        ctx: &egui::Context,
        data_dir: &DataDir,
        explorer: &Explorer,
        scheme: &EraScheme,
        samples: &[(usize, Vec<usize>, usize)],
    ) {
        let columns: Vec<SheetSource> = samples
            .iter()
            .map(|(era, picked, _)| {
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
            .map(|(e, _, _)| scheme.eras[*e].name.replace(' ', "-"))
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
