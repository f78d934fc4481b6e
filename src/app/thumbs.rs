//! Poster thumbnails for the gallery and compare views: loaded lazily off the UI thread
//! from the catalog's thumbnail table (or the poster file when a row has none), kept in a
//! bounded texture cache (least recently used out first; bounded in count and in
//! texture memory, since thumbnails of large scans are bigger than TMDB's w154 posters).
//!
//! Each frame the views ask for what they show; what is missing goes into a "wanted"
//! list that replaces the previous frame's, so scrolling fast never builds a backlog of
//! posters that are no longer on screen.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use eframe::egui;
use image::RgbImage;

use crate::catalog::Catalog;
use crate::jobs::JobHandle;

/// What to load: a poster id and the file to fall back on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Want {
    poster_id: i64,
    file: Option<PathBuf>,
}

#[derive(Default)]
struct Shared {
    wanted: Vec<Want>,
    stop: bool,
}

pub use crate::imaging::{ThumbError, decode_thumbnail, thumbnail_or_reason};

/// A poster id and its thumbnail, or why there is none.
type Loaded = (i64, Result<egui::ColorImage, ThumbError>);

/// The thumbnail cache and its loader.
pub struct Thumbnails {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    loader: Option<JobHandle<(), Loaded>>,
    /// Why thumbnails cannot load (the loader could not start or stopped).
    loader_error: Option<String>,
    /// Posters whose file is missing, and the first such file by path (kept as failures
    /// come in, so that the per-frame line costs nothing).
    missing: (usize, Option<PathBuf>),
    textures: HashMap<i64, (egui::TextureHandle, u64)>,
    failed: HashMap<i64, ThumbError>,
    in_flight: std::collections::HashSet<i64>,
    frame_wants: Vec<Want>,
    capacity: usize,
    /// Bytes of texture memory held, and the most to hold.
    bytes: usize,
    max_bytes: usize,
    clock: u64,
}

/// Texture memory the cache may hold (RGBA): 1,500 w154 posters take about 210 MB.
const MAX_TEXTURE_BYTES: usize = 256 << 20;

fn texture_bytes(tex: &egui::TextureHandle) -> usize {
    let [w, h] = tex.size();
    w * h * 4
}

impl Thumbnails {
    /// Starts a loader reading thumbnails from the catalog at `catalog_path`; keeps at
    /// most `capacity` textures.
    pub fn new(catalog_path: PathBuf, capacity: usize, ctx: &egui::Context) -> Self {
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let worker_shared = shared.clone();
        // Each delivered thumbnail is a report of the loader's job (which wakes the UI).
        let job = JobHandle::spawn("thumbnail loader", super::job_waker(ctx), move |_, out| {
            let catalog = Catalog::open(&catalog_path).ok();
            let (lock, cvar) = &*worker_shared;
            loop {
                let batch: Vec<Want> = {
                    let Ok(mut s) = lock.lock() else {
                        return Err("the thumbnail queue is broken".to_owned());
                    };
                    while s.wanted.is_empty() && !s.stop {
                        s = match cvar.wait(s) {
                            Ok(s) => s,
                            Err(_) => return Err("the thumbnail queue is broken".to_owned()),
                        };
                    }
                    if s.stop {
                        return Ok(());
                    }
                    let n = s.wanted.len().min(24);
                    s.wanted.drain(..n).collect()
                };
                for w in batch {
                    let img = load(catalog.as_ref(), &w);
                    out.report((w.poster_id, img));
                }
            }
        });
        let (loader, loader_error) = match job {
            Ok(j) => (Some(j), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Self {
            shared,
            loader,
            loader_error,
            textures: HashMap::new(),
            failed: Default::default(),
            missing: (0, None),
            in_flight: Default::default(),
            frame_wants: Vec::new(),
            capacity: capacity.max(16),
            bytes: 0,
            max_bytes: MAX_TEXTURE_BYTES,
            clock: 0,
        }
    }

    /// Call once per frame before drawing: takes in what the loader finished.
    pub fn begin_frame(&mut self, ctx: &egui::Context) {
        self.clock += 1;
        let Some(loader) = &mut self.loader else {
            return;
        };
        let polled = loader.poll();
        if let Some(end) = polled.done {
            self.loader = None;
            self.loader_error = Some(match end {
                Err(e) => e.to_string(),
                Ok(()) => "the thumbnail loader stopped".into(),
            });
        }
        for (id, img) in polled.progress {
            self.in_flight.remove(&id);
            match img {
                Ok(img) => {
                    let tex =
                        ctx.load_texture(format!("thumb-{id}"), img, egui::TextureOptions::LINEAR);
                    self.bytes += texture_bytes(&tex);
                    if let Some((old, _)) = self.textures.insert(id, (tex, self.clock)) {
                        self.bytes -= texture_bytes(&old);
                    }
                }
                Err(e) => {
                    if let ThumbError::FileMissing(p) = &e
                        && !self.failed.contains_key(&id)
                    {
                        self.missing.0 += 1;
                        if self.missing.1.as_ref().is_none_or(|f| p < f) {
                            self.missing.1 = Some(p.clone());
                        }
                    }
                    self.failed.insert(id, e);
                }
            }
        }
        self.evict();
    }

    /// Why thumbnails cannot load at all (the loader could not start or stopped).
    pub fn loader_error(&self) -> Option<&str> {
        self.loader_error.as_deref()
    }

    /// The texture of `poster_id` if loaded; otherwise asks for it (this frame).
    pub fn get(&mut self, poster_id: i64, file: Option<&str>) -> Option<egui::TextureId> {
        if let Some((tex, used)) = self.textures.get_mut(&poster_id) {
            *used = self.clock;
            return Some(tex.id());
        }
        if !self.failed.contains_key(&poster_id) && !self.in_flight.contains(&poster_id) {
            self.frame_wants.push(Want {
                poster_id,
                file: file.map(PathBuf::from),
            });
        }
        None
    }

    /// Whether `poster_id` could not be loaded.
    pub fn is_failed(&self, poster_id: i64) -> bool {
        self.failed.contains_key(&poster_id)
    }

    /// Why `poster_id` could not be loaded, if it could not.
    pub fn failure(&self, poster_id: i64) -> Option<&ThumbError> {
        self.failed.get(&poster_id)
    }

    /// How many posters asked for so far could not be shown because their file is
    /// missing, with one of those files (for the view to say why).
    pub fn missing_files(&self) -> (usize, Option<&Path>) {
        (self.missing.0, self.missing.1.as_deref())
    }

    /// Call once per frame after drawing: hands this frame's missing thumbnails to the
    /// loader, replacing what it had not started yet.
    pub fn end_frame(&mut self) {
        let wants = std::mem::take(&mut self.frame_wants);
        let (lock, cvar) = &*self.shared;
        if let Ok(mut s) = lock.lock() {
            // Requests dropped from the list were never started: forget them.
            for w in s.wanted.drain(..) {
                self.in_flight.remove(&w.poster_id);
            }
            for w in &wants {
                self.in_flight.insert(w.poster_id);
            }
            s.wanted = wants;
            cvar.notify_one();
        }
    }

    /// Textures held now.
    pub fn len(&self) -> usize {
        self.textures.len()
    }

    /// Whether no texture is held.
    pub fn is_empty(&self) -> bool {
        self.textures.is_empty()
    }

    /// Texture memory held now, in bytes.
    pub fn texture_bytes(&self) -> usize {
        self.bytes
    }

    /// Caps the texture memory held (tests).
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    fn evict(&mut self) {
        if self.textures.len() <= self.capacity && self.bytes <= self.max_bytes {
            return;
        }
        let mut by_age: Vec<(u64, i64)> =
            self.textures.iter().map(|(id, (_, t))| (*t, *id)).collect();
        by_age.sort_unstable();
        for (_, id) in by_age {
            if self.textures.len() <= self.capacity && self.bytes <= self.max_bytes {
                break;
            }
            if let Some((tex, _)) = self.textures.remove(&id) {
                self.bytes -= texture_bytes(&tex);
            }
        }
    }
}

impl Drop for Thumbnails {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.shared;
        if let Ok(mut s) = lock.lock() {
            s.stop = true;
            cvar.notify_all();
        }
    }
}

/// Paints the tile of a poster whose thumbnail is not shown: blank while it loads, with
/// the reason ("file missing", "unreadable") once it cannot be loaded.
pub fn paint_placeholder(ui: &egui::Ui, thumbs: &Thumbnails, poster_id: i64, rect: egui::Rect) {
    let painter = ui.painter();
    painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
    if let Some(e) = thumbs.failure(poster_id) {
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            e.short(),
            egui::FontId::proportional(10.0),
            ui.visuals().error_fg_color,
        );
    }
}

/// The poster file of a catalog row as the loader takes it (the fallback when the row's
/// thumbnail is missing or small), resolved against the data directory.
pub fn row_file(
    data_dir: &crate::paths::DataDir,
    row: &crate::catalog::MovieRow,
) -> Option<String> {
    row.poster_file
        .as_deref()
        .map(|f| data_dir.poster_path(f).display().to_string())
}

/// Reads a poster's thumbnail from the catalog (or its file); see [`decode_thumbnail`].
pub fn read_thumbnail(
    catalog: Option<&Catalog>,
    poster_id: i64,
    file: Option<&Path>,
) -> Option<RgbImage> {
    let jpeg = catalog.and_then(|c| c.thumbnail(poster_id).ok().flatten());
    decode_thumbnail(jpeg.as_deref(), file)
}

/// Loads one thumbnail for the cache.
fn load(catalog: Option<&Catalog>, w: &Want) -> Result<egui::ColorImage, ThumbError> {
    let jpeg = catalog.and_then(|c| c.thumbnail(w.poster_id).ok().flatten());
    let rgb = thumbnail_or_reason(jpeg.as_deref(), w.file.as_deref())?;
    Ok(egui::ColorImage::from_rgb(
        [rgb.width() as usize, rgb.height() as usize],
        rgb.as_raw(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{NewMovie, PosterRecord, PosterStatus};
    use crate::imaging;
    use std::time::Duration;

    fn catalog_with_thumbnails(path: &Path, n: i64) {
        let mut c = Catalog::open(path).unwrap();
        let movies: Vec<NewMovie> = (0..n)
            .map(|i| {
                let img = RgbImage::from_pixel(12, 18, image::Rgb([i as u8, 0, 0]));
                NewMovie {
                    source_key: format!("t:{i}"),
                    source: "test".into(),
                    tmdb_id: None,
                    title: format!("M{i}"),
                    year: Some(2000),
                    release_date: None,
                    genres: vec![],
                    popularity: None,
                    vote_average: None,
                    vote_count: None,
                    poster: PosterRecord {
                        remote_path: None,
                        file: None,
                        sha256: Some(format!("{i:064}")),
                        bytes: None,
                        width: Some(12),
                        height: Some(18),
                        status: PosterStatus::Ok,
                        reason: None,
                        transient: false,
                        stats: None,
                        thumbnail: Some((imaging::encode_jpeg(&img, 90).unwrap(), 12, 18)),
                    },
                }
            })
            .collect();
        c.insert_movies(&movies).unwrap();
    }

    #[test]
    fn a_poster_without_thumbnail_is_read_from_its_file_or_says_it_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("p.jpg");
        let img = RgbImage::from_pixel(154, 231, image::Rgb([200, 10, 10]));
        std::fs::write(&file, imaging::encode_jpeg(&img, 90).unwrap()).unwrap();
        let rgb = thumbnail_or_reason(None, Some(&file)).unwrap();
        assert_eq!(rgb.dimensions(), (154, 231));
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            thumbnail_or_reason(None, Some(&file)).unwrap_err(),
            ThumbError::FileMissing(file.clone())
        );
        // A stored thumbnail still shows when the file is gone.
        let big = RgbImage::from_pixel(400, 600, image::Rgb([0, 0, 200]));
        let jpeg = imaging::encode_jpeg(&big, 90).unwrap();
        assert_eq!(
            thumbnail_or_reason(Some(&jpeg), Some(&file))
                .unwrap()
                .dimensions(),
            (400, 600)
        );
        std::fs::write(&file, b"not an image").unwrap();
        let e = thumbnail_or_reason(None, Some(&file)).unwrap_err();
        assert!(matches!(e, ThumbError::Unreadable(_)), "{e}");
        assert_eq!(thumbnail_or_reason(None, None), Err(ThumbError::NoSource));
    }

    #[test]
    fn cache_stays_bounded_and_loads_what_is_on_screen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("catalog.sqlite");
        catalog_with_thumbnails(&path, 40);
        let ctx = egui::Context::default();
        let mut thumbs = Thumbnails::new(path, 16, &ctx);
        // Scrolling through 40 posters, 8 on screen at a time: each screenful loads, and
        // the cache never holds more than 16 textures.
        // Between frames the test waits for the loader to deliver (no sleeping, no clock).
        let wait = |seen| crate::jobs::wait_for_activity(seen, Duration::from_secs(60));
        for first in (1..=33).step_by(8) {
            loop {
                let seen = crate::jobs::activity();
                thumbs.begin_frame(&ctx);
                let shown = (first..first + 8)
                    .filter(|&id| thumbs.get(id, None).is_some())
                    .count();
                thumbs.end_frame();
                assert!(thumbs.len() <= 16, "{} textures held", thumbs.len());
                if shown == 8 {
                    break;
                }
                wait(seen);
            }
        }
        // What stays on screen ends up cached.
        loop {
            let seen = crate::jobs::activity();
            thumbs.begin_frame(&ctx);
            let on_screen = (1..=8).filter(|&id| thumbs.get(id, None).is_some()).count();
            thumbs.end_frame();
            if on_screen == 8 {
                break;
            }
            wait(seen);
        }
        assert!(thumbs.len() <= 16);
        assert_eq!(thumbs.texture_bytes(), thumbs.len() * 12 * 18 * 4);
        // A byte budget of five thumbnails holds five, however many fit the count.
        thumbs.set_max_bytes(5 * 12 * 18 * 4);
        thumbs.begin_frame(&ctx);
        thumbs.end_frame();
        assert_eq!(thumbs.len(), 5);
        assert_eq!(thumbs.texture_bytes(), 5 * 12 * 18 * 4);
        // A poster id with no thumbnail and no file is reported, not retried forever.
        while !thumbs.is_failed(999) {
            let seen = crate::jobs::activity();
            thumbs.begin_frame(&ctx);
            let _ = thumbs.get(999, None);
            thumbs.end_frame();
            wait(seen);
        }
    }
}
