//! The model's view of the catalog, computed on a worker thread: the predicted year of
//! every poster (from its thumbnail) and its embedding, projected to 2-D for the map;
//! and, on request, one poster's full prediction with a Grad-CAM overlay for the details
//! panel. The worker loads the chosen model (the shipped one unless another is picked)
//! once and answers detail requests between batches, so details never wait for the
//! whole pass.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use eframe::egui;
use rayon::prelude::*;

use crate::catalog::{Catalog, StoredPrediction};
use crate::eras::EraScheme;
use crate::imaging::{self, ImageLimits};
use crate::model::YearBins;
use crate::model::backend::{self, BackendChoice};
use crate::model::features::{self, FeatureCache, PosterFeatures};
use crate::model::inference::{EraModel, Prediction};
use crate::model::saliency::{self, OverlayMode, SaliencyMethod, SaliencySettings};
use crate::model::training::head_probs;

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

/// A poster's details as the model sees it.
pub struct Detail {
    /// Movie id.
    pub movie_id: i64,
    /// Prediction for the scheme asked for, the poster and its Grad-CAM overlay.
    pub result: Result<(Prediction, egui::ColorImage, egui::ColorImage), String>,
}

enum Request {
    Pass(Vec<PosterRef>),
    Detail(i64, PathBuf, EraScheme),
}

/// What the worker reports.
enum Event {
    Progress(usize, usize),
    Done(Arc<CatalogAnalysis>),
    Failed(String),
    Detail(Detail),
}

/// Handle to the worker.
pub struct Analysis {
    requests: Sender<Request>,
    events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    /// Progress of the pass: `(done, total)`.
    pub progress: Option<(usize, usize)>,
    /// The finished pass.
    pub result: Option<Arc<CatalogAnalysis>>,
    /// Why the pass or the model failed.
    pub error: Option<String>,
    started: bool,
}

impl Analysis {
    /// Starts the worker (it loads the model on its first request).
    pub fn new(catalog_path: PathBuf, model_dir: Option<PathBuf>, ctx: &egui::Context) -> Self {
        let (req_tx, req_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = cancel.clone();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("analysis".into())
            .spawn(move || {
                // A panic (a bug) ends the worker with a message the view shows.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker(
                        &catalog_path,
                        model_dir.as_deref(),
                        &req_rx,
                        &ev_tx,
                        &stop,
                        &ctx,
                    );
                }));
                if let Err(panic) = run {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    let _ = ev_tx.send(Event::Failed(format!(
                        "the model stopped on an internal error: {what}"
                    )));
                    ctx.request_repaint();
                }
            });
        Self {
            requests: req_tx,
            events: ev_rx,
            cancel,
            progress: None,
            result: None,
            error: spawned
                .err()
                .map(|e| format!("cannot start the model's worker thread: {e}")),
            started: false,
        }
    }

    /// Starts the whole-catalog pass once.
    pub fn start_pass(&mut self, posters: Vec<PosterRef>) {
        if self.started {
            return;
        }
        self.started = true;
        self.progress = Some((0, posters.len()));
        let _ = self.requests.send(Request::Pass(posters));
    }

    /// Whether the pass was started.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Asks for one poster's details.
    pub fn request_detail(&self, movie_id: i64, file: PathBuf, scheme: EraScheme) {
        let _ = self.requests.send(Request::Detail(movie_id, file, scheme));
    }

    /// Takes in reports; returns finished details.
    pub fn poll(&mut self) -> Vec<Detail> {
        let mut details = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(Event::Progress(done, total)) => self.progress = Some((done, total)),
                Ok(Event::Done(r)) => {
                    self.progress = None;
                    self.result = Some(r);
                }
                Ok(Event::Failed(e)) => {
                    self.progress = None;
                    self.error = Some(e);
                }
                Ok(Event::Detail(d)) => details.push(d),
                Err(TryRecvError::Empty) => break,
                // The worker is gone while this view still waits on it: say so instead of
                // showing "predicting…" for ever.
                Err(TryRecvError::Disconnected) => {
                    self.progress = None;
                    if self.error.is_none() {
                        self.error = Some("the model's worker stopped unexpectedly".into());
                    }
                    break;
                }
            }
        }
        details
    }
}

impl Drop for Analysis {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

fn load_model(dir: Option<PathBuf>) -> Result<EraModel, String> {
    let dir = dir
        .or_else(crate::model::default_model_dir)
        .ok_or_else(|| "no model found (resources/model is missing)".to_owned())?;
    let chosen = backend::choose(BackendChoice::Cpu).map_err(|e| e.to_string())?;
    EraModel::load(&dir, &chosen.device).map_err(|e| e.to_string())
}

fn worker(
    catalog_path: &std::path::Path,
    model_dir: Option<&std::path::Path>,
    requests: &Receiver<Request>,
    events: &Sender<Event>,
    cancel: &AtomicBool,
    ctx: &egui::Context,
) {
    let mut model: Option<Result<EraModel, String>> = None;
    let mut pending_pass: Option<Vec<PosterRef>> = None;
    loop {
        // Details first; then the pass, a batch at a time.
        let request = if pending_pass.is_some() {
            match requests.try_recv() {
                Ok(r) => Some(r),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match requests.recv() {
                Ok(r) => Some(r),
                Err(_) => return,
            }
        };
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        let m =
            model.get_or_insert_with(|| load_model(model_dir.map(std::path::Path::to_path_buf)));
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                let e = e.clone();
                match request {
                    Some(Request::Detail(id, ..)) => {
                        let _ = events.send(Event::Detail(Detail {
                            movie_id: id,
                            result: Err(e),
                        }));
                    }
                    _ => {
                        pending_pass = None;
                        let _ = events.send(Event::Failed(e));
                    }
                }
                ctx.request_repaint();
                continue;
            }
        };
        match request {
            Some(Request::Detail(id, file, scheme)) => {
                let _ = events.send(Event::Detail(Detail {
                    movie_id: id,
                    result: detail(m, &file, &scheme),
                }));
                ctx.request_repaint();
            }
            Some(Request::Pass(posters)) => pending_pass = Some(posters),
            None => {}
        }
        if let Some(posters) = pending_pass.take() {
            match run_pass(m, catalog_path, &posters, requests, events, cancel, ctx) {
                PassOutcome::Done(r) => {
                    let _ = events.send(Event::Done(Arc::new(r)));
                }
                PassOutcome::Failed(e) => {
                    let _ = events.send(Event::Failed(e));
                }
                PassOutcome::Cancelled => return,
            }
            ctx.request_repaint();
        }
    }
}

enum PassOutcome {
    Done(CatalogAnalysis),
    Failed(String),
    Cancelled,
}

/// Predicts every poster from its thumbnail, 64 at a time, answering detail requests
/// between batches.
fn run_pass(
    model: &EraModel,
    catalog_path: &std::path::Path,
    posters: &[PosterRef],
    requests: &Receiver<Request>,
    events: &Sender<Event>,
    cancel: &AtomicBool,
    ctx: &egui::Context,
) -> PassOutcome {
    let mut catalog = match Catalog::open(catalog_path) {
        Ok(c) => c,
        Err(e) => return PassOutcome::Failed(e.to_string()),
    };
    let mut out = CatalogAnalysis {
        bins: model.config.bins,
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
    for (n, chunk) in posters.chunks(64).enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return PassOutcome::Cancelled;
        }
        while let Ok(Request::Detail(id, file, scheme)) = requests.try_recv() {
            let _ = events.send(Event::Detail(Detail {
                movie_id: id,
                result: detail(model, &file, &scheme),
            }));
        }
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
        let fresh = match fresh {
            Ok(f) => f,
            Err(e) => return PassOutcome::Failed(e),
        };
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
        let _ = events.send(Event::Progress(
            ((n + 1) * 64).min(posters.len()),
            posters.len(),
        ));
        ctx.request_repaint();
    }
    out.coords = crate::explore::pca_2d(&embeddings, dim);
    crate::explore::normalise_rows(&mut embeddings, dim);
    out.embeddings = embeddings;
    out.dim = dim;
    PassOutcome::Done(out)
}

/// A poster's movie id, bin probabilities and embedding.
type Scored = (i64, Vec<f32>, Vec<f32>);

/// Predictions and embeddings of a batch from the catalog's thumbnails (the network
/// runs on pixels).
fn thumbnail_batch(
    model: &EraModel,
    catalog: &Catalog,
    chunk: &[PosterRef],
) -> Result<Vec<Scored>, String> {
    let jpegs: Vec<(&PosterRef, Option<Vec<u8>>)> = chunk
        .iter()
        .map(|p| (p, catalog.thumbnail(p.poster_id).ok().flatten()))
        .collect();
    let decoded: Vec<(i64, image::RgbImage)> = jpegs
        .into_par_iter()
        .filter_map(|(p, j)| {
            let rgb = super::thumbs::decode_thumbnail(j.as_deref(), p.file.as_deref())?;
            Some((p.movie_id, rgb))
        })
        .collect();
    let imgs: Vec<image::RgbImage> = decoded.iter().map(|(_, i)| i.clone()).collect();
    let results = model
        .probs_and_embeddings(&imgs)
        .map_err(|e| e.to_string())?;
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
) -> Result<Vec<Scored>, String> {
    let key = features::cache_key(&model.config.network)
        .ok_or_else(|| "the model has no backbone".to_owned())?;
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
    let decoded: Vec<(&PosterRef, image::RgbImage, bool)> = missing
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
                None => super::thumbs::decode_thumbnail(thumb.as_deref(), None)
                    .map(|rgb| (p, rgb, false)),
            }
        })
        .collect();
    if !decoded.is_empty() {
        let imgs: Vec<image::RgbImage> = decoded.iter().map(|(_, i, _)| i.clone()).collect();
        let feats = features::extract(
            &model.net,
            &model.config.network,
            &model.config.normalisation,
            &imgs,
            &model.device,
        )
        .map_err(|e| e.to_string())?;
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
    let probs = head_probs(&model.net.head(), &refs, &model.device).map_err(|e| e.to_string())?;
    Ok(found
        .iter()
        .zip(probs)
        .map(|((id, f), p)| (*id, p, f.plain.clone()))
        .collect())
}

/// One poster's prediction and Grad-CAM overlay (shown at most 240×360).
fn detail(
    model: &EraModel,
    file: &std::path::Path,
    scheme: &EraScheme,
) -> Result<(Prediction, egui::ColorImage, egui::ColorImage), String> {
    let decoded =
        imaging::decode_poster_file(file, &ImageLimits::default()).map_err(|e| e.to_string())?;
    let prediction = model
        .predict(&decoded.rgb, scheme)
        .map_err(|e| e.to_string())?;
    let shown = imaging::fit_within(&decoded.rgb, 240, 360);
    let settings = SaliencySettings::default().with_method(SaliencyMethod::GradCam);
    let map = saliency::saliency_at(
        model,
        &decoded.rgb,
        scheme,
        prediction.best_era,
        &settings,
        shown.width(),
        shown.height(),
    )
    .map_err(|e| e.to_string())?;
    let overlay = saliency::render_overlay(&shown, &map, OverlayMode::Heatmap, 0.55);
    let size = [shown.width() as usize, shown.height() as usize];
    Ok((
        prediction,
        egui::ColorImage::from_rgb(size, shown.as_raw()),
        egui::ColorImage::from_rgba_unmultiplied(size, overlay.as_raw()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_goes_away_mid_pass_ends_the_wait_with_an_error() {
        let (req_tx, _req_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let mut a = Analysis {
            requests: req_tx,
            events: ev_rx,
            cancel: Arc::new(AtomicBool::new(false)),
            progress: None,
            result: None,
            error: None,
            started: false,
        };
        a.start_pass(Vec::new());
        ev_tx.send(Event::Progress(3, 10)).unwrap();
        assert!(a.poll().is_empty());
        assert_eq!(a.progress, Some((3, 10)));
        assert!(a.error.is_none());
        // The worker dies (a panic past the guard, a thread that returned early).
        drop(ev_tx);
        a.poll();
        assert_eq!(a.progress, None);
        assert!(
            a.error
                .as_deref()
                .unwrap_or("")
                .contains("stopped unexpectedly"),
            "{:?}",
            a.error
        );
        // A failure the worker reported is kept, not replaced.
        let (ev_tx, ev_rx) = mpsc::channel();
        a.events = ev_rx;
        a.error = None;
        ev_tx.send(Event::Failed("no model".into())).unwrap();
        drop(ev_tx);
        a.poll();
        assert_eq!(a.error.as_deref(), Some("no model"));
    }
}
