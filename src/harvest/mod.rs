//! `harvest`: movie metadata and posters from TMDB, by release year.
//!
//! Listing pages (API `/3/discover/movie`, or the website's cards without a key) and
//! poster downloads share one pool of at most `connections` HTTP connections. API calls
//! are paced to `api_rate` per second; the image CDN is bounded by connections only.
//! Downloads are decoded once, validated and measured on rayon (thumbnailed only when
//! larger than the thumbnail box), written to disk atomically, and committed to the
//! catalog by one writer, each commit taking every outcome already queued. Listing pages
//! are recorded when stored and posters stay `pending` until done, so a killed harvest
//! resumes where it stopped with nothing lost or duplicated.

pub mod fetch;
pub mod mock;
pub mod tmdb;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use crate::jobs::Progress;
use std::time::{Duration, Instant};

use fetch::{FetchError, Fetcher, RateLimiter, RetryPolicy};
use tmdb::{Auth, DateWindow, DiscoverMovie, DiscoverQuery, MAX_PAGE, PAGE_SIZE};

use crate::catalog::{Catalog, CatalogError, NewMovie, PendingPoster, PosterRecord, PosterStatus};
use crate::imaging::{self, ImageLimits};
use sha2::Digest;

/// A browser-like User-Agent for the website mode.
pub const BROWSER_USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";

/// Harvest settings.
#[derive(Debug, Clone)]
pub struct HarvestOptions {
    /// First release year.
    pub from: i32,
    /// Last release year.
    pub to: i32,
    /// Movies wanted per year.
    pub per_year: u32,
    /// `revenue.desc`, `popularity.desc`, …
    pub sort_by: String,
    /// Poster size on the CDN (`w154`, `w342`, `original`…).
    pub size: String,
    /// Most simultaneous HTTP connections (TMDB allows about 20 per IP).
    pub connections: usize,
    /// Minimum vote count.
    pub min_votes: Option<u32>,
    /// API key, bearer token, or none (website mode).
    pub auth: Auth,
    /// API base URL.
    pub api_url: String,
    /// Image CDN base URL (sizes follow it).
    pub image_url: String,
    /// Website base URL.
    pub site_url: String,
    /// API (and website) requests per second.
    pub api_rate: f64,
    /// Image requests per second (0: bounded by connections only).
    pub image_rate: f64,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Image limits.
    pub limits: ImageLimits,
    /// Retry posters that failed in earlier runs.
    pub retry_failed: bool,
    /// Where posters are written.
    pub posters_dir: PathBuf,
}

impl HarvestOptions {
    /// Defaults for a year range, writing posters under `posters_dir`.
    pub fn new(from: i32, to: i32, posters_dir: PathBuf) -> Self {
        Self {
            from,
            to,
            per_year: 80,
            sort_by: "revenue.desc".into(),
            size: "w154".into(),
            connections: 20,
            min_votes: None,
            auth: Auth::None,
            api_url: tmdb::DEFAULT_API_URL.into(),
            image_url: tmdb::DEFAULT_IMAGE_URL.into(),
            site_url: tmdb::DEFAULT_SITE_URL.into(),
            api_rate: 40.0,
            image_rate: 0.0,
            retry: RetryPolicy::default(),
            limits: ImageLimits::default(),
            retry_failed: false,
            posters_dir,
        }
    }

    /// Checks the settings (the window and the CLI both go through this): year range,
    /// counts, connections, request rates, credentials and the poster size.
    pub fn validate(&self) -> Result<(), HarvestError> {
        if self.from > self.to {
            return Err(HarvestError::Options(format!(
                "the first year ({}) is after the last ({})",
                self.from, self.to
            )));
        }
        if self.per_year == 0 {
            return Err(HarvestError::Options(
                "posters per year (--per-year) must be at least 1".into(),
            ));
        }
        if self.connections == 0 || self.connections > 64 {
            return Err(HarvestError::Options(
                "connections (--connections) must be between 1 and 64".into(),
            ));
        }
        // A credential with a line break or other control character cannot go into a URL or
        // header: say so instead of retrying a request that can never be built.
        let bad_credential =
            |v: &str| v.is_empty() || v.chars().any(|c| c.is_control() || c == ' ');
        match &self.auth {
            Auth::ApiKey(k) if bad_credential(k) => {
                return Err(HarvestError::Options(
                    "the API key is empty or contains a space, line break or control character \
                 (check for a stray newline when it was pasted)"
                        .into(),
                ));
            }
            Auth::Bearer(t) if bad_credential(t) => {
                return Err(HarvestError::Options(
                    "the bearer token is empty or contains a space, line break or control \
                 character (check for a stray newline when it was pasted)"
                        .into(),
                ));
            }
            _ => {}
        }
        if crate::fsutil::sanitize_component(&self.size).as_deref() != Some(self.size.as_str()) {
            return Err(HarvestError::Options(format!(
                "bad poster size `{}`",
                self.size
            )));
        }
        use fetch::{MAX_RATE, MIN_RATE};
        for (flag, rate) in [
            ("--api-rate", self.api_rate),
            ("--image-rate", self.image_rate),
        ] {
            if rate != 0.0 && !(rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate)) {
                return Err(HarvestError::Options(format!(
                    "{flag} {rate}: must be 0 (no limit) or between {MIN_RATE} and {MAX_RATE} requests per second"
                )));
            }
        }
        Ok(())
    }

    fn mode(&self) -> &'static str {
        if matches!(self.auth, Auth::None) {
            "site"
        } else {
            "api"
        }
    }

    /// Parameters worth recording (never the key).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "from": self.from, "to": self.to, "per_year": self.per_year,
            "sort_by": self.sort_by, "size": self.size, "connections": self.connections,
            "min_votes": self.min_votes, "mode": self.mode(),
            "api_url": self.api_url, "image_url": self.image_url, "site_url": self.site_url,
        })
    }
}

/// Picks the credentials for a harvest: website mode when asked, else an explicit key,
/// an explicit bearer token, the key or token saved in the user's config, in that order;
/// website mode when there is none. Blank values count as absent.
pub fn resolve_auth(
    no_key: bool,
    api_key: Option<&str>,
    bearer_token: Option<&str>,
    saved: &crate::config::UserConfig,
) -> Auth {
    let pick = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
    };
    if no_key {
        Auth::None
    } else if let Some(k) = pick(api_key) {
        Auth::ApiKey(k)
    } else if let Some(t) = pick(bearer_token) {
        Auth::Bearer(t)
    } else if let Some(k) = pick(saved.tmdb_api_key.as_deref()) {
        Auth::ApiKey(k)
    } else if let Some(t) = pick(saved.tmdb_bearer_token.as_deref()) {
        Auth::Bearer(t)
    } else {
        Auth::None
    }
}

/// Default API pacing (requests/s): TMDB's ~40/s for the API, a polite 2/s for the
/// website when there is no key.
pub fn default_api_rate(auth: &Auth) -> f64 {
    if matches!(auth, Auth::None) {
        2.0
    } else {
        40.0
    }
}

/// Base URL from the environment variable `var`, else `default` (for the GUI; the CLI
/// reads the same variables through its flags).
pub fn url_from_env(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Harvest errors that stop the whole job.
#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// The key was refused: nothing can be fetched.
    #[error("{0} — check --api-key / TMDB_API_KEY or TMDB_BEARER_TOKEN")]
    Auth(FetchError),
    /// A listing request failed for good.
    #[error("listing {what} failed: {error}")]
    Listing {
        /// Which listing.
        what: String,
        /// Why.
        error: FetchError,
    },
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Cannot create the poster folder.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the network runtime: {0}")]
    Runtime(String),
}

/// Progress of one year.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct YearProgress {
    /// Movies listed (with a poster to fetch).
    pub listed: u64,
    /// Posters stored.
    pub ok: u64,
    /// Posters failed.
    pub failed: u64,
}

/// A snapshot for progress displays.
#[derive(Debug, Clone, Default)]
pub struct HarvestProgress {
    /// Posters to fetch known so far.
    pub total: u64,
    /// Posters stored this run.
    pub ok: u64,
    /// Posters failed this run.
    pub failed: u64,
    /// Listing pages fetched this run.
    pub pages: u64,
    /// Per year.
    pub years: Vec<(i32, YearProgress)>,
    /// Posters per second this run.
    pub rate: f64,
    /// Estimated time left.
    pub eta: Option<Duration>,
    /// Waiting on a 429 for this long, if so.
    pub rate_limited_for: Option<Duration>,
    /// HTTP requests sent.
    pub requests: u64,
    /// Retries made.
    pub retries: u64,
    /// Paused by the user.
    pub paused: bool,
    /// Requests waiting for an answer now.
    pub in_flight: u64,
    /// What went wrong lately (in the last 15 s): host, failure (connection refused, DNS,
    /// TLS, HTTP status, timeout) and attempts left.
    pub problem: Option<String>,
}

/// What the harvester reports.
#[derive(Debug, Clone)]
pub enum HarvestEvent {
    /// A progress snapshot (about 5 a second).
    Progress(HarvestProgress),
    /// Something worth telling the user (a failed poster, a split year…).
    Note(String),
}

/// What a harvest did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HarvestSummary {
    /// Posters stored.
    pub ok: u64,
    /// Posters failed.
    pub failed: u64,
    /// New movies listed.
    pub listed: u64,
    /// Listing pages fetched.
    pub pages: u64,
    /// HTTP requests sent.
    pub requests: u64,
    /// Retries.
    pub retries: u64,
    /// 429 responses.
    pub rate_limited: u64,
    /// Seconds waited on 429 answers (as Retry-After asked, clamped).
    pub rate_limit_wait_secs: f64,
    /// Seconds taken.
    pub seconds: f64,
    /// Whether it was cancelled.
    pub cancelled: bool,
}

/// Controls for a running harvest: cancel (what is done stays done) and pause.
pub type HarvestControl = crate::jobs::Control;

struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    total: AtomicU64,
    pages: AtomicU64,
    listed: AtomicU64,
    years: std::sync::Mutex<HashMap<i32, YearProgress>>,
}

enum WriteCmd {
    Listing {
        key: String,
        page: u32,
        total_pages: u32,
        movies: Vec<NewMovie>,
        /// New movies stored, and the posters of the page still to fetch.
        reply: tokio::sync::oneshot::Sender<Result<(usize, Vec<PendingPoster>), CatalogError>>,
    },
    Poster {
        key: String,
        year: Option<i32>,
        record: Box<PosterRecord>,
    },
}

/// Runs a harvest to the end (or until cancelled), reporting on `events`.
pub fn run_harvest(
    catalog_path: &std::path::Path,
    opts: &HarvestOptions,
    control: &HarvestControl,
    events: &Progress<HarvestEvent>,
) -> Result<HarvestSummary, HarvestError> {
    opts.validate()?;
    std::fs::create_dir_all(&opts.posters_dir).map_err(|source| HarvestError::Io {
        path: opts.posters_dir.display().to_string(),
        source,
    })?;
    crate::fsutil::remove_stale_parts(&opts.posters_dir);
    let catalog = Catalog::open(catalog_path)?;
    let job = catalog.start_harvest_job(&opts.describe().to_string())?;
    let start = Instant::now();
    let counters = Arc::new(Counters {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        total: AtomicU64::new(0),
        pages: AtomicU64::new(0),
        listed: AtomicU64::new(0),
        years: std::sync::Mutex::new(HashMap::new()),
    });
    // Posters left pending by an earlier run come first.
    let resume = catalog.posters_to_fetch(opts.from, opts.to, opts.retry_failed)?;
    let done_pages = catalog.harvest_pages()?;
    if !resume.is_empty() {
        events.report(HarvestEvent::Note(format!(
            "resuming: {} posters left from an earlier run",
            resume.len()
        )));
    }

    let (wtx, wrx) = mpsc::channel::<WriteCmd>();
    let writer_counters = Arc::clone(&counters);
    let writer = std::thread::Builder::new()
        .name("catalog-writer".into())
        .spawn(move || catalog_writer(catalog, &wrx, &writer_counters))
        .map_err(|e| HarvestError::Runtime(e.to_string()))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| HarvestError::Runtime(e.to_string()))?;
    let fetcher = Fetcher::new(
        opts.connections,
        if opts.mode() == "site" {
            BROWSER_USER_AGENT
        } else {
            concat!("movie-eras/", env!("CARGO_PKG_VERSION"))
        },
        opts.retry,
        Arc::clone(&control.cancel),
    )
    .map_err(|e| HarvestError::Options(e.to_string()))?;

    // Progress reporter.
    let done_flag = Arc::new(AtomicBool::new(false));
    let reporter = {
        let counters = Arc::clone(&counters);
        let stats = Arc::clone(&fetcher.stats);
        let events = events.clone();
        let done_flag = Arc::clone(&done_flag);
        let pause = Arc::clone(&control.pause);
        std::thread::spawn(move || {
            while !done_flag.load(Ordering::Relaxed) {
                events.report(HarvestEvent::Progress(snapshot(
                    &counters, &stats, start, &pause,
                )));
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let ctx = Ctx {
        api_limiter: RateLimiter::new(opts.api_rate),
        image_limiter: RateLimiter::new(opts.image_rate),
        opts: opts.clone(),
        fetcher: fetcher.clone(),
        control: control.clone(),
        counters: Arc::clone(&counters),
        writer: wtx,
        genres: HashMap::new(),
        events: events.clone(),
        done_pages,
    };
    let result = match rt.block_on(harvest_async(ctx, resume)) {
        // A listing request cut short by Cancel is the cancel itself, not a failure.
        Err(HarvestError::Listing {
            error: FetchError::Cancelled,
            ..
        }) if control.cancel.load(Ordering::Relaxed) => Ok(()),
        other => other,
    };
    // The write channel closed with the async part: wait for the last commits.
    let catalog = writer
        .join()
        .map_err(|_| HarvestError::Runtime("catalog writer panicked".into()))?;
    done_flag.store(true, Ordering::Relaxed);
    let _ = reporter.join();
    events.report(HarvestEvent::Progress(snapshot(
        &counters,
        &fetcher.stats,
        start,
        &control.pause,
    )));
    let cancelled = control.cancel.load(Ordering::Relaxed);
    let summary = HarvestSummary {
        ok: counters.ok.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        listed: counters.listed.load(Ordering::Relaxed),
        pages: counters.pages.load(Ordering::Relaxed),
        requests: fetcher.stats.requests.load(Ordering::Relaxed),
        retries: fetcher.stats.retries.load(Ordering::Relaxed),
        rate_limited: fetcher.stats.rate_limited.load(Ordering::Relaxed),
        rate_limit_wait_secs: fetcher.stats.rate_limit_wait_ms.load(Ordering::Relaxed) as f64
            / 1000.0,
        seconds: start.elapsed().as_secs_f64(),
        cancelled,
    };
    if let Ok(catalog) = &catalog {
        let status = match (&result, cancelled) {
            (Err(_), _) => "failed",
            (Ok(()), true) => "cancelled",
            (Ok(()), false) => "done",
        };
        let _ = catalog.finish_harvest_job(job, status, summary.ok, summary.failed);
    }
    catalog?;
    result?;
    Ok(summary)
}

fn snapshot(
    c: &Counters,
    stats: &fetch::FetchStats,
    start: Instant,
    pause: &AtomicBool,
) -> HarvestProgress {
    let ok = c.ok.load(Ordering::Relaxed);
    let failed = c.failed.load(Ordering::Relaxed);
    let total = c.total.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64().max(1e-3);
    let rate = (ok + failed) as f64 / secs;
    let left = total.saturating_sub(ok + failed);
    let eta = (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate));
    let until = stats.waiting_until_ms.load(Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut years: Vec<(i32, YearProgress)> = c
        .years
        .lock()
        .map(|y| y.iter().map(|(k, v)| (*k, *v)).collect())
        .unwrap_or_default();
    years.sort_by_key(|(y, _)| *y);
    HarvestProgress {
        total,
        ok,
        failed,
        pages: c.pages.load(Ordering::Relaxed),
        years,
        rate,
        eta,
        rate_limited_for: (until > now).then(|| Duration::from_millis(until - now)),
        requests: stats.requests.load(Ordering::Relaxed),
        retries: stats.retries.load(Ordering::Relaxed),
        paused: pause.load(Ordering::Relaxed),
        in_flight: stats.in_flight.load(Ordering::Relaxed),
        problem: stats.recent_problem(Duration::from_secs(15)),
    }
}

/// Most poster outcomes committed in one transaction by the catalog writer.
const POSTERS_PER_COMMIT: usize = 64;

fn catalog_writer(
    mut catalog: Catalog,
    rx: &mpsc::Receiver<WriteCmd>,
    counters: &Counters,
) -> Result<Catalog, CatalogError> {
    let mut first_error = None;
    let mut posters: Vec<(String, Option<i32>, Box<PosterRecord>)> = Vec::new();
    let mut next = rx.recv().ok();
    while let Some(cmd) = next.take() {
        match cmd {
            WriteCmd::Listing {
                key,
                page,
                total_pages,
                movies,
                reply,
            } => {
                let r = store_listing(&mut catalog, &key, page, total_pages, &movies);
                let _ = reply.send(r);
                next = rx.recv().ok();
            }
            WriteCmd::Poster { key, year, record } => {
                // Poster outcomes already queued go into the same transaction (never
                // waiting for more: a lone poster commits at once). A kill between commits
                // leaves those posters pending, and the next run fetches them again.
                posters.push((key, year, record));
                loop {
                    match rx.try_recv() {
                        Ok(WriteCmd::Poster { key, year, record }) => {
                            posters.push((key, year, record));
                            if posters.len() >= POSTERS_PER_COMMIT {
                                break;
                            }
                        }
                        Ok(listing) => {
                            next = Some(listing);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = commit_posters(&mut catalog, &posters, counters) {
                    log::error!("catalog write failed: {e}");
                    first_error.get_or_insert(e);
                }
                posters.clear();
                if next.is_none() {
                    next = rx.recv().ok();
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(catalog),
    }
}

/// Stores a listing page; returns the movies added and the page's posters still to fetch
/// (new or left pending).
fn store_listing(
    catalog: &mut Catalog,
    key: &str,
    page: u32,
    total_pages: u32,
    movies: &[NewMovie],
) -> Result<(usize, Vec<PendingPoster>), CatalogError> {
    let added = catalog.store_listing_page(key, page, total_pages, movies)?;
    let keys: std::collections::HashSet<&str> =
        movies.iter().map(|m| m.source_key.as_str()).collect();
    let years: Vec<i32> = movies.iter().filter_map(|m| m.year).collect();
    let (lo, hi) = (
        years.iter().copied().min().unwrap_or(0),
        years.iter().copied().max().unwrap_or(0),
    );
    let to_fetch = catalog
        .posters_to_fetch(lo, hi, false)?
        .into_iter()
        .filter(|p| keys.contains(p.source_key.as_str()))
        .collect();
    Ok((added, to_fetch))
}

/// Commits poster outcomes in one transaction and counts them once committed.
fn commit_posters(
    catalog: &mut Catalog,
    posters: &[(String, Option<i32>, Box<PosterRecord>)],
    counters: &Counters,
) -> Result<(), CatalogError> {
    let items: Vec<(&str, &PosterRecord)> = posters
        .iter()
        .map(|(key, _, record)| (key.as_str(), &**record))
        .collect();
    catalog.update_posters(&items)?;
    let mut years = counters.years.lock().ok();
    for (_, year, record) in posters {
        let ok = record.status == PosterStatus::Ok;
        if ok {
            counters.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(y), Some(years)) = (year, years.as_mut()) {
            let e = years.entry(*y).or_default();
            if ok {
                e.ok += 1;
            } else {
                e.failed += 1;
            }
        }
    }
    Ok(())
}

struct Ctx {
    opts: HarvestOptions,
    fetcher: Fetcher,
    control: HarvestControl,
    counters: Arc<Counters>,
    writer: mpsc::Sender<WriteCmd>,
    api_limiter: RateLimiter,
    image_limiter: RateLimiter,
    genres: HashMap<i64, String>,
    events: Progress<HarvestEvent>,
    done_pages: HashMap<(String, u32), u32>,
}

impl Ctx {
    fn headers(&self) -> Vec<(&'static str, String)> {
        match &self.opts.auth {
            Auth::Bearer(t) => vec![("Authorization", format!("Bearer {t}"))],
            _ => Vec::new(),
        }
    }

    fn with_key(&self, url: String) -> String {
        match &self.opts.auth {
            Auth::ApiKey(k) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}api_key={k}")
            }
            _ => url,
        }
    }

    async fn wait_if_paused(&self) {
        while self.control.pause.load(Ordering::Relaxed)
            && !self.control.cancel.load(Ordering::Relaxed)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn api_json<T: serde::de::DeserializeOwned>(&self, url: String) -> Result<T, FetchError> {
        self.wait_if_paused().await;
        let full = self.with_key(url);
        let mut last = String::new();
        // A malformed body is retried like a truncated one, then reported.
        for _ in 0..2 {
            let got = self
                .fetcher
                .get(&full, &self.headers(), &self.api_limiter)
                .await?;
            match serde_json::from_slice(&got.body) {
                Ok(v) => return Ok(v),
                Err(e) => last = format!("malformed JSON from TMDB: {e}"),
            }
        }
        Err(FetchError::GaveUp { attempts: 2, last })
    }
}

async fn harvest_async(mut ctx: Ctx, resume: Vec<PendingPoster>) -> Result<(), HarvestError> {
    if !matches!(ctx.opts.auth, Auth::None) {
        // Configuration doubles as the key check; genres name the genre ids.
        let api = ctx.opts.api_url.trim_end_matches('/').to_owned();
        let config: tmdb::Configuration = ctx
            .api_json(format!("{api}/3/configuration"))
            .await
            .map_err(|e| match e {
                FetchError::Unauthorized(_) => HarvestError::Auth(e),
                other => HarvestError::Listing {
                    what: "configuration".into(),
                    error: other,
                },
            })?;
        if !config.images.poster_sizes.is_empty()
            && !config.images.poster_sizes.contains(&ctx.opts.size)
        {
            return Err(HarvestError::Options(format!(
                "poster size `{}` is not offered by TMDB (sizes: {})",
                ctx.opts.size,
                config.images.poster_sizes.join(", ")
            )));
        }
        let genres: tmdb::GenreList = ctx
            .api_json(format!("{api}/3/genre/movie/list"))
            .await
            .map_err(|e| HarvestError::Listing {
                what: "genres".into(),
                error: e,
            })?;
        ctx.genres = genres.genres.into_iter().map(|g| (g.id, g.name)).collect();
    }
    let ctx = Arc::new(ctx);
    let mut posters = tokio::task::JoinSet::new();
    // Each movie is fetched at most once per run, even if listings overlap.
    let mut queued = std::collections::HashSet::new();
    for p in resume {
        if queued.insert(p.source_key.clone()) {
            ctx.counters.total.fetch_add(1, Ordering::Relaxed);
            posters.spawn(fetch_poster(Arc::clone(&ctx), p));
        }
    }
    // Listing: one task per year; each queues its posters as pages arrive.
    let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel::<PendingPoster>();
    let mut listings = tokio::task::JoinSet::new();
    for year in ctx.opts.from..=ctx.opts.to {
        listings.spawn(list_year(Arc::clone(&ctx), year, ptx.clone()));
    }
    drop(ptx);
    let mut first_error: Option<HarvestError> = None;
    loop {
        tokio::select! {
            Some(p) = prx.recv() => {
                if queued.insert(p.source_key.clone()) {
                    ctx.counters.total.fetch_add(1, Ordering::Relaxed);
                    posters.spawn(fetch_poster(Arc::clone(&ctx), p));
                }
            }
            Some(res) = listings.join_next() => {
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let fatal = matches!(e, HarvestError::Auth(_) | HarvestError::Catalog(_));
                        ctx.events.report(HarvestEvent::Note(e.to_string()));
                        if first_error.is_none() { first_error = Some(e); }
                        if fatal { ctx.control.cancel.store(true, Ordering::Relaxed); }
                    }
                    Err(e) => {
                        if first_error.is_none() {
                            first_error = Some(HarvestError::Runtime(e.to_string()));
                        }
                    }
                }
            }
            Some(_) = posters.join_next() => {}
            else => break,
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn new_movie(ctx: &Ctx, m: &DiscoverMovie, fallback_year: i32, source: &str) -> NewMovie {
    let year = m
        .release_date
        .as_deref()
        .and_then(tmdb::year_of_date)
        .unwrap_or(fallback_year);
    NewMovie {
        source_key: format!("tmdb:{}", m.id),
        source: source.into(),
        tmdb_id: Some(m.id),
        title: m.title.clone(),
        year: Some(year),
        release_date: m.release_date.clone().filter(|d| !d.is_empty()),
        genres: m
            .genre_ids
            .iter()
            .map(|g| {
                (
                    *g,
                    ctx.genres
                        .get(g)
                        .cloned()
                        .unwrap_or_else(|| format!("Genre {g}")),
                )
            })
            .collect(),
        popularity: m.popularity,
        vote_average: m.vote_average,
        vote_count: m.vote_count,
        poster: PosterRecord {
            remote_path: m.poster_path.clone(),
            file: None,
            sha256: None,
            bytes: None,
            width: None,
            height: None,
            status: if m.poster_path.is_some() {
                PosterStatus::Pending
            } else {
                PosterStatus::Failed
            },
            reason: m
                .poster_path
                .is_none()
                .then(|| "TMDB has no poster for this movie".into()),
            transient: false,
            stats: None,
            thumbnail: None,
        },
    }
}

async fn list_year(
    ctx: Arc<Ctx>,
    year: i32,
    posters: tokio::sync::mpsc::UnboundedSender<PendingPoster>,
) -> Result<(), HarvestError> {
    let pages_needed = ctx.opts.per_year.div_ceil(PAGE_SIZE);
    let windows = if pages_needed > MAX_PAGE {
        ctx.events.report(HarvestEvent::Note(format!(
            "{year}: {} movies need more than {MAX_PAGE} pages; splitting the year by month",
            ctx.opts.per_year
        )));
        DateWindow::months(year)
    } else {
        vec![DateWindow::Year(year)]
    };
    let per_window = ctx.opts.per_year.div_ceil(windows.len() as u32);
    for window in windows {
        let query = DiscoverQuery {
            window,
            sort_by: ctx.opts.sort_by.clone(),
            min_votes: ctx.opts.min_votes,
        };
        let want_pages = per_window.div_ceil(PAGE_SIZE).min(MAX_PAGE);
        let mut remaining = per_window as usize;
        let mut page = 1;
        while page <= want_pages && remaining > 0 {
            if ctx.control.cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            let key = query.key(ctx.opts.mode());
            if let Some(&total_pages) = ctx.done_pages.get(&(key.clone(), page)) {
                // Stored by an earlier run; its posters were queued from the catalog.
                remaining = remaining.saturating_sub(PAGE_SIZE as usize);
                if page >= total_pages {
                    break;
                }
                page += 1;
                continue;
            }
            let (movies, total_pages) = list_page(&ctx, &query, year, page).await?;
            // A movie a page lists twice counts once.
            let mut seen = std::collections::HashSet::new();
            let take: Vec<NewMovie> = movies
                .into_iter()
                .filter(|m| seen.insert(m.source_key.clone()))
                .take(remaining)
                .collect();
            remaining = remaining.saturating_sub(take.len());
            let (reply, wait) = tokio::sync::oneshot::channel();
            if ctx
                .writer
                .send(WriteCmd::Listing {
                    key,
                    page,
                    total_pages,
                    movies: take,
                    reply,
                })
                .is_err()
            {
                return Err(HarvestError::Runtime("catalog writer stopped".into()));
            }
            let (added, to_fetch) = wait
                .await
                .map_err(|_| HarvestError::Runtime("catalog writer stopped".into()))??;
            ctx.counters.pages.fetch_add(1, Ordering::Relaxed);
            ctx.counters
                .listed
                .fetch_add(added as u64, Ordering::Relaxed);
            if let Ok(mut years) = ctx.counters.years.lock() {
                years.entry(year).or_default().listed += to_fetch.len() as u64;
            }
            for p in to_fetch {
                let _ = posters.send(p);
            }
            if page >= total_pages {
                break;
            }
            page += 1;
        }
    }
    Ok(())
}

/// Fetches one listing page (API or website) and turns it into catalog movies.
async fn list_page(
    ctx: &Ctx,
    query: &DiscoverQuery,
    year: i32,
    page: u32,
) -> Result<(Vec<NewMovie>, u32), HarvestError> {
    let what = format!("{year} page {page}");
    let err = |error: FetchError| match error {
        FetchError::Unauthorized(_) => HarvestError::Auth(error),
        other => HarvestError::Listing {
            what: what.clone(),
            error: other,
        },
    };
    match &ctx.opts.auth {
        Auth::None => {
            ctx.wait_if_paused().await;
            let url = query.site_url(&ctx.opts.site_url, page);
            let got = ctx
                .fetcher
                .get_limited(&url, &[], &ctx.api_limiter, fetch::MAX_PAGE_BODY)
                .await
                .map_err(err)?;
            let html = String::from_utf8_lossy(&got.body);
            let cards = tmdb::parse_listing_html(&html);
            if cards.is_empty() && page == 1 {
                // A first page always lists movies: this is a bot check, a redirect or a
                // new layout. Not stored, so the next run asks again.
                return Err(err(FetchError::Unexpected(
                    "the listing page has no movie cards (a bot check, a redirect or a \
                     changed page layout?); it is asked for again on the next run"
                        .into(),
                )));
            }
            let movies = cards
                .iter()
                .map(|c| {
                    let dm = DiscoverMovie {
                        id: c.id,
                        title: c.title.clone(),
                        release_date: None,
                        poster_path: c.poster_path.clone(),
                        genre_ids: Vec::new(),
                        popularity: None,
                        vote_average: None,
                        vote_count: None,
                    };
                    new_movie(ctx, &dm, c.year.unwrap_or(year), "tmdb-site")
                })
                .collect();
            // The website gives no page count: an empty page ends the listing.
            let total = if cards.is_empty() { page } else { MAX_PAGE };
            Ok((movies, total))
        }
        _ => {
            let url = query.api_url(&ctx.opts.api_url, page);
            let dp: tmdb::DiscoverPage = ctx.api_json(url).await.map_err(err)?;
            let movies = dp
                .results
                .iter()
                .map(|m| new_movie(ctx, m, year, "tmdb-api"))
                .collect();
            Ok((movies, dp.total_pages.min(MAX_PAGE)))
        }
    }
}

fn poster_file_name(p: &PendingPoster) -> Option<String> {
    let base = crate::fsutil::sanitize_component(&p.remote_path)?;
    Some(match p.tmdb_id {
        Some(id) => format!("{id}-{base}"),
        None => base,
    })
}

async fn fetch_poster(ctx: Arc<Ctx>, p: PendingPoster) {
    let record = fetch_poster_record(&ctx, &p).await;
    let Some(record) = record else {
        return; // cancelled: stays pending for the next run
    };
    if record.status == PosterStatus::Failed {
        ctx.events.report(HarvestEvent::Note(format!(
            "poster of tmdb {} failed: {}",
            p.tmdb_id.unwrap_or(0),
            record.reason.as_deref().unwrap_or("")
        )));
    }
    let _ = ctx.writer.send(WriteCmd::Poster {
        key: p.source_key.clone(),
        year: p.year,
        record: Box::new(record),
    });
}

async fn fetch_poster_record(ctx: &Ctx, p: &PendingPoster) -> Option<PosterRecord> {
    let Some(name) = poster_file_name(p) else {
        return Some(PosterRecord::failed(
            None,
            format!("unusable poster path {:?}", p.remote_path),
        ));
    };
    let Some(remote) = crate::fsutil::sanitize_component(&p.remote_path) else {
        return Some(PosterRecord::failed(None, "unusable poster path".into()));
    };
    let url = format!(
        "{}/{}/{remote}",
        ctx.opts.image_url.trim_end_matches('/'),
        ctx.opts.size
    );
    let dest = ctx.opts.posters_dir.join(&name);
    let mut last_reason = String::new();
    // Digest of the last body that did not decode: the same bytes twice is a file that
    // is broken at the source (permanent), anything else is damage in transit.
    let mut last_bad: Option<[u8; 32]> = None;
    // A body that does not decode is fetched again (CDN hiccups, truncation) within the
    // same attempt budget and backoff as server errors.
    let attempts = ctx.fetcher.policy.max_attempts.max(1);
    for attempt in 0..attempts {
        if attempt > 0
            && ctx
                .fetcher
                .sleep_cancellable(ctx.fetcher.backoff(attempt - 1))
                .await
                .is_err()
        {
            return None;
        }
        ctx.wait_if_paused().await;
        if ctx.control.cancel.load(Ordering::Relaxed) {
            return None;
        }
        let got = match ctx
            .fetcher
            .get_limited(&url, &[], &ctx.image_limiter, fetch::MAX_IMAGE_BODY)
            .await
        {
            Ok(g) => g,
            Err(FetchError::Cancelled) => return None,
            Err(e) if e.is_transient() => {
                return Some(PosterRecord::failed_transient(e.to_string()));
            }
            Err(e) => return Some(PosterRecord::failed(None, e.to_string())),
        };
        let limits = ctx.opts.limits;
        let file_name = format!("posters/{name}");
        let (tx, rx) = tokio::sync::oneshot::channel();
        // CPU work on rayon; the durable write (fsync) on tokio's blocking pool so that
        // disk latency never idles the decoding threads.
        rayon::spawn(move || {
            let record = process_download(&got.body, &limits, file_name);
            let _ = tx.send((record, got.body));
        });
        match rx.await {
            Ok((Ok(mut record), body)) => {
                let dest = dest.clone();
                let written = tokio::task::spawn_blocking(move || {
                    crate::fsutil::write_atomic(&dest, &body)
                        .map_err(|e| format!("cannot write {}: {e}", dest.display()))
                })
                .await;
                return Some(match written {
                    Ok(Ok(())) => {
                        record.remote_path = Some(p.remote_path.clone());
                        record
                    }
                    // Disk full or the like: the poster itself is fine.
                    Ok(Err(reason)) => PosterRecord::failed_transient(reason),
                    Err(_) => PosterRecord::failed_transient("writer task stopped".into()),
                });
            }
            Ok((Err(reason), body)) => {
                let digest: [u8; 32] = sha2::Sha256::digest(&body).into();
                if last_bad == Some(digest) {
                    return Some(PosterRecord::failed(
                        None,
                        format!("the same broken file twice: {reason}"),
                    ));
                }
                last_bad = Some(digest);
                last_reason = reason;
            }
            Err(_) => return Some(PosterRecord::failed_transient("worker stopped".into())),
        }
    }
    Some(PosterRecord::failed_transient(format!(
        "still damaged after {attempts} downloads: {last_reason}"
    )))
}

/// Decodes, validates, thumbnails and measures a downloaded poster (the CPU part of
/// storing one; the caller writes the file). `file_name` is recorded as the poster file.
/// The image is decoded once; a poster that fits the thumbnail box gets no thumbnail.
pub fn process_download(
    body: &[u8],
    limits: &ImageLimits,
    file_name: String,
) -> Result<PosterRecord, String> {
    let decoded = imaging::decode_poster(body, limits).map_err(|e| e.to_string())?;
    let summary = imaging::summarise(&decoded.rgb).map_err(|e| e.to_string())?;
    Ok(PosterRecord::ok(file_name, &decoded, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_rates_are_checked_for_every_caller_not_only_the_cli() {
        // The window builds its options without the CLI's flags: validate() is the one gate.
        let mut opts = HarvestOptions::new(1990, 1991, PathBuf::from("posters"));
        assert!(opts.validate().is_ok());
        opts.api_rate = 1e9;
        let e = opts.validate().unwrap_err().to_string();
        assert!(
            e.contains("--api-rate") && e.contains("requests per second"),
            "{e}"
        );
        opts.api_rate = 0.0;
        assert!(opts.validate().is_ok(), "0 means no limit");
        opts.image_rate = f64::NAN;
        assert!(
            opts.validate()
                .unwrap_err()
                .to_string()
                .contains("--image-rate")
        );
        opts.image_rate = 0.0;
        opts.from = 2000;
        assert!(opts.validate().unwrap_err().to_string().contains("after"));
    }
}
