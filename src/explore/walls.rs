//! Poster walls: many posters of each era side by side, what people open Compare for.
//! [`wall_columns`] picks and orders each era's posters under one shared filter (genre,
//! title, poster status, the model's agreement with the release year), a sample size and
//! a sort; [`render_wall`] draws the labelled PNG that the window's "Export wall…" and
//! `movie-eras compare` write.

use std::path::Path;

use image::{Rgb, RgbImage};
use rayon::prelude::*;

use super::{Explorer, column_colour, id_hash, sample};
use crate::catalog::{Catalog, MovieRow, PosterStatus};
use crate::eras::EraScheme;
use crate::imaging::text;
use crate::paths::DataDir;

/// How a wall orders its posters.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
pub enum WallSort {
    /// Release year, then title.
    #[default]
    Year,
    /// The model's confidence in its era, most confident first (posters it has not seen
    /// last).
    Confidence,
    /// Dominant hue around the colour wheel (near-greyscale posters first).
    Hue,
    /// Mean brightness, dark to light.
    Brightness,
    /// Shuffled, reproducibly by the seed.
    Random,
}

impl WallSort {
    /// All sorts, in menu order.
    pub const ALL: [Self; 5] = [
        Self::Year,
        Self::Confidence,
        Self::Hue,
        Self::Brightness,
        Self::Random,
    ];

    /// The label in menus.
    pub fn label(self) -> &'static str {
        match self {
            Self::Year => "year",
            Self::Confidence => "model confidence",
            Self::Hue => "hue",
            Self::Brightness => "brightness",
            Self::Random => "random (seed)",
        }
    }
}

/// Whether the model's era agrees with the release year's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Agreement {
    /// Every poster.
    #[default]
    Any,
    /// Posters the model puts in their own era.
    Agrees,
    /// Posters the model puts in another era ("looks like another era").
    Disagrees,
}

impl Agreement {
    /// All choices, in menu order.
    pub const ALL: [Self; 3] = [Self::Any, Self::Agrees, Self::Disagrees];

    /// The label in menus.
    pub fn label(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::Agrees => "model agrees",
            Self::Disagrees => "model says another era",
        }
    }
}

/// The filter every column shares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WallFilter {
    /// Only movies with this genre.
    pub genre: Option<String>,
    /// Title contains this (case-insensitive).
    pub title: String,
    /// Only posters with this status (`None`: any; walls default to good posters).
    pub status: Option<PosterStatus>,
    /// The model's agreement with the release year (needs its predictions).
    pub agreement: Agreement,
}

impl Default for WallFilter {
    fn default() -> Self {
        Self {
            genre: None,
            title: String::new(),
            status: Some(PosterStatus::Ok),
            agreement: Agreement::Any,
        }
    }
}

/// What the model says of a poster, in the scheme of the wall.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelAnswer {
    /// The era it finds most likely (index in the scheme).
    pub era: usize,
    /// Its probability.
    pub confidence: f32,
}

/// The model's answer per movie id, where it has one.
pub type ModelAnswers<'a> = &'a dyn Fn(i64) -> Option<ModelAnswer>;

/// What a wall shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WallRequest {
    /// Eras (indices in the scheme), one column each, in this order.
    pub eras: Vec<usize>,
    /// Posters per era (`None`: all of them).
    pub per_era: Option<usize>,
    /// Order within a column.
    pub sort: WallSort,
    /// Seed of the sample and of the random order.
    pub seed: u64,
    /// The shared filter.
    pub filter: WallFilter,
}

/// Why a wall cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum WallError {
    /// No era chosen.
    #[error("choose at least one era")]
    NoEras,
    /// An era the scheme does not have.
    #[error("{0}")]
    UnknownEra(String),
    /// A sample of none.
    #[error("posters per era must be at least 1")]
    EmptySample,
    /// Nothing to show.
    #[error("no posters match in {0}")]
    Empty(String),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The image could not be encoded or written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// Era indices of `names` (case-insensitive, e.g. `1950s` or `New Hollywood`) in `scheme`.
pub fn eras_by_name(scheme: &EraScheme, names: &[String]) -> Result<Vec<usize>, WallError> {
    if names.is_empty() {
        return Err(WallError::NoEras);
    }
    names
        .iter()
        .map(|n| {
            let n = n.trim();
            scheme
                .eras
                .iter()
                .position(|e| e.name.eq_ignore_ascii_case(n))
                .ok_or_else(|| {
                    let known: Vec<&str> = scheme.eras.iter().map(|e| e.name.as_str()).collect();
                    WallError::UnknownEra(format!(
                        "unknown era `{n}` in the {} scheme (its eras: {})",
                        scheme.name,
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

impl WallRequest {
    /// Checks the request against `scheme`.
    pub fn validate(&self, scheme: &EraScheme) -> Result<(), WallError> {
        if self.eras.is_empty() {
            return Err(WallError::NoEras);
        }
        if let Some(&bad) = self.eras.iter().find(|&&e| e >= scheme.eras.len()) {
            return Err(WallError::UnknownEra(format!(
                "era {bad}: the {} scheme has {} eras",
                scheme.name,
                scheme.eras.len()
            )));
        }
        if self.per_era == Some(0) {
            return Err(WallError::EmptySample);
        }
        Ok(())
    }
}

/// One column (or row) of a wall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WallColumn {
    /// Its era (index in the scheme).
    pub era: usize,
    /// Posters of the era that pass the filter.
    pub matching: usize,
    /// The posters shown (indices into the explorer's rows), in order.
    pub rows: Vec<usize>,
}

/// Whether `r` passes the shared filter (`era` is its release era's index).
fn passes(
    r: &MovieRow,
    era: usize,
    f: &WallFilter,
    title: &str,
    model: Option<ModelAnswers<'_>>,
) -> bool {
    if f.status.is_some() && r.status != f.status {
        return false;
    }
    if let Some(g) = &f.genre
        && !r.genres.split(", ").any(|x| x.eq_ignore_ascii_case(g))
    {
        return false;
    }
    if !title.is_empty() && !r.title.to_lowercase().contains(title) {
        return false;
    }
    match f.agreement {
        Agreement::Any => true,
        Agreement::Agrees => model.and_then(|m| m(r.id)).is_some_and(|a| a.era == era),
        Agreement::Disagrees => model.and_then(|m| m(r.id)).is_some_and(|a| a.era != era),
    }
}

/// The circular mean hue in degrees, or `None` for a near-greyscale poster.
fn hue_of(r: &MovieRow) -> Option<f32> {
    let s = r.stats.as_ref()?;
    if s.is_near_greyscale() {
        return None;
    }
    let (mut x, mut y) = (0f32, 0f32);
    for (k, w) in s.hue_hist.iter().enumerate() {
        let a = (k as f32 * 30.0).to_radians();
        x += w * a.cos();
        y += w * a.sin();
    }
    Some(y.atan2(x).to_degrees().rem_euclid(360.0))
}

/// Orders `rows` by `sort`.
fn sort_rows(
    rows: &mut [usize],
    all: &[MovieRow],
    sort: WallSort,
    seed: u64,
    model: Option<ModelAnswers<'_>>,
) {
    let by_year = |i: usize| (all[i].year, all[i].title.to_lowercase(), all[i].id);
    match sort {
        WallSort::Year => rows.sort_by_cached_key(|&i| by_year(i)),
        WallSort::Random => rows.sort_by_cached_key(|&i| id_hash(all[i].id, seed)),
        WallSort::Brightness => rows.sort_by(|&a, &b| {
            let v = |i: usize| {
                all[i]
                    .stats
                    .as_ref()
                    .map_or(f32::INFINITY, |s| s.brightness)
            };
            v(a).total_cmp(&v(b))
                .then_with(|| by_year(a).cmp(&by_year(b)))
        }),
        WallSort::Hue => rows.sort_by(|&a, &b| {
            // Greyscale (-1) first, then around the wheel; posters without statistics last.
            let v = |i: usize| match (&all[i].stats, hue_of(&all[i])) {
                (None, _) => f32::INFINITY,
                (Some(_), None) => -1.0,
                (Some(_), Some(h)) => h,
            };
            v(a).total_cmp(&v(b))
                .then_with(|| by_year(a).cmp(&by_year(b)))
        }),
        WallSort::Confidence => rows.sort_by(|&a, &b| {
            let v = |i: usize| {
                model
                    .and_then(|m| m(all[i].id))
                    .map_or(-1.0, |x| x.confidence)
            };
            v(b).total_cmp(&v(a))
                .then_with(|| by_year(a).cmp(&by_year(b)))
        }),
    }
}

/// Each era's posters as `req` asks: the shared filter, then a reproducible sample of
/// `per_era` (all when `None`), in the chosen order. `model` gives the model's answers
/// (for the agreement filter and the confidence sort), where it has run.
pub fn wall_columns(
    explorer: &Explorer,
    scheme: &EraScheme,
    req: &WallRequest,
    model: Option<ModelAnswers<'_>>,
) -> Vec<WallColumn> {
    let title = req.filter.title.trim().to_lowercase();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); scheme.eras.len()];
    for (i, r) in explorer.rows.iter().enumerate() {
        let Some(year) = r.year else { continue };
        let era = scheme.era_index(year);
        if req.eras.contains(&era) && passes(r, era, &req.filter, &title, model) {
            members[era].push(i);
        }
    }
    req.eras
        .iter()
        .map(|&era| {
            let all = members.get(era).cloned().unwrap_or_default();
            let matching = all.len();
            let mut rows = match req.per_era {
                Some(n) if n < matching => sample(&explorer.rows, &all, n, req.seed),
                _ => all,
            };
            sort_rows(&mut rows, &explorer.rows, req.sort, req.seed, model);
            WallColumn {
                era,
                matching,
                rows,
            }
        })
        .collect()
}

/// How a wall is laid out.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
pub enum WallLayout {
    /// Eras side by side, posters downwards.
    #[default]
    Columns,
    /// Eras one under another, posters sideways (a timeline).
    Rows,
}

/// One era's block of an exported wall.
#[derive(Debug, Clone)]
pub struct WallBlock {
    /// Its header: era name, years and count.
    pub label: String,
    /// Its posters: the picture (`None`: unreadable, drawn as a grey tile) and caption.
    pub tiles: Vec<(Option<RgbImage>, String)>,
}

/// Look of an exported wall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallStyle {
    /// Image width in pixels.
    pub width: u32,
    /// Columns or rows.
    pub layout: WallLayout,
    /// Poster width in pixels (height 1.5×).
    pub tile: u32,
    /// Title and year under each poster.
    pub captions: bool,
}

impl Default for WallStyle {
    fn default() -> Self {
        Self {
            width: 1600,
            layout: WallLayout::Columns,
            tile: 96,
            captions: false,
        }
    }
}

/// Height of a block header.
const HEADER: u32 = 34;
/// Space between tiles and blocks.
const GAP: u32 = 6;
/// Caption font size and line height.
const CAPTION_PX: f32 = 11.0;
const CAPTION_H: u32 = 28;

/// Draws the wall: per era a header band in the era's colour (name and count), then its
/// posters in a grid (columns layout: eras side by side; rows layout: one era under
/// another), with title and year under each poster when asked. At most 8192×16384.
pub fn render_wall(blocks: &[WallBlock], style: &WallStyle) -> RgbImage {
    let tile_w = style.tile.clamp(24, 400);
    let width = style.width.clamp(200, 8192);
    let k = blocks.len().max(1) as u32;
    // The region each block gets and how many posters fit a row of it.
    let block_w = match style.layout {
        WallLayout::Columns => (width.saturating_sub(GAP * (k + 1)) / k).max(tile_w),
        WallLayout::Rows => width.saturating_sub(2 * GAP).max(tile_w),
    };
    let per_row = ((block_w + GAP) / (tile_w + GAP)).max(1);
    // Posters widen to fill their block's width.
    let tile_w = ((block_w + GAP) / per_row).saturating_sub(GAP).max(tile_w);
    let tile_h = tile_w * 3 / 2;
    let cell_h = tile_h + if style.captions { CAPTION_H } else { 0 } + GAP;
    let rows_of = |b: &WallBlock| (b.tiles.len() as u32).div_ceil(per_row);
    let block_h = |b: &WallBlock| HEADER + GAP + rows_of(b) * cell_h;
    let height = match style.layout {
        WallLayout::Columns => blocks.iter().map(block_h).max().unwrap_or(HEADER) + 2 * GAP,
        WallLayout::Rows => blocks.iter().map(|b| block_h(b) + GAP).sum::<u32>() + GAP,
    }
    .min(16_384);
    let mut img = RgbImage::from_pixel(width, height, Rgb([24, 24, 28]));
    let fonts = text::Fonts::new();
    for (slot, b) in blocks.iter().enumerate() {
        let (x0, y0) = match style.layout {
            WallLayout::Columns => (GAP + slot as u32 * (block_w + GAP), GAP),
            WallLayout::Rows => (
                GAP,
                GAP + blocks[..slot].iter().map(|b| block_h(b) + GAP).sum::<u32>(),
            ),
        };
        let [r, g, bl] = column_colour(slot);
        fill(&mut img, x0, y0, block_w, HEADER, Rgb([r, g, bl]));
        fonts.draw(
            &mut img,
            x0 + 8,
            y0 + 7,
            block_w.saturating_sub(16),
            18.0,
            &b.label,
            Rgb([16, 16, 16]),
        );
        for (n, (poster, caption)) in b.tiles.iter().enumerate() {
            let n = n as u32;
            let x = x0 + (n % per_row) * (tile_w + GAP);
            let y = y0 + HEADER + GAP + (n / per_row) * cell_h;
            match poster {
                Some(p) => {
                    let fitted = crate::imaging::fit_within(p, tile_w, tile_h);
                    let dx = (tile_w - fitted.width().min(tile_w)) / 2;
                    let dy = (tile_h - fitted.height().min(tile_h)) / 2;
                    blit(&mut img, &fitted, x + dx, y + dy);
                }
                None => fill(&mut img, x, y, tile_w, tile_h, Rgb([70, 70, 76])),
            }
            if style.captions && !caption.is_empty() {
                fonts.draw(
                    &mut img,
                    x,
                    y + tile_h + 3,
                    tile_w,
                    CAPTION_PX,
                    caption,
                    Rgb([220, 220, 220]),
                );
            }
        }
    }
    img
}

/// The blocks of a wall: per column its label ("1950s (1950–1959) · 40 of 1,204
/// posters") and its posters with their captions, read from the catalog's thumbnails or
/// the poster files (decoded in parallel).
pub fn wall_blocks(
    catalog: &Catalog,
    explorer: &Explorer,
    scheme: &EraScheme,
    columns: &[WallColumn],
    data_dir: &DataDir,
) -> Vec<WallBlock> {
    columns
        .iter()
        .map(|c| {
            let era = &scheme.eras[c.era.min(scheme.eras.len().saturating_sub(1))];
            let count = if c.rows.len() < c.matching {
                format!("{} of {} posters", c.rows.len(), c.matching)
            } else {
                format!("{} posters", c.matching)
            };
            let sources: Vec<(Option<Vec<u8>>, Option<std::path::PathBuf>, String)> = c
                .rows
                .iter()
                .map(|&i| {
                    let r = &explorer.rows[i];
                    let jpeg = r
                        .poster_id
                        .and_then(|id| catalog.thumbnail(id).ok().flatten());
                    let file = r.poster_file.as_deref().map(|f| data_dir.poster_path(f));
                    let caption = match r.year {
                        Some(y) => format!("{} ({y})", r.title),
                        None => r.title.clone(),
                    };
                    (jpeg, file, caption)
                })
                .collect();
            let tiles = sources
                .into_par_iter()
                .map(|(jpeg, file, caption)| {
                    (
                        crate::imaging::decode_thumbnail(jpeg.as_deref(), file.as_deref()),
                        caption,
                    )
                })
                .collect();
            WallBlock {
                label: format!("{} ({}) · {count}", era.name, era.range_label()),
                tiles,
            }
        })
        .collect()
}

/// Draws `blocks` and writes the PNG to `out` atomically; returns its size.
pub fn write_wall(
    blocks: &[WallBlock],
    style: &WallStyle,
    out: &Path,
) -> Result<(u32, u32), WallError> {
    let img = render_wall(blocks, style);
    let err = |message: String| WallError::Write {
        path: out.display().to_string(),
        message,
    };
    let png = crate::imaging::encode_png(&img).map_err(|e| err(e.to_string()))?;
    crate::fsutil::write_atomic(out, &png).map_err(|e| err(e.to_string()))?;
    Ok(img.dimensions())
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: Rgb<u8>) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, c);
        }
    }
}

fn blit(img: &mut RgbImage, src: &RgbImage, x: u32, y: u32) {
    for (sx, sy, p) in src.enumerate_pixels() {
        let (tx, ty) = (x + sx, y + sy);
        if tx < img.width() && ty < img.height() {
            img.put_pixel(tx, ty, *p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eras::EraSchemes;
    use crate::imaging::ColourStats;

    fn row(
        id: i64,
        year: i32,
        title: &str,
        genres: &str,
        brightness: f32,
        hue_bin: usize,
    ) -> MovieRow {
        let mut hue_hist = [0.0; crate::imaging::HUE_BINS];
        hue_hist[hue_bin] = 1.0;
        MovieRow {
            id,
            tmdb_id: None,
            title: title.into(),
            year: Some(year),
            genres: genres.into(),
            popularity: None,
            poster_id: Some(id),
            poster_file: None,
            poster_sha256: None,
            status: Some(PosterStatus::Ok),
            reason: None,
            stats: Some(ColourStats {
                brightness,
                dark_share: 0.0,
                saturation: 0.5,
                colourfulness: 50.0,
                hue_hist,
                chromatic_share: 0.5,
            }),
        }
    }

    fn explorer() -> Explorer {
        let mut rows = Vec::new();
        for i in 0..30 {
            let year = [1955, 1985, 2015][i as usize % 3];
            let genre = if i % 2 == 0 { "Horror" } else { "Comedy" };
            rows.push(row(
                i,
                year,
                &format!("Movie {i}"),
                genre,
                (i % 7) as f32 / 7.0,
                (i % 12) as usize,
            ));
        }
        Explorer::new(rows)
    }

    #[test]
    fn the_shared_filter_narrows_every_column_and_the_sample_is_reproducible() {
        let schemes = EraSchemes::builtin();
        let scheme = schemes.get("decades").unwrap();
        let eras = eras_by_name(scheme, &["1950s".into(), "1980s".into(), "2010s".into()]).unwrap();
        let e = explorer();
        let mut req = WallRequest {
            eras,
            per_era: None,
            sort: WallSort::Year,
            seed: 1,
            filter: WallFilter::default(),
        };
        let all = wall_columns(&e, scheme, &req, None);
        assert_eq!(
            all.iter().map(|c| c.rows.len()).collect::<Vec<_>>(),
            vec![10, 10, 10]
        );
        req.filter.genre = Some("horror".into());
        let horror = wall_columns(&e, scheme, &req, None);
        for c in &horror {
            assert_eq!(c.matching, 5);
            assert!(c.rows.iter().all(|&i| e.rows[i].genres == "Horror"));
        }
        req.per_era = Some(3);
        let a = wall_columns(&e, scheme, &req, None);
        assert_eq!(a, wall_columns(&e, scheme, &req, None));
        assert!(a.iter().all(|c| c.rows.len() == 3 && c.matching == 5));
    }

    #[test]
    fn sorts_order_by_what_they_say() {
        let schemes = EraSchemes::builtin();
        let scheme = schemes.get("decades").unwrap();
        let e = explorer();
        let mut req = WallRequest {
            eras: vec![scheme.era_index(1955)],
            per_era: None,
            sort: WallSort::Brightness,
            seed: 3,
            filter: WallFilter::default(),
        };
        let col = &wall_columns(&e, scheme, &req, None)[0];
        let b: Vec<f32> = col
            .rows
            .iter()
            .map(|&i| e.rows[i].stats.as_ref().unwrap().brightness)
            .collect();
        assert!(b.windows(2).all(|w| w[0] <= w[1]), "{b:?}");
        req.sort = WallSort::Hue;
        let col = &wall_columns(&e, scheme, &req, None)[0];
        let h: Vec<f32> = col
            .rows
            .iter()
            .map(|&i| hue_of(&e.rows[i]).unwrap())
            .collect();
        assert!(h.windows(2).all(|w| w[0] <= w[1] + 1e-3), "{h:?}");
        req.sort = WallSort::Random;
        let r1 = wall_columns(&e, scheme, &req, None)[0].rows.clone();
        req.seed = 4;
        let r2 = wall_columns(&e, scheme, &req, None)[0].rows.clone();
        assert_ne!(r1, r2, "another seed, another order");
        // Confidence: the model's most confident first; agreement filters on its era.
        let model = |id: i64| {
            Some(ModelAnswer {
                era: if id % 2 == 0 {
                    scheme.era_index(1955)
                } else {
                    0
                },
                confidence: id as f32 / 100.0,
            })
        };
        req.sort = WallSort::Confidence;
        let col = &wall_columns(&e, scheme, &req, Some(&model))[0];
        let ids: Vec<i64> = col.rows.iter().map(|&i| e.rows[i].id).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
        req.filter.agreement = Agreement::Agrees;
        let col = &wall_columns(&e, scheme, &req, Some(&model))[0];
        assert!(col.rows.iter().all(|&i| e.rows[i].id % 2 == 0));
        req.filter.agreement = Agreement::Disagrees;
        let col = &wall_columns(&e, scheme, &req, Some(&model))[0];
        assert!(col.rows.iter().all(|&i| e.rows[i].id % 2 == 1));
    }

    #[test]
    fn bad_requests_are_refused_clearly() {
        let schemes = EraSchemes::builtin();
        let scheme = schemes.get("decades").unwrap();
        let e = eras_by_name(scheme, &["1950s".into(), "1880s".into()]).unwrap_err();
        assert!(e.to_string().contains("unknown era `1880s`"), "{e}");
        assert!(matches!(eras_by_name(scheme, &[]), Err(WallError::NoEras)));
        let req = WallRequest {
            eras: vec![0],
            per_era: Some(0),
            sort: WallSort::Year,
            seed: 0,
            filter: WallFilter::default(),
        };
        assert!(matches!(req.validate(scheme), Err(WallError::EmptySample)));
    }

    #[test]
    fn a_rendered_wall_has_one_labelled_block_per_era() {
        let poster = RgbImage::from_pixel(60, 90, Rgb([200, 30, 30]));
        let blocks: Vec<WallBlock> = (0..3)
            .map(|k| WallBlock {
                label: format!("19{}0s (4)", 5 + k),
                tiles: vec![(Some(poster.clone()), "Title (1955)".into()); 4],
            })
            .collect();
        let style = WallStyle {
            width: 900,
            layout: WallLayout::Columns,
            tile: 60,
            captions: true,
        };
        let img = render_wall(&blocks, &style);
        assert_eq!(img.width(), 900);
        // Three header bands in three colours across the top.
        let band_y = GAP + 2;
        let block_w = (900 - GAP * 4) / 3;
        let colours: Vec<Rgb<u8>> = (0..3)
            .map(|k| *img.get_pixel(GAP + k * (block_w + GAP) + block_w - 3, band_y))
            .collect();
        assert_eq!(colours[0], Rgb(column_colour(0)));
        assert_eq!(colours[1], Rgb(column_colour(1)));
        assert_eq!(colours[2], Rgb(column_colour(2)));
        // The label is drawn: dark text pixels inside the first band.
        let dark = (GAP + 8..GAP + 120)
            .flat_map(|x| (GAP + 7..GAP + 27).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y)[0] < 100)
            .count();
        assert!(dark > 20, "no label text: {dark}");
        // Rows layout: blocks stacked, as wide as asked.
        let rows = render_wall(
            &blocks,
            &WallStyle {
                layout: WallLayout::Rows,
                ..style
            },
        );
        assert_eq!(rows.width(), 900);
        assert!(rows.height() > img.height());
    }
}
