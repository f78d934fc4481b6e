//! What the Compare tab and its exports compute from many posters at once: an era's
//! average poster and palette, and the contact sheet of a comparison, read from the
//! catalog's thumbnails or the poster files (on a worker, never the UI thread).

use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;

use super::{AveragePoster, SheetColumn};
use crate::catalog::Catalog;
use crate::imaging;

/// What a contact-sheet column is made of: the era, its average and palette, and the
/// posters to show.
pub type SheetSource = (
    usize,
    Option<RgbImage>,
    Vec<([u8; 3], f32)>,
    Vec<PosterSource>,
);

/// A poster's id (for its catalog thumbnail) and its file (when there is no thumbnail).
pub type PosterSource = (i64, Option<PathBuf>);

/// The average poster and palette of one era.
#[derive(Debug, Clone)]
pub struct EraLook {
    /// The pixel mean of the era's posters (96×144).
    pub average: RgbImage,
    /// Six colours with their shares.
    pub palette: Vec<([u8; 3], f32)>,
    /// Posters averaged.
    pub count: u64,
}

/// A poster's thumbnail from the catalog, else from its file.
fn read_thumbnail(catalog: &Catalog, poster_id: i64, file: Option<&Path>) -> Option<RgbImage> {
    let jpeg = catalog.thumbnail(poster_id).ok().flatten();
    imaging::decode_thumbnail(jpeg.as_deref(), file)
}

/// Writes a contact sheet: per column its era colour, average, palette and thumbnails.
pub fn write_contact_sheet(
    catalog_path: &Path,
    columns: Vec<SheetSource>,
    out: &Path,
) -> Result<(), String> {
    let catalog = Catalog::open(catalog_path).map_err(|e| e.to_string())?;
    let sheet_columns: Vec<SheetColumn> = columns
        .into_iter()
        .enumerate()
        .map(|(slot, (_era, average, palette, ids))| SheetColumn {
            colour: super::column_colour(slot),
            average,
            palette,
            thumbs: ids
                .iter()
                .filter_map(|(id, f)| read_thumbnail(&catalog, *id, f.as_deref()))
                .collect(),
        })
        .collect();
    let sheet = super::contact_sheet(&sheet_columns, (96, 144), 4);
    let png = imaging::encode_png(&sheet).map_err(|e| e.to_string())?;
    crate::fsutil::write_atomic(out, &png).map_err(|e| e.to_string())
}

/// Average poster (96×144) and 6-colour palette of these posters, from their thumbnails
/// (`None` when none can be read).
pub fn era_look(catalog: &Catalog, posters: &[PosterSource]) -> Option<EraLook> {
    // Thumbnails are read on this thread (one connection), decoded in parallel.
    let sources: Vec<(Option<Vec<u8>>, Option<PathBuf>)> = posters
        .iter()
        .map(|(id, f)| (catalog.thumbnail(*id).ok().flatten(), f.clone()))
        .collect();
    let (avg, pixels) = sources
        .par_iter()
        .fold(
            || (AveragePoster::new(96, 144), Vec::new()),
            |(mut avg, mut px), (jpeg, file)| {
                if let Some(img) = imaging::decode_thumbnail(jpeg.as_deref(), file.as_deref()) {
                    avg.add(&img);
                    if px.len() < 40_000 {
                        px.extend(super::pixel_sample(&img, 97));
                    }
                }
                (avg, px)
            },
        )
        .reduce(
            || (AveragePoster::new(96, 144), Vec::new()),
            |(mut a, mut pa), (b, pb)| {
                a.merge(&b);
                pa.extend(pb);
                (a, pa)
            },
        );
    (avg.count() > 0).then(|| EraLook {
        average: avg.image(),
        palette: super::palette(&pixels, 6),
        count: avg.count(),
    })
}
