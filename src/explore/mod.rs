//! Exploring the catalog, shared by the Gallery and Compare tabs (and testable without a
//! window): filters and sorting, reproducible samples, per-year and per-era poster
//! statistics, average posters, palettes, a 2-D projection of model features and
//! contact sheets.

use std::collections::{BTreeSet, HashMap};

use image::{Rgb, RgbImage};

use crate::catalog::{MovieRow, PosterStatus};
use crate::eras::EraScheme;
use crate::imaging::HUE_BINS;

pub mod era_looks;
pub mod layout;
pub mod walls;

/// What the gallery shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Filter {
    /// Only this era, by name (an era of the scheme in use; a name the scheme lacks keeps
    /// nothing). Settings saved by older versions (an index) read as no era filter.
    #[serde(default, deserialize_with = "era_name_or_none")]
    pub era: Option<String>,
    /// Only this decade (its first year).
    pub decade: Option<i32>,
    /// Only years in this inclusive range.
    pub years: Option<(i32, i32)>,
    /// Only movies with this genre.
    pub genre: Option<String>,
    /// Title contains this (case-insensitive).
    pub title: String,
    /// Only posters with this status.
    pub status: Option<PosterStatus>,
}

/// Reads an era filter: a name, or `None` for anything else (older settings stored the
/// era's position in the scheme, which means another era in another scheme).
fn era_name_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Name(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(
        match <Option<Stored> as serde::Deserialize>::deserialize(d)? {
            Some(Stored::Name(name)) => Some(name),
            Some(Stored::Other(_)) | None => None,
        },
    )
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            era: None,
            decade: None,
            years: None,
            genre: None,
            title: String::new(),
            status: Some(PosterStatus::Ok),
        }
    }
}

/// Gallery order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum SortKey {
    /// Release year, then title.
    #[default]
    Year,
    /// Title.
    Title,
    /// TMDB popularity.
    Popularity,
    /// |predicted year − release year| (movies without a prediction last).
    Error,
    /// How strongly the poster reads two ways: the share of the second mode of its year
    /// distribution (later art of an older film, or retro art), 0 with one reading.
    TwoReadings,
}

impl SortKey {
    /// All keys, in menu order.
    pub const ALL: [Self; 5] = [
        Self::Year,
        Self::Title,
        Self::Popularity,
        Self::Error,
        Self::TwoReadings,
    ];

    /// Whether the order needs the model's pass over the catalog.
    pub fn needs_model(self) -> bool {
        matches!(self, Self::Error | Self::TwoReadings)
    }

    /// Name shown to users.
    pub fn label(self) -> &'static str {
        match self {
            Self::Year => "Year",
            Self::Title => "Title",
            Self::Popularity => "Popularity",
            Self::Error => "Looks like another era (prediction error)",
            Self::TwoReadings => "Looks like another era (two readings: re-release art?)",
        }
    }
}

/// The catalog prepared for exploring: rows plus what the filters offer.
#[derive(Debug, Clone, Default)]
pub struct Explorer {
    /// Movies, as the catalog lists them.
    pub rows: Vec<MovieRow>,
    /// Lower-cased titles, for search.
    titles_lower: Vec<String>,
    /// Every genre present, sorted.
    pub genres: Vec<String>,
    /// Smallest and largest year present.
    pub year_range: Option<(i32, i32)>,
}

impl Explorer {
    /// Prepares `rows`.
    pub fn new(rows: Vec<MovieRow>) -> Self {
        let titles_lower = rows.iter().map(|r| r.title.to_lowercase()).collect();
        let mut genres = BTreeSet::new();
        for r in &rows {
            for g in r.genres.split(',') {
                let g = g.trim();
                if !g.is_empty() {
                    genres.insert(g.to_owned());
                }
            }
        }
        let years = rows.iter().filter_map(|r| r.year);
        let year_range = years
            .clone()
            .min()
            .zip(rows.iter().filter_map(|r| r.year).max());
        Self {
            rows,
            titles_lower,
            genres: genres.into_iter().collect(),
            year_range,
        }
    }

    /// Indices of the rows `filter` keeps, in `sort` order. `scores` holds, per movie id,
    /// what [`SortKey::Error`] or [`SortKey::TwoReadings`] sorts by (the prediction error,
    /// the second reading's share).
    pub fn select(
        &self,
        scheme: &EraScheme,
        filter: &Filter,
        sort: SortKey,
        descending: bool,
        scores: &HashMap<i64, f32>,
    ) -> Vec<usize> {
        let title = filter.title.trim().to_lowercase();
        let mut out: Vec<usize> = (0..self.rows.len())
            .filter(|&i| {
                let r = &self.rows[i];
                if filter.status.is_some() && r.status != filter.status {
                    return false;
                }
                if !title.is_empty() && !self.titles_lower[i].contains(&title) {
                    return false;
                }
                if let Some(g) = &filter.genre
                    && !r.genres.split(',').any(|x| x.trim() == g)
                {
                    return false;
                }
                let needs_year =
                    filter.era.is_some() || filter.decade.is_some() || filter.years.is_some();
                match r.year {
                    None => !needs_year,
                    Some(y) => {
                        filter
                            .era
                            .as_ref()
                            .is_none_or(|e| scheme.era_of(y).name == *e)
                            && filter.decade.is_none_or(|d| y.div_euclid(10) * 10 == d)
                            && filter.years.is_none_or(|(a, b)| (a..=b).contains(&y))
                    }
                }
            })
            .collect();
        let rows = &self.rows;
        match sort {
            SortKey::Year => out.sort_by(|&a, &b| {
                rows[a]
                    .year
                    .cmp(&rows[b].year)
                    .then_with(|| rows[a].title.cmp(&rows[b].title))
            }),
            SortKey::Title => out.sort_by(|&a, &b| {
                self.titles_lower[a]
                    .cmp(&self.titles_lower[b])
                    .then(rows[a].year.cmp(&rows[b].year))
            }),
            SortKey::Popularity => out.sort_by(|&a, &b| {
                rows[a]
                    .popularity
                    .unwrap_or(0.0)
                    .total_cmp(&rows[b].popularity.unwrap_or(0.0))
            }),
            SortKey::Error | SortKey::TwoReadings => out.sort_by(|&a, &b| {
                let ea = scores.get(&rows[a].id).copied().unwrap_or(-1.0);
                let eb = scores.get(&rows[b].id).copied().unwrap_or(-1.0);
                ea.total_cmp(&eb)
            }),
        }
        if descending {
            out.reverse();
        }
        out
    }

    /// Indices of the posters (status ok) of era `era` of `scheme`.
    pub fn era_members(&self, scheme: &EraScheme, era: usize) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&i| {
                let r = &self.rows[i];
                r.status == Some(PosterStatus::Ok)
                    && r.year.is_some_and(|y| scheme.era_index(y) == era)
            })
            .collect()
    }

    /// Indices of the posters (status ok) released in `year`.
    pub fn year_members(&self, year: i32) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&i| {
                self.rows[i].status == Some(PosterStatus::Ok) && self.rows[i].year == Some(year)
            })
            .collect()
    }
}

/// Deterministic 64-bit mix of a movie id and a seed.
fn id_hash(id: i64, seed: u64) -> u64 {
    let mut h = (id as u64) ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A reproducible sample of `n` of `indices`: the same catalog and seed always give the
/// same posters, in year order, and adding movies changes the sample only where a new
/// one ranks in.
pub fn sample(rows: &[MovieRow], indices: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let mut ranked: Vec<(u64, usize)> = indices
        .iter()
        .map(|&i| (id_hash(rows[i].id, seed), i))
        .collect();
    ranked.sort_unstable();
    let mut picked: Vec<usize> = ranked.into_iter().take(n).map(|(_, i)| i).collect();
    picked.sort_by_key(|&i| (rows[i].year, rows[i].id));
    picked
}

/// Mean poster statistics of one release year.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct YearStats {
    /// The year.
    pub year: i32,
    /// Posters with statistics.
    pub count: usize,
    /// Mean brightness (0..1).
    pub brightness: f32,
    /// Mean share of dark pixels.
    pub dark_share: f32,
    /// Mean saturation.
    pub saturation: f32,
    /// Mean colourfulness (Hasler–Süsstrunk).
    pub colourfulness: f32,
    /// Share of near-greyscale posters.
    pub grey_share: f32,
    /// Mean share of warm hues among chromatic pixels.
    pub warm_share: f32,
    /// Mean share of cool hues among chromatic pixels.
    pub cool_share: f32,
}

/// Per-year means over the posters that have colour statistics, in year order.
pub fn year_stats(rows: &[MovieRow]) -> Vec<YearStats> {
    let mut by_year: std::collections::BTreeMap<i32, YearStats> = Default::default();
    for r in rows {
        let (Some(year), Some(s)) = (r.year, &r.stats) else {
            continue;
        };
        let e = by_year.entry(year).or_insert(YearStats {
            year,
            ..YearStats::default()
        });
        e.count += 1;
        e.brightness += s.brightness;
        e.dark_share += s.dark_share;
        e.saturation += s.saturation;
        e.colourfulness += s.colourfulness;
        e.grey_share += f32::from(u8::from(s.is_near_greyscale()));
        e.warm_share += s.warm_share();
        e.cool_share += s.cool_share();
    }
    by_year
        .into_values()
        .map(|mut e| {
            let n = e.count.max(1) as f32;
            e.brightness /= n;
            e.dark_share /= n;
            e.saturation /= n;
            e.colourfulness /= n;
            e.grey_share /= n;
            e.warm_share /= n;
            e.cool_share /= n;
            e
        })
        .collect()
}

/// Mean hue histogram (chromatic pixels, 30° bins from red) of the posters at `indices`.
pub fn hue_histogram(rows: &[MovieRow], indices: &[usize]) -> [f32; HUE_BINS] {
    let mut out = [0f32; HUE_BINS];
    let mut n = 0usize;
    for &i in indices {
        if let Some(s) = &rows[i].stats {
            for (o, v) in out.iter_mut().zip(s.hue_hist) {
                *o += v;
            }
            n += 1;
        }
    }
    if n > 0 {
        for o in &mut out {
            *o /= n as f32;
        }
    }
    out
}

/// Running pixel mean of posters resized to a fixed size: the "average poster".
#[derive(Debug, Clone)]
pub struct AveragePoster {
    width: u32,
    height: u32,
    sums: Vec<u64>,
    count: u64,
}

impl AveragePoster {
    /// An empty average of `width × height`.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            sums: vec![0; width as usize * height as usize * 3],
            count: 0,
        }
    }

    /// Adds a poster (resized to the average's size).
    pub fn add(&mut self, poster: &RgbImage) {
        let img = if poster.dimensions() == (self.width, self.height) {
            poster.clone()
        } else {
            crate::imaging::area_resize(poster, self.width, self.height)
        };
        for (s, &v) in self.sums.iter_mut().zip(img.as_raw()) {
            *s += u64::from(v);
        }
        self.count += 1;
    }

    /// Merges another average of the same size.
    pub fn merge(&mut self, other: &Self) {
        if (other.width, other.height) == (self.width, self.height) {
            for (a, b) in self.sums.iter_mut().zip(&other.sums) {
                *a += b;
            }
            self.count += other.count;
        }
    }

    /// Posters added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean image (black when empty).
    pub fn image(&self) -> RgbImage {
        let n = self.count.max(1);
        let px: Vec<u8> = self
            .sums
            .iter()
            .map(|&s| ((s + n / 2) / n).min(255) as u8)
            .collect();
        RgbImage::from_raw(self.width, self.height, px)
            .unwrap_or_else(|| RgbImage::new(self.width, self.height))
    }
}

/// The `k` dominant colours of `pixels` (k-means, deterministic start at luminance
/// quantiles), with their shares, most common first.
pub fn palette(pixels: &[[u8; 3]], k: usize) -> Vec<([u8; 3], f32)> {
    if pixels.is_empty() || k == 0 {
        return Vec::new();
    }
    let lum = |p: &[f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mut pts: Vec<[f32; 3]> = pixels
        .iter()
        .map(|p| [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])])
        .collect();
    pts.sort_by(|a, b| lum(a).total_cmp(&lum(b)));
    let k = k.min(pts.len());
    let mut centres: Vec<[f32; 3]> = (0..k)
        .map(|i| pts[(2 * i + 1) * pts.len() / (2 * k)])
        .collect();
    let mut assign = vec![0usize; pts.len()];
    for _ in 0..12 {
        for (a, p) in assign.iter_mut().zip(&pts) {
            *a = nearest(&centres, p);
        }
        let mut sums = vec![[0f32; 4]; k];
        for (&a, p) in assign.iter().zip(&pts) {
            for c in 0..3 {
                sums[a][c] += p[c];
            }
            sums[a][3] += 1.0;
        }
        for (c, s) in centres.iter_mut().zip(&sums) {
            if s[3] > 0.0 {
                *c = [s[0] / s[3], s[1] / s[3], s[2] / s[3]];
            }
        }
    }
    let mut counts = vec![0usize; k];
    for p in &pts {
        counts[nearest(&centres, p)] += 1;
    }
    let mut out: Vec<([u8; 3], f32)> = centres
        .iter()
        .zip(&counts)
        .filter(|(_, n)| **n > 0)
        .map(|(c, &n)| {
            (
                [c[0].round() as u8, c[1].round() as u8, c[2].round() as u8],
                n as f32 / pts.len() as f32,
            )
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

fn nearest(centres: &[[f32; 3]], p: &[f32; 3]) -> usize {
    centres
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let d: f32 = (0..3).map(|j| (c[j] - p[j]) * (c[j] - p[j])).sum();
            (i, d)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(i, _)| i)
}

/// Every `step`-th pixel of `img`, for palettes.
pub fn pixel_sample(img: &RgbImage, step: usize) -> Vec<[u8; 3]> {
    img.pixels().step_by(step.max(1)).map(|p| p.0).collect()
}

/// Projects feature vectors (rows of `dim` values) onto their two principal components
/// (power iteration on the centred data, deterministic start; never forms the
/// covariance, so 1280-d backbone features of 13k posters take about a second). Returns
/// one `[x, y]` per vector.
pub fn pca_2d(features: &[f32], dim: usize) -> Vec<[f32; 2]> {
    use rayon::prelude::*;
    if dim == 0 || features.len() < dim {
        return Vec::new();
    }
    let n = features.len() / dim;
    let mut mean = vec![0f64; dim];
    for row in features.chunks(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v) / n as f64;
        }
    }
    let centred: Vec<f32> = features
        .chunks(dim)
        .flat_map(|row| {
            row.iter()
                .zip(&mean)
                .map(|(&v, m)| (f64::from(v) - m) as f32)
        })
        .collect();
    // Cov · v = Xᵀ (X v) / n, in two passes over the data.
    let cov_times = |v: &[f64]| -> Vec<f64> {
        let proj: Vec<f64> = centred
            .par_chunks(dim)
            .map(|row| row.iter().zip(v).map(|(&x, &a)| f64::from(x) * a).sum())
            .collect();
        centred
            .par_chunks(dim)
            .zip(&proj)
            .fold(
                || vec![0f64; dim],
                |mut acc, (row, &p)| {
                    for (a, &x) in acc.iter_mut().zip(row) {
                        *a += f64::from(x) * p;
                    }
                    acc
                },
            )
            .reduce(
                || vec![0f64; dim],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    a
                },
            )
    };
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for a in 0..2 {
        let mut v: Vec<f64> = (0..dim)
            .map(|i| 1.0 + ((i * 7 + a * 3) % 5) as f64)
            .collect();
        for _ in 0..60 {
            let mut w = cov_times(&v);
            for prev in &axes {
                let d: f64 = w.iter().zip(prev).map(|(x, y)| x * y).sum();
                for (x, y) in w.iter_mut().zip(prev) {
                    *x -= d * y;
                }
            }
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm < 1e-12 {
                break;
            }
            v = w.into_iter().map(|x| x / norm).collect();
        }
        axes.push(v);
    }
    centred
        .chunks(dim)
        .map(|row| {
            let mut out = [0f32; 2];
            for (o, axis) in out.iter_mut().zip(&axes) {
                *o = row
                    .iter()
                    .zip(axis)
                    .map(|(&v, a)| f64::from(v) * a)
                    .sum::<f64>() as f32;
            }
            out
        })
        .collect()
}

/// Scales each row of `dim` values to unit length (rows of zeros stay zero), so that dot
/// products are cosine similarities.
pub fn normalise_rows(features: &mut [f32], dim: usize) {
    for row in features.chunks_mut(dim.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 1e-12 {
            for v in row {
                *v /= norm;
            }
        }
    }
}

/// The `k` rows most similar (cosine) to row `query` of unit-length rows, best first, as
/// `(row, similarity)`; the query itself is left out.
pub fn most_similar(unit_rows: &[f32], dim: usize, query: usize, k: usize) -> Vec<(usize, f32)> {
    use rayon::prelude::*;
    if dim == 0 || (query + 1) * dim > unit_rows.len() {
        return Vec::new();
    }
    let q = &unit_rows[query * dim..(query + 1) * dim];
    let mut scored: Vec<(usize, f32)> = unit_rows
        .par_chunks(dim)
        .enumerate()
        .filter(|(i, _)| *i != query)
        .map(|(i, row)| (i, row.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()))
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored
}

/// Colours for the columns of a comparison, in column order: pairwise distinct (no two
/// closer than a clear step in RGB), and all saturated, so none is mistaken for the grey
/// of the years no column covers. Used by the Compare tab's columns, plots and contact
/// sheets (the Map colours posters by year instead: [`year_colour`]).
pub const COLUMN_COLOURS: [[u8; 3]; 8] = [
    [230, 159, 0],  // orange
    [86, 180, 233], // sky blue
    [0, 158, 115],  // bluish green
    [200, 30, 60],  // crimson
    [150, 70, 210], // violet
    [240, 228, 66], // yellow
    [0, 80, 190],   // blue
    [120, 60, 10],  // brown
];

/// The colour of comparison column `slot` (see [`COLUMN_COLOURS`]).
pub fn column_colour(slot: usize) -> [u8; 3] {
    COLUMN_COLOURS[slot % COLUMN_COLOURS.len()]
}

/// A sequential colour scale (viridis: dark purple → blue → green → yellow, ordered in
/// lightness and readable by colour-blind people) at `t` in `0..=1`.
pub fn sequential_colour(t: f32) -> [u8; 3] {
    const VIRIDIS: [[f32; 3]; 9] = [
        [68.0, 1.0, 84.0],
        [71.0, 44.0, 122.0],
        [59.0, 81.0, 139.0],
        [44.0, 113.0, 142.0],
        [33.0, 144.0, 141.0],
        [39.0, 173.0, 129.0],
        [92.0, 200.0, 99.0],
        [170.0, 220.0, 50.0],
        [253.0, 231.0, 37.0],
    ];
    crate::imaging::colour_ramp(&VIRIDIS, t)
}

/// The colour of `year` on a sequential scale from `first` to `last` (so 1890s and 1990s
/// never share a colour, as they did when eras were coloured by position in a cycle).
pub fn year_colour(year: f32, first: i32, last: i32) -> [u8; 3] {
    let span = (last - first).max(1) as f32;
    sequential_colour((year - first as f32) / span)
}

/// The columns to compare after "Add column": `columns` (era indices) plus the first era
/// after the last one shown that is not shown yet (else the first not shown at all), in
/// chronological order. Unchanged when every era is shown.
pub fn add_column(columns: &[usize], eras: usize) -> Vec<usize> {
    let mut out = chronological(columns, eras);
    let after = out.last().map_or(0, |&c| c + 1);
    let next = (after..eras)
        .chain(0..after.min(eras))
        .find(|e| !out.contains(e));
    if let Some(e) = next {
        out.push(e);
        out.sort_unstable();
    }
    out
}

/// `columns` sorted chronologically (eras are in time order), without repeats or eras the
/// scheme lacks.
pub fn chronological(columns: &[usize], eras: usize) -> Vec<usize> {
    let mut out: Vec<usize> = columns.iter().copied().filter(|&c| c < eras).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether `p` lies inside the polygon `poly` (even-odd rule; a polygon of fewer than
/// three points holds nothing). Used by the Map's lasso.
pub fn inside_polygon(p: [f64; 2], poly: &[[f64; 2]]) -> bool {
    if poly.len() < 3 {
        return false;
    }
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            if p[0] < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// How far an estimated year is from the release year, in words: "1 year", "12 years".
pub fn years_apart(estimated: f64, released: i32) -> String {
    let n = (estimated - f64::from(released)).abs().round() as i64;
    if n == 1 {
        "1 year".to_owned()
    } else {
        format!("{n} years")
    }
}

/// A short label of a prediction for a poster tile: the predicted decade and how far the
/// predicted year is from the release year, e.g. `("≈1980s", Some("+7 y"))`.
pub fn prediction_badge(predicted: f32, released: Option<i32>) -> (String, Option<String>) {
    let decade = (predicted.round() as i32).div_euclid(10) * 10;
    let off = released.map(|y| {
        let d = (predicted - y as f32).round() as i32;
        if d == 0 {
            "exact".to_owned()
        } else {
            format!("{d:+} y")
        }
    });
    (format!("\u{2248}{decade}s"), off)
}

/// One column of a contact sheet.
#[derive(Debug, Clone)]
pub struct SheetColumn {
    /// Header colour (the era's colour).
    pub colour: [u8; 3],
    /// The average poster, if computed.
    pub average: Option<RgbImage>,
    /// Palette colours with shares.
    pub palette: Vec<([u8; 3], f32)>,
    /// Thumbnails of the sampled posters.
    pub thumbs: Vec<RgbImage>,
}

/// Composes columns side by side: a colour band, the average poster, the palette as a
/// proportional strip, then the sampled thumbnails in a grid of `per_row`.
pub fn contact_sheet(columns: &[SheetColumn], cell: (u32, u32), per_row: u32) -> RgbImage {
    let (cw, ch) = cell;
    let per_row = per_row.max(1);
    let gap = 6u32;
    let col_w = per_row * cw + (per_row - 1) * gap;
    let rows_of = |c: &SheetColumn| (c.thumbs.len() as u32).div_ceil(per_row);
    let avg_h = ch * 2;
    let max_rows = columns.iter().map(rows_of).max().unwrap_or(0);
    let height = 12 + gap + avg_h + gap + 16 + gap + max_rows * (ch + gap) + gap;
    let width = columns.len() as u32 * (col_w + 2 * gap) + gap;
    let mut sheet = RgbImage::from_pixel(width.max(1), height.max(1), Rgb([24, 24, 24]));
    for (i, col) in columns.iter().enumerate() {
        let x0 = gap + i as u32 * (col_w + 2 * gap);
        fill(&mut sheet, x0, 0, col_w, 12, col.colour);
        let mut y = 12 + gap;
        if let Some(avg) = &col.average {
            let aw = (avg_h * 2 / 3).min(col_w);
            let img = crate::imaging::area_resize(avg, aw, avg_h);
            blit(&mut sheet, &img, x0 + (col_w - aw) / 2, y);
        }
        y += avg_h + gap;
        let mut px = x0;
        for (c, share) in &col.palette {
            let w = ((*share * col_w as f32).round() as u32).min(x0 + col_w - px);
            fill(&mut sheet, px, y, w, 16, *c);
            px += w;
        }
        y += 16 + gap;
        for (j, t) in col.thumbs.iter().enumerate() {
            let (r, c) = (j as u32 / per_row, j as u32 % per_row);
            let img = if t.dimensions() == (cw, ch) {
                t.clone()
            } else {
                image::imageops::resize(t, cw, ch, image::imageops::FilterType::Triangle)
            };
            blit(&mut sheet, &img, x0 + c * (cw + gap), y + r * (ch + gap));
        }
    }
    sheet
}

fn fill(img: &mut RgbImage, x0: u32, y0: u32, w: u32, h: u32, c: [u8; 3]) {
    for y in y0..(y0 + h).min(img.height()) {
        for x in x0..(x0 + w).min(img.width()) {
            img.put_pixel(x, y, Rgb(c));
        }
    }
}

fn blit(dst: &mut RgbImage, src: &RgbImage, x0: u32, y0: u32) {
    for (x, y, p) in src.enumerate_pixels() {
        if x0 + x < dst.width() && y0 + y < dst.height() {
            dst.put_pixel(x0 + x, y0 + y, *p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eras::EraSchemes;
    use crate::imaging::ColourStats;

    fn rgb_distance(a: [u8; 3], b: [u8; 3]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (f32::from(*x) - f32::from(y)).powi(2))
            .sum::<f32>()
            .sqrt()
    }

    /// HSV saturation of a colour, 0 (grey) … 1.
    fn saturation(c: [u8; 3]) -> f32 {
        let max = f32::from(*c.iter().max().unwrap());
        let min = f32::from(*c.iter().min().unwrap());
        if max == 0.0 { 0.0 } else { (max - min) / max }
    }

    #[test]
    fn column_colours_are_distinct_and_not_grey() {
        for (i, a) in COLUMN_COLOURS.iter().enumerate() {
            assert!(saturation(*a) > 0.5, "colour {i} {a:?} is greyish");
            for (j, b) in COLUMN_COLOURS.iter().enumerate().skip(i + 1) {
                assert!(rgb_distance(*a, *b) > 80.0, "colours {i} and {j} too close");
            }
        }
        // The Compare tab's plot shows uncovered years in mid grey.
        let grey = [128, 128, 128];
        for c in COLUMN_COLOURS {
            assert!(rgb_distance(c, grey) > 90.0, "{c:?} too close to grey");
        }
    }

    #[test]
    fn year_colours_are_sequential() {
        // Lightness rises with the year, so decades a century apart never share a colour.
        let luma = |c: [u8; 3]| {
            0.299 * f32::from(c[0]) + 0.587 * f32::from(c[1]) + 0.114 * f32::from(c[2])
        };
        let mut last = -1.0;
        for year in (1890..=2030).step_by(5) {
            let l = luma(year_colour(year as f32, 1890, 2030));
            assert!(l > last, "{year}: lightness {l} after {last}");
            last = l;
        }
        assert!(
            rgb_distance(
                year_colour(1895.0, 1890, 2025),
                year_colour(1995.0, 1890, 2025)
            ) > 150.0
        );
        assert_eq!(sequential_colour(f32::NAN), sequential_colour(0.0));
        assert_eq!(sequential_colour(7.0), sequential_colour(1.0));
        assert_eq!(year_colour(2000.0, 2000, 2000), sequential_colour(0.0));
    }

    #[test]
    fn lasso_polygons_hold_what_they_surround() {
        let square = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]];
        assert!(inside_polygon([1.0, 1.0], &square));
        assert!(!inside_polygon([3.0, 1.0], &square));
        assert!(!inside_polygon([1.0, -0.5], &square));
        // A concave "C": the notch is outside.
        let c = [
            [0.0, 0.0],
            [3.0, 0.0],
            [3.0, 1.0],
            [1.0, 1.0],
            [1.0, 2.0],
            [3.0, 2.0],
            [3.0, 3.0],
            [0.0, 3.0],
        ];
        assert!(inside_polygon([0.5, 1.5], &c));
        assert!(!inside_polygon([2.0, 1.5], &c));
        assert!(!inside_polygon([1.0, 1.0], &[[0.0, 0.0], [2.0, 2.0]]));
    }

    #[test]
    fn years_apart_reads_as_english() {
        assert_eq!(years_apart(1976.4, 1975), "1 year");
        assert_eq!(years_apart(1975.2, 1975), "0 years");
        assert_eq!(years_apart(1960.0, 1972), "12 years");
    }

    #[test]
    fn prediction_badges_name_the_decade_and_the_error() {
        assert_eq!(
            prediction_badge(1984.4, Some(1977)),
            ("\u{2248}1980s".into(), Some("+7 y".into()))
        );
        assert_eq!(
            prediction_badge(1939.6, Some(1952)),
            ("\u{2248}1940s".into(), Some("-12 y".into()))
        );
        assert_eq!(
            prediction_badge(2001.2, Some(2001)),
            ("\u{2248}2000s".into(), Some("exact".into()))
        );
        assert_eq!(
            prediction_badge(1899.5, None),
            ("\u{2248}1900s".into(), None)
        );
    }

    #[test]
    fn added_columns_are_the_next_era_and_stay_chronological() {
        assert_eq!(add_column(&[], 8), vec![0]);
        assert_eq!(add_column(&[1, 4, 7], 8), vec![0, 1, 4, 7]);
        assert_eq!(add_column(&[4, 1], 8), vec![1, 4, 5]);
        assert_eq!(add_column(&[2, 3], 4), vec![0, 2, 3]);
        assert_eq!(add_column(&[0, 1, 2], 3), vec![0, 1, 2]);
        assert_eq!(add_column(&[5, 9], 6), vec![0, 5]);
        assert_eq!(chronological(&[6, 2, 2, 40], 8), vec![2, 6]);
    }

    fn row(id: i64, title: &str, year: Option<i32>, genres: &str, pop: f64) -> MovieRow {
        MovieRow {
            id,
            tmdb_id: None,
            title: title.into(),
            year,
            genres: genres.into(),
            popularity: Some(pop),
            poster_id: Some(id),
            poster_file: None,
            poster_sha256: None,
            status: Some(PosterStatus::Ok),
            reason: None,
            stats: None,
        }
    }

    fn explorer() -> Explorer {
        let mut rows = vec![
            row(1, "Casablanca", Some(1942), "Drama, Romance", 30.0),
            row(2, "Jaws", Some(1975), "Thriller", 50.0),
            row(
                3,
                "Star Wars",
                Some(1977),
                "Adventure, Science Fiction",
                90.0,
            ),
            row(
                4,
                "The Avengers",
                Some(2012),
                "Action, Science Fiction",
                99.0,
            ),
            row(5, "Undated", None, "Drama", 1.0),
        ];
        rows[1].status = Some(PosterStatus::Failed);
        Explorer::new(rows)
    }

    fn titles(e: &Explorer, idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| e.rows[i].title.clone()).collect()
    }

    #[test]
    fn filters_combine_and_sorts_order() {
        let e = explorer();
        let schemes = EraSchemes::builtin();
        let h = schemes.get("hollywood").unwrap_or_else(|e| panic!("{e}"));
        let none = HashMap::new();
        let all = Filter {
            status: None,
            ..Filter::default()
        };
        assert_eq!(e.select(h, &all, SortKey::Year, false, &none).len(), 5);
        // Default: posters that are ok only.
        let ok = e.select(h, &Filter::default(), SortKey::Year, false, &none);
        assert_eq!(
            titles(&e, &ok),
            ["Undated", "Casablanca", "Star Wars", "The Avengers"]
        );
        let f = Filter {
            era: Some(h.era_of(1977).name.clone()),
            ..Filter::default()
        };
        assert_eq!(
            titles(&e, &e.select(h, &f, SortKey::Year, false, &none)),
            ["Star Wars"]
        );
        let f = Filter {
            genre: Some("Science Fiction".into()),
            ..Filter::default()
        };
        assert_eq!(
            titles(&e, &e.select(h, &f, SortKey::Popularity, true, &none)),
            ["The Avengers", "Star Wars"]
        );
        let f = Filter {
            title: "  CASA ".into(),
            ..Filter::default()
        };
        assert_eq!(
            titles(&e, &e.select(h, &f, SortKey::Title, false, &none)),
            ["Casablanca"]
        );
        let f = Filter {
            decade: Some(1970),
            status: None,
            ..Filter::default()
        };
        assert_eq!(
            titles(&e, &e.select(h, &f, SortKey::Year, true, &none)),
            ["Star Wars", "Jaws"]
        );
        let f = Filter {
            years: Some((1940, 1980)),
            ..Filter::default()
        };
        assert_eq!(e.select(h, &f, SortKey::Year, false, &none).len(), 2);
        let errors: HashMap<i64, f32> = [(1, 30.0), (3, 2.0), (4, 10.0)].into_iter().collect();
        let by_err = e.select(h, &Filter::default(), SortKey::Error, true, &errors);
        assert_eq!(
            titles(&e, &by_err),
            ["Casablanca", "The Avengers", "Star Wars", "Undated"]
        );
        assert_eq!(
            e.genres,
            [
                "Action",
                "Adventure",
                "Drama",
                "Romance",
                "Science Fiction",
                "Thriller"
            ]
        );
        assert_eq!(e.year_range, Some((1942, 2012)));
    }

    #[test]
    fn samples_are_reproducible_and_stable() {
        let rows: Vec<MovieRow> = (0..200)
            .map(|i| row(i, &format!("m{i}"), Some(1950 + (i % 50) as i32), "", 0.0))
            .collect();
        let idx: Vec<usize> = (0..200).collect();
        let a = sample(&rows, &idx, 12, 7);
        assert_eq!(a.len(), 12);
        assert_eq!(a, sample(&rows, &idx, 12, 7));
        assert_ne!(a, sample(&rows, &idx, 12, 8));
        // Fewer candidates than asked: all of them.
        assert_eq!(sample(&rows, &idx[..5], 12, 7).len(), 5);
        // Year order.
        assert!(a.windows(2).all(|w| rows[w[0]].year <= rows[w[1]].year));
    }

    #[test]
    fn year_stats_average_per_year() {
        let stats = |b: f32, grey: bool| ColourStats {
            brightness: b,
            dark_share: 0.5,
            saturation: if grey { 0.0 } else { 0.5 },
            colourfulness: 10.0,
            hue_hist: [1.0 / HUE_BINS as f32; HUE_BINS],
            chromatic_share: if grey { 0.0 } else { 0.5 },
        };
        let mut rows = vec![
            row(1, "a", Some(1950), "", 0.0),
            row(2, "b", Some(1950), "", 0.0),
            row(3, "c", Some(2000), "", 0.0),
        ];
        rows[0].stats = Some(stats(0.2, true));
        rows[1].stats = Some(stats(0.4, false));
        rows[2].stats = Some(stats(0.9, false));
        let ys = year_stats(&rows);
        assert_eq!(ys.len(), 2);
        assert_eq!((ys[0].year, ys[0].count), (1950, 2));
        assert!((ys[0].brightness - 0.3).abs() < 1e-6);
        assert!((ys[0].grey_share - 0.5).abs() < 1e-6);
        assert!((ys[1].brightness - 0.9).abs() < 1e-6);
        let h = hue_histogram(&rows, &[0, 1, 2]);
        assert!((h.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn average_poster_and_palette() {
        let mut avg = AveragePoster::new(4, 6);
        avg.add(&RgbImage::from_pixel(8, 12, Rgb([200, 0, 0])));
        avg.add(&RgbImage::from_pixel(4, 6, Rgb([0, 0, 100])));
        let img = avg.image();
        assert_eq!(img.dimensions(), (4, 6));
        assert_eq!(img.get_pixel(2, 3).0, [100, 0, 50]);
        let mut px = vec![[250, 10, 10]; 300];
        px.extend(vec![[10, 10, 250]; 100]);
        let p = palette(&px, 2);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, [250, 10, 10]);
        assert!((p[0].1 - 0.75).abs() < 1e-6);
        assert_eq!(p[1].0, [10, 10, 250]);
    }

    #[test]
    fn most_similar_ranks_by_cosine_at_catalog_scale() {
        // 13,000 random 1280-d rows; row 7 is a scaled, slightly noisy copy of row 3.
        let dim = 1280;
        let mut state = 12345u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 1000) as f32 / 1000.0 - 0.5
        };
        let mut rows: Vec<f32> = (0..13_000 * dim).map(|_| next()).collect();
        for j in 0..dim {
            rows[7 * dim + j] = 3.0 * rows[3 * dim + j] + 0.01 * next();
        }
        normalise_rows(&mut rows, dim);
        let top = most_similar(&rows, dim, 3, 5);
        assert_eq!(top.len(), 5);
        assert_eq!(top[0].0, 7);
        assert!(top[0].1 > 0.99);
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(top.iter().all(|(i, _)| *i != 3));
        // Its speed on 13,000 posters is measured by the gallery benchmark, not asserted.
    }

    #[test]
    fn pca_finds_the_spread_axis() {
        // Points along (1, 1, 0) with small noise on the third axis.
        let mut f = Vec::new();
        for i in 0..50 {
            let t = i as f32 - 25.0;
            f.extend([t, t, ((i * 7) % 3) as f32 * 0.01]);
        }
        let p = pca_2d(&f, 3);
        assert_eq!(p.len(), 50);
        // The first coordinate is monotone along the line and spans about 2·25·√2.
        let xs: Vec<f32> = p.iter().map(|q| q[0]).collect();
        let span = xs.iter().copied().fold(f32::MIN, f32::max)
            - xs.iter().copied().fold(f32::MAX, f32::min);
        assert!((span - 49.0 * 2f32.sqrt()).abs() < 0.5, "{span}");
        assert!(p.iter().all(|q| q[1].abs() < 0.1));
    }

    #[test]
    fn contact_sheet_lays_out_columns() {
        let col = |c: [u8; 3], n: usize| SheetColumn {
            colour: c,
            average: Some(RgbImage::from_pixel(10, 15, Rgb(c))),
            palette: vec![(c, 1.0)],
            thumbs: vec![RgbImage::from_pixel(20, 30, Rgb(c)); n],
        };
        let sheet = contact_sheet(&[col([255, 0, 0], 5), col([0, 0, 255], 2)], (20, 30), 3);
        // Two columns of 3 cells (20 px) with 6 px gaps, plus margins.
        assert_eq!(sheet.width(), 2 * (3 * 20 + 2 * 6 + 12) + 6);
        assert_eq!(sheet.get_pixel(6, 0).0, [255, 0, 0]);
        let second_x = 6 + (3 * 20 + 2 * 6 + 12);
        assert_eq!(sheet.get_pixel(second_x, 0).0, [0, 0, 255]);
    }
}
