//! The Gallery's view of the model: one background job that loads the chosen model (the
//! shipped one unless another is picked), runs the catalog pass
//! ([`crate::model::catalog_pass::predict_catalog`], the same as `movie-eras predict`)
//! and, between batches, answers one poster's detail request (prediction and Grad-CAM
//! overlay), so details never wait for the whole pass.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use eframe::egui;

use crate::eras::EraScheme;
use crate::jobs::{Control, JobHandle, Progress};
use crate::model::backend::{self, BackendChoice};
use crate::model::catalog_pass::{self, PosterDetail};
use crate::model::inference::{EraModel, Prediction};

pub use crate::model::catalog_pass::{CatalogAnalysis, PosterRef};

/// Largest side of the details panel's poster and overlay.
const DETAIL_SIZE: (u32, u32) = (240, 360);

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
    /// Boxed: a prediction with two images is far larger than the other events.
    Detail(Box<Detail>),
}

/// Handle to the worker.
pub struct Analysis {
    requests: Sender<Request>,
    job: Option<JobHandle<(), Event>>,
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
        let job = JobHandle::spawn(
            "model's worker",
            super::job_waker(ctx),
            move |control, events| {
                worker(
                    &catalog_path,
                    model_dir.as_deref(),
                    &req_rx,
                    events,
                    control,
                );
                Ok(())
            },
        );
        let (job, error) = match job {
            Ok(j) => (Some(j), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Self {
            requests: req_tx,
            job,
            progress: None,
            result: None,
            error,
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
        let Some(job) = &mut self.job else {
            return Vec::new();
        };
        let polled = job.poll();
        let mut details = Vec::new();
        for ev in polled.progress {
            match ev {
                Event::Progress(done, total) => self.progress = Some((done, total)),
                Event::Done(r) => {
                    self.progress = None;
                    self.result = Some(r);
                }
                Event::Failed(e) => {
                    self.progress = None;
                    self.error = Some(e);
                }
                Event::Detail(d) => details.push(*d),
            }
        }
        // The worker ends only when this view is dropped: an end now is a panic or a
        // vanished thread. Say so instead of showing "predicting…" for ever; a failure
        // the worker reported is kept.
        if let Some(end) = polled.done {
            self.progress = None;
            self.job = None;
            if self.error.is_none() {
                self.error = Some(match end {
                    Err(e) => e.to_string(),
                    Ok(()) => "the model's worker stopped unexpectedly".into(),
                });
            }
        }
        details
    }
}

impl Drop for Analysis {
    fn drop(&mut self) {
        if let Some(job) = &self.job {
            job.cancel();
        }
    }
}

fn load_model(dir: Option<PathBuf>) -> Result<EraModel, String> {
    let dir = dir
        .or_else(crate::model::default_model_dir)
        .ok_or_else(|| "no model found (resources/model is missing)".to_owned())?;
    let chosen = backend::choose(BackendChoice::Cpu).map_err(|e| e.to_string())?;
    EraModel::load(&dir, &chosen.device).map_err(|e| e.to_string())
}

fn detail(model: &EraModel, movie_id: i64, file: &std::path::Path, scheme: &EraScheme) -> Detail {
    let (w, h) = DETAIL_SIZE;
    let result = catalog_pass::poster_detail(model, file, scheme, w, h)
        .map(
            |PosterDetail {
                 prediction,
                 shown,
                 overlay,
             }| {
                let size = [shown.width() as usize, shown.height() as usize];
                (
                    prediction,
                    egui::ColorImage::from_rgb(size, shown.as_raw()),
                    egui::ColorImage::from_rgba_unmultiplied(size, overlay.as_raw()),
                )
            },
        )
        .map_err(|e| e.to_string());
    Detail { movie_id, result }
}

fn worker(
    catalog_path: &std::path::Path,
    model_dir: Option<&std::path::Path>,
    requests: &Receiver<Request>,
    events: &Progress<Event>,
    control: &Control,
) {
    let mut model: Option<Result<EraModel, String>> = None;
    let mut pending_pass: Option<Vec<PosterRef>> = None;
    loop {
        // Details first; then the pass.
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
        if control.is_cancelled() {
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
                        events.report(Event::Detail(Box::new(Detail {
                            movie_id: id,
                            result: Err(e),
                        })));
                    }
                    _ => {
                        pending_pass = None;
                        events.report(Event::Failed(e));
                    }
                }
                continue;
            }
        };
        match request {
            Some(Request::Detail(id, file, scheme)) => {
                events.report(Event::Detail(Box::new(detail(m, id, &file, &scheme))));
            }
            Some(Request::Pass(posters)) => pending_pass = Some(posters),
            None => {}
        }
        if let Some(posters) = pending_pass.take() {
            let progress =
                events.map(|p: catalog_pass::PassProgress| Event::Progress(p.done, p.total));
            // Detail requests are answered between batches.
            let mut answer_details = || {
                while let Ok(Request::Detail(id, file, scheme)) = requests.try_recv() {
                    events.report(Event::Detail(Box::new(detail(m, id, &file, &scheme))));
                }
            };
            match catalog_pass::predict_catalog(
                m,
                catalog_path,
                &posters,
                control,
                &progress,
                &mut answer_details,
            ) {
                Ok(Some(r)) => events.report(Event::Done(Arc::new(r))),
                Ok(None) => return,
                Err(e) => events.report(Event::Failed(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_goes_away_mid_pass_ends_the_wait_with_an_error() {
        // A worker that reports progress, then panics (a bug past every guard).
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let job = JobHandle::spawn("model's worker", crate::jobs::no_waker(), move |_, ev| {
            ev.report(Event::Progress(3, 10));
            let _ = go_rx.recv();
            panic!("boom");
        })
        .unwrap();
        let (req_tx, _req_rx) = mpsc::channel();
        let mut a = Analysis {
            requests: req_tx,
            job: Some(job),
            progress: None,
            result: None,
            error: None,
            started: false,
        };
        a.start_pass(Vec::new());
        // Poll as the window does, blocking between polls until the worker does something.
        let poll_until = |a: &mut Analysis, done: &dyn Fn(&Analysis) -> bool| loop {
            let seen = crate::jobs::activity();
            a.poll();
            if done(a) {
                break;
            }
            crate::jobs::wait_for_activity(seen, std::time::Duration::from_secs(60));
        };
        poll_until(&mut a, &|a| a.progress == Some((3, 10)));
        assert!(a.error.is_none());
        go_tx.send(()).unwrap();
        // The worker's end arrives: the view shows an error and stops "predicting".
        poll_until(&mut a, &|a| a.error.is_some());
        assert_eq!(a.progress, None);
        assert!(
            a.error
                .as_deref()
                .unwrap_or("")
                .contains("internal error: boom"),
            "{:?}",
            a.error
        );
    }
}
