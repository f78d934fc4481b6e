//! The model's pass over the catalog: each poster's estimated year, bin probabilities and
//! embedding (projected to 2-D for the map), stored per model so that a later pass, the
//! Gallery and `export` read them back. The window's Gallery and `movie-eras predict`
//! both run [`predict_catalog`]; [`poster_detail`] is one poster's prediction with its
//! Grad-CAM overlay for the details panel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::{RgbImage, RgbaImage};
use rayon::prelude::*;

use super::YearBins;
use super::features::{self, FeatureCache, PosterFeatures};
use super::inference::{EraModel, Prediction};
use super::saliency::{self, OverlayMode, SaliencyMethod, SaliencySettings};
use super::training::head_probs;
use super::{ModelError, Result};
use crate::catalog::{Catalog, MovieRow, PosterStatus, StoredPrediction};
use crate::eras::EraScheme;
use crate::imaging::{self, ImageLimits};
use crate::jobs::{Control, Progress};
use crate::paths::DataDir;

/// Posters per batch of the pass.
pub const BATCH: usize = 64;

/// A poster to analyse.
#[derive(Debug, Clone)]
pub struct PosterRef {
    /// Movie id.
    pub movie_id: i64,
    /// Poster id (for the thumbnail).
    pub poster_id: i64,
    /// Poster file (when the catalog has no thumbnail).
    pub file: Option<PathBuf>,
    /// The poster's SHA-256 (the key of cached backbone features).
    pub sha256: Option<String>,
}

/// The whole-catalog pass.
#[derive(Debug, Clone, Default)]
pub struct CatalogAnalysis {
    /// Movie id → index into the vectors below.
    pub index: HashMap<i64, usize>,
    /// Movie ids.
    pub movie_ids: Vec<i64>,
    /// Expected year per poster.
    pub years: Vec<f32>,
    /// Bin probabilities per poster.
    pub probs: Vec<Vec<f32>>,
    /// 2-D position (first two principal components of the embeddings).
    pub coords: Vec<[f32; 2]>,
    /// Embeddings (the model's pooled features: the backbone's, for a pretrained model),
    /// scaled to unit length, `dim` values per poster.
    pub embeddings: Vec<f32>,
    /// Values per embedding.
    pub dim: usize,
    /// The model's year bins.
    pub bins: YearBins,
    /// Posters predicted on this pass (the others were read back from the catalog).
    pub computed: usize,
    /// The model's fingerprint.
    pub model: String,
}

impl CatalogAnalysis {
    /// Movies whose posters look most like `movie_id`'s (cosine similarity of
    /// embeddings), best first: `(movie id, similarity)`.
    pub fn more_like(&self, movie_id: i64, k: usize) -> Vec<(i64, f32)> {
        let Some(&i) = self.index.get(&movie_id) else {
            return Vec::new();
        };
        crate::explore::most_similar(&self.embeddings, self.dim, i, k)
            .into_iter()
            .map(|(j, s)| (self.movie_ids[j], s))
            .collect()
    }
}

/// The posters a pass covers: every movie whose poster is ok, its file resolved against
/// the data directory.
pub fn catalog_posters(rows: &[MovieRow], data_dir: &DataDir) -> Vec<PosterRef> {
    rows.iter()
        .filter(|r| r.status == Some(PosterStatus::Ok))
        .filter_map(|r| {
            Some(PosterRef {
                movie_id: r.id,
                poster_id: r.poster_id?,
                file: r.poster_file.as_deref().map(|f| data_dir.poster_path(f)),
                sha256: r.poster_sha256.clone(),
            })
        })
        .collect()
}

/// Progress of a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassProgress {
    /// Posters done.
    pub done: usize,
    /// Posters in all.
    pub total: usize,
}

fn model_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Inference(e.to_string())
}

/// Predicts every poster (from its file or thumbnail), [`BATCH`] at a time: predictions
/// this model stored on an earlier pass are read back, new ones are stored. Calls
/// `between_batches` before each batch (the window answers detail requests there);
/// `Ok(None)` when cancelled.
pub fn predict_catalog(
    model: &EraModel,
    catalog_path: &Path,
    posters: &[PosterRef],
    control: &Control,
    progress: &Progress<PassProgress>,
    between_batches: &mut dyn FnMut(),
) -> Result<Option<CatalogAnalysis>> {
    let mut catalog = Catalog::open(catalog_path)?;
    let mut out = CatalogAnalysis {
        bins: model.config.bins,
        model: model.fingerprint.clone(),
        ..CatalogAnalysis::default()
    };
    let mut embeddings: Vec<f32> = Vec::new();
    let mut dim = 0;
    // A frozen pretrained backbone: features come from (and go to) the data directory's
    // feature cache, computed from the full poster, so later passes only run the head.
    let mut features = model
        .uses_cached_features()
        .then(|| FeatureCache::open(&catalog_path.with_file_name(crate::paths::FEATURES_FILE)).ok())
        .flatten();
    for (n, chunk) in posters.chunks(BATCH).enumerate() {
        if control.is_cancelled() {
            return Ok(None);
        }
        between_batches();
        // Predictions this model made on an earlier pass are read back, not recomputed.
        let shas: Vec<&str> = chunk.iter().filter_map(|p| p.sha256.as_deref()).collect();
        let mut stored = if model.fingerprint.is_empty() {
            HashMap::new()
        } else {
            catalog
                .predictions(&model.fingerprint, &shas)
                .unwrap_or_default()
        };
        let mut scored: Vec<Scored> = Vec::with_capacity(chunk.len());
        let mut missing: Vec<PosterRef> = Vec::new();
        for p in chunk {
            match p.sha256.as_ref().and_then(|sha| stored.remove(sha)) {
                Some(hit) => scored.push((p.movie_id, hit.probs, hit.embedding)),
                None => missing.push(p.clone()),
            }
        }
        let fresh = if missing.is_empty() {
            Ok(Vec::new())
        } else if let Some(cache) = &mut features {
            backbone_batch(model, cache, &catalog, &missing)
        } else {
            thumbnail_batch(model, &catalog, &missing)
        };
        let fresh = fresh?;
        out.computed += fresh.len();
        if !model.fingerprint.is_empty() {
            let sha_of: HashMap<i64, &String> = missing
                .iter()
                .filter_map(|p| p.sha256.as_ref().map(|s| (p.movie_id, s)))
                .collect();
            let to_store: Vec<(String, StoredPrediction)> = fresh
                .iter()
                .filter_map(|(id, probs, emb)| {
                    sha_of.get(id).map(|sha| {
                        (
                            (*sha).clone(),
                            StoredPrediction {
                                probs: probs.clone(),
                                embedding: emb.clone(),
                            },
                        )
                    })
                })
                .collect();
            // A store that cannot be written (a read-only data directory) only costs
            // time on the next pass.
            if let Err(e) = catalog.store_predictions(&model.fingerprint, &to_store) {
                log::warn!("{e}");
            }
        }
        scored.extend(fresh);
        for (id, probs, emb) in scored {
            out.index.insert(id, out.movie_ids.len());
            out.movie_ids.push(id);
            out.years
                .push(model.config.bins.estimated_year(&probs) as f32);
            out.probs.push(probs);
            dim = emb.len();
            embeddings.extend(emb);
        }
        progress.report(PassProgress {
            done: ((n + 1) * BATCH).min(posters.len()),
            total: posters.len(),
        });
    }
    out.coords = crate::explore::pca_2d(&embeddings, dim);
    crate::explore::normalise_rows(&mut embeddings, dim);
    out.embeddings = embeddings;
    out.dim = dim;
    Ok(Some(out))
}

/// A poster's movie id, bin probabilities and embedding.
type Scored = (i64, Vec<f32>, Vec<f32>);

/// Predictions and embeddings of a batch from the catalog's thumbnails (the network
/// runs on pixels).
fn thumbnail_batch(
    model: &EraModel,
    catalog: &Catalog,
    chunk: &[PosterRef],
) -> Result<Vec<Scored>> {
    let jpegs: Vec<(&PosterRef, Option<Vec<u8>>)> = chunk
        .iter()
        .map(|p| (p, catalog.thumbnail(p.poster_id).ok().flatten()))
        .collect();
    let decoded: Vec<(i64, RgbImage)> = jpegs
        .into_par_iter()
        .filter_map(|(p, j)| {
            let rgb = imaging::decode_thumbnail(j.as_deref(), p.file.as_deref())?;
            Some((p.movie_id, rgb))
        })
        .collect();
    let imgs: Vec<RgbImage> = decoded.iter().map(|(_, i)| i.clone()).collect();
    let results = model.probs_and_embeddings(&imgs).map_err(model_err)?;
    Ok(decoded
        .iter()
        .zip(results)
        .map(|((id, _), (probs, emb))| (*id, probs, emb))
        .collect())
}

/// Predictions and embeddings (plain backbone features) of a batch through the feature
/// cache: `(movie id, bin probabilities, embedding)`.
fn backbone_batch(
    model: &EraModel,
    cache: &mut FeatureCache,
    catalog: &Catalog,
    chunk: &[PosterRef],
) -> Result<Vec<Scored>> {
    let key = features::cache_key(&model.config.network)
        .ok_or_else(|| ModelError::Data("the model has no backbone".into()))?;
    let mut found: Vec<(i64, PosterFeatures)> = Vec::with_capacity(chunk.len());
    let mut missing: Vec<&PosterRef> = Vec::new();
    for p in chunk {
        match p.sha256.as_deref().map(|sha| cache.get(&key, sha)) {
            Some(Ok(Some(f))) => found.push((p.movie_id, f)),
            _ => missing.push(p),
        }
    }
    let limits = ImageLimits::default();
    // The poster file; else the catalog's thumbnail (then not cached: features of the
    // small copy are not those of the poster).
    let thumbs: Vec<Option<Vec<u8>>> = missing
        .iter()
        .map(|p| catalog.thumbnail(p.poster_id).ok().flatten())
        .collect();
    let decoded: Vec<(&PosterRef, RgbImage, bool)> = missing
        .into_par_iter()
        .zip(thumbs)
        .filter_map(|(p, thumb)| {
            let full = p
                .file
                .as_deref()
                .and_then(|f| imaging::decode_poster_file(f, &limits).ok())
                .map(|d| d.rgb);
            match full {
                Some(rgb) => Some((p, rgb, true)),
                None => {
                    imaging::decode_thumbnail(thumb.as_deref(), None).map(|rgb| (p, rgb, false))
                }
            }
        })
        .collect();
    if !decoded.is_empty() {
        let imgs: Vec<RgbImage> = decoded.iter().map(|(_, i, _)| i.clone()).collect();
        let feats = features::extract(
            &model.net,
            &model.config.network,
            &model.config.normalisation,
            &imgs,
            &model.device,
        )
        .map_err(model_err)?;
        let mut store = Vec::new();
        for ((p, _, from_file), f) in decoded.iter().zip(feats) {
            if let Some(sha) = p.sha256.as_ref().filter(|_| *from_file) {
                store.push((sha.clone(), f.clone()));
            }
            found.push((p.movie_id, f));
        }
        // A cache that cannot be written only costs time on the next pass.
        if let Err(e) = cache.put_many(&key, &store) {
            log::warn!("{e}");
        }
    }
    let found: Vec<(i64, PosterFeatures)> = found
        .into_iter()
        .map(|(id, f)| (id, features::head_input(&model.config.network, f)))
        .collect();
    let refs: Vec<&PosterFeatures> = found.iter().map(|(_, f)| f).collect();
    let probs = model
        .config
        .corrected(head_probs(&model.net.head(), &refs, &model.device).map_err(model_err)?);
    Ok(found
        .iter()
        .zip(probs)
        .map(|((id, f), p)| (*id, p, f.plain.clone()))
        .collect())
}

/// One poster's prediction for the details panel, at most `max_w`×`max_h`.
#[derive(Debug, Clone)]
pub struct PosterDetail {
    /// The model's answer in the scheme asked for.
    pub prediction: Prediction,
    /// The poster as shown.
    pub shown: RgbImage,
    /// Its Grad-CAM heat map blended over it.
    pub overlay: RgbaImage,
}

/// One poster's prediction and Grad-CAM overlay (shown at most `max_w`×`max_h`).
pub fn poster_detail(
    model: &EraModel,
    file: &Path,
    scheme: &EraScheme,
    max_w: u32,
    max_h: u32,
) -> Result<PosterDetail> {
    let decoded = imaging::decode_poster_file(file, &ImageLimits::default())?;
    let prediction = model.predict(&decoded.rgb, scheme)?;
    let shown = imaging::fit_within(&decoded.rgb, max_w, max_h);
    let settings = SaliencySettings::default().with_method(SaliencyMethod::GradCam);
    let map = saliency::saliency_at(
        model,
        &decoded.rgb,
        scheme,
        prediction.best_era,
        &settings,
        shown.width(),
        shown.height(),
    )?;
    let overlay = saliency::render_overlay(&shown, &map, OverlayMode::Heatmap, 0.55);
    Ok(PosterDetail {
        prediction,
        shown,
        overlay,
    })
}
