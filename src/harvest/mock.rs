//! A mock TMDB server on 127.0.0.1 for tests and benchmarks: the v3 API shapes
//! (configuration, genres, discover with its 500-page cap), the image CDN, website
//! listing pages of HTML cards, 401/404/422/429/500 bodies, injected latency, and
//! truncated or junk bodies on demand. HTTP/1.1 with keep-alive, one thread per connection.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A fault to inject into the next response to a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Respond with this status and TMDB-style error body.
    Status(u16),
    /// 429 with `Retry-After` in seconds (as text, e.g. "1" or "0.2").
    RateLimited(String),
    /// Announce the full length but send only half of the body, then close.
    Truncate,
    /// 200 with random bytes instead of an image.
    Junk,
    /// Wait this long before answering.
    Delay(Duration),
    /// `302 Found` to this absolute URL (the request's query appended).
    Redirect(String),
    /// 200 with a JSON body of this many bytes.
    Huge(usize),
    /// The real body cut short at a length that differs each time, with a matching
    /// `Content-Length`: damage the transfer cannot see, only decoding can.
    Corrupt,
    /// A listing page with its first movie listed twice (first and second place).
    DuplicateFirst,
}

/// Mock behaviour, changeable while it runs.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Latency added to every response.
    pub latency: Duration,
    /// Accepted v3 key (`api_key=`); `None` accepts any request.
    pub api_key: Option<String>,
    /// Accepted v4 bearer token.
    pub bearer: Option<String>,
    /// Movies available per release year (`year -> count`); others have `default_per_year`.
    pub per_year: HashMap<i32, u32>,
    /// Movies available for a year not in `per_year`.
    pub default_per_year: u32,
    /// Every n-th movie has no poster (`poster_path: null`); 0 for never.
    pub no_poster_every: u32,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            api_key: None,
            bearer: None,
            per_year: HashMap::new(),
            default_per_year: 100,
            no_poster_every: 0,
        }
    }
}

/// Counters the tests check.
#[derive(Debug, Default)]
pub struct MockStats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Connections open now.
    pub open_connections: AtomicUsize,
    /// Most connections open at once.
    pub max_connections: AtomicUsize,
    /// Requests being answered now.
    pub in_flight: AtomicUsize,
    /// Most requests being answered at once.
    pub max_in_flight: AtomicUsize,
    /// Image requests answered with 200.
    pub images_served: AtomicU64,
}

struct Shared {
    config: Mutex<MockConfig>,
    faults: Mutex<Vec<(String, VecDeque<Fault>)>>,
    log: Mutex<Vec<String>>,
    /// Signalled after each logged request.
    logged: Condvar,
    header_log: Mutex<Vec<(String, HashMap<String, String>)>>,
    stats: MockStats,
    images: Vec<Vec<u8>>,
    stop: AtomicBool,
    base: String,
}

/// A running mock server; stops when dropped.
pub struct MockTmdb {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
}

impl std::fmt::Debug for MockTmdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockTmdb")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// TMDB's movie genres.
pub const GENRES: &[(i64, &str)] = &[
    (28, "Action"),
    (12, "Adventure"),
    (16, "Animation"),
    (35, "Comedy"),
    (80, "Crime"),
    (99, "Documentary"),
    (18, "Drama"),
    (10751, "Family"),
    (14, "Fantasy"),
    (36, "History"),
    (27, "Horror"),
    (10402, "Music"),
    (9648, "Mystery"),
    (10749, "Romance"),
    (878, "Science Fiction"),
    (10770, "TV Movie"),
    (53, "Thriller"),
    (10752, "War"),
    (37, "Western"),
];

fn make_images() -> Vec<Vec<u8>> {
    (0..24u32)
        .map(|i| {
            let img = image::RgbImage::from_fn(154, 231, |x, y| {
                let t = i * 10;
                image::Rgb([
                    ((x + t) % 256) as u8,
                    ((y * 2 + t * 3) % 256) as u8,
                    ((x * y / 64 + t * 7) % 256) as u8,
                ])
            });
            crate::imaging::encode_jpeg(&img, 80).unwrap_or_default()
        })
        .collect()
}

impl MockTmdb {
    /// Starts a server on an ephemeral port of 127.0.0.1.
    pub fn start(config: MockConfig) -> std::io::Result<Self> {
        Self::start_with_images(config, make_images())
    }

    /// Starts a server that serves `images` (encoded files, e.g. real posters) as the
    /// posters: movie `id` gets `images[id % len]`. Benchmarks use it to harvest real
    /// posters; an empty list falls back to the generated ones.
    pub fn start_with_images(config: MockConfig, images: Vec<Vec<u8>>) -> std::io::Result<Self> {
        let images = if images.is_empty() {
            make_images()
        } else {
            images
        };
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            logged: Condvar::new(),
            header_log: Mutex::new(Vec::new()),
            stats: MockStats::default(),
            images,
            stop: AtomicBool::new(false),
            base: format!("http://{addr}"),
        });
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("mock-tmdb".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if s.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let s2 = Arc::clone(&s);
                    let _ = std::thread::Builder::new()
                        .name("mock-conn".into())
                        .spawn(move || serve_connection(stream, &s2));
                }
            })?;
        Ok(Self { shared, addr })
    }

    /// `http://127.0.0.1:PORT`: the API, image (`/t/p`) and site base.
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// The image base (`http://127.0.0.1:PORT/t/p`).
    pub fn image_url(&self) -> String {
        format!("{}/t/p", self.shared.base)
    }

    /// Changes the configuration.
    pub fn configure(&self, f: impl FnOnce(&mut MockConfig)) {
        if let Ok(mut c) = self.shared.config.lock() {
            f(&mut c);
        }
    }

    /// Queues faults for requests whose path starts with `prefix` (one per request).
    pub fn inject(&self, prefix: &str, faults: Vec<Fault>) {
        if let Ok(mut f) = self.shared.faults.lock() {
            f.push((prefix.to_owned(), faults.into()));
        }
    }

    /// Every request's path and headers (names lower-case), in order.
    pub fn header_log(&self) -> Vec<(String, HashMap<String, String>)> {
        self.shared
            .header_log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Counters.
    pub fn stats(&self) -> &MockStats {
        &self.shared.stats
    }

    /// Request lines seen (paths with query), oldest first.
    pub fn log(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Blocks until `until` holds for the request log (checked at each request), or
    /// `timeout` passes (a guard against a hang); returns whether it held.
    pub fn wait_for_log(
        &self,
        timeout: Duration,
        mut until: impl FnMut(&[String]) -> bool,
    ) -> bool {
        let Ok(log) = self.shared.log.lock() else {
            return false;
        };
        self.shared
            .logged
            .wait_timeout_while(log, timeout, |l| !until(l))
            .is_ok_and(|(l, _)| until(&l))
    }

    /// The id of the `index`-th movie (0-based) of `year`, as the mock numbers them.
    pub fn movie_id(year: i32, index: u32) -> i64 {
        i64::from(year) * 100_000 + i64::from(index) + 1
    }
}

impl Drop for MockTmdb {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

struct Request {
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let _method = parts.next()?;
    let target = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_lowercase(), v.trim().to_owned());
        }
    }
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let query = q
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(Request {
        path: path.to_owned(),
        query,
        headers,
    })
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra_headers: Vec<(String, String)>,
    truncate: bool,
}

impl Response {
    fn json(status: u16, v: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json;charset=utf-8",
            body: v.to_string().into_bytes(),
            extra_headers: Vec::new(),
            truncate: false,
        }
    }

    fn error(status: u16) -> Self {
        let (code, msg) = match status {
            401 => (7, "Invalid API key: You must be granted a valid key."),
            404 => (34, "The resource you requested could not be found."),
            422 => (
                22,
                "Invalid page: Pages start at 1 and max at 500. They are expected to be an integer.",
            ),
            429 => (
                25,
                "Your request count (#) is over the allowed limit of (40).",
            ),
            503 => (
                9,
                "Service offline: This service is temporarily offline, try again later.",
            ),
            _ => (11, "Internal error: Something went wrong, contact TMDb."),
        };
        Self::json(
            status,
            &serde_json::json!({"success": false, "status_code": code, "status_message": msg}),
        )
    }
}

fn serve_connection(stream: TcpStream, s: &Shared) {
    let _ = stream.set_nodelay(true);
    let open = s.stats.open_connections.fetch_add(1, Ordering::SeqCst) + 1;
    s.stats.max_connections.fetch_max(open, Ordering::SeqCst);
    let Ok(write_half) = stream.try_clone() else {
        s.stats.open_connections.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    let _ = reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)));
    while let Some(req) = read_request(&mut reader) {
        if s.stop.load(Ordering::Relaxed) {
            break;
        }
        let n = s.stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.stats.max_in_flight.fetch_max(n, Ordering::SeqCst);
        s.stats.requests.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut log) = s.log.lock() {
            let q: Vec<String> = req
                .query
                .iter()
                .filter(|(k, _)| *k != "api_key")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            log.push(format!("{}?{}", req.path, q.join("&")));
        }
        s.logged.notify_all();
        if let Ok(mut log) = s.header_log.lock() {
            log.push((req.path.clone(), req.headers.clone()));
        }
        let resp = handle(&req, s);
        s.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            resp.status,
            resp.content_type,
            resp.body.len()
        );
        for (k, v) in &resp.extra_headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if resp.truncate {
            head.push_str("Connection: close\r\n\r\n");
            let _ = writer.write_all(head.as_bytes());
            let _ = writer.write_all(&resp.body[..resp.body.len() / 2]);
            let _ = writer.flush();
            break;
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&resp.body);
        if writer.write_all(&out).is_err() {
            break;
        }
    }
    s.stats.open_connections.fetch_sub(1, Ordering::SeqCst);
}

fn take_fault(s: &Shared, path: &str) -> Option<Fault> {
    let mut faults = s.faults.lock().ok()?;
    for (prefix, queue) in faults.iter_mut() {
        if path.starts_with(prefix.as_str())
            && let Some(f) = queue.pop_front()
        {
            return Some(f);
        }
    }
    None
}

fn handle(req: &Request, s: &Shared) -> Response {
    let config = s.config.lock().map(|c| c.clone()).unwrap_or_default();
    if !config.latency.is_zero() {
        std::thread::sleep(config.latency);
    }
    if let Some(fault) = take_fault(s, &req.path) {
        match fault {
            Fault::Status(code) => return Response::error(code),
            Fault::RateLimited(after) => {
                let mut r = Response::error(429);
                r.extra_headers.push(("Retry-After".into(), after));
                return r;
            }
            Fault::Delay(d) => std::thread::sleep(d),
            Fault::Redirect(to) => {
                let query: Vec<String> =
                    req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let mut r = Response::json(302, &serde_json::json!({}));
                r.extra_headers
                    .push(("Location".into(), format!("{to}?{}", query.join("&"))));
                return r;
            }
            Fault::Huge(n) => {
                let mut body = b"{\"results\":\"".to_vec();
                body.resize(n.saturating_sub(3).max(body.len()), b'a');
                body.extend_from_slice(b"\"}");
                return Response {
                    status: 200,
                    content_type: "application/json",
                    body,
                    extra_headers: Vec::new(),
                    truncate: false,
                };
            }
            Fault::Truncate => {
                let mut r = route(req, s, &config);
                r.truncate = true;
                return r;
            }
            Fault::Corrupt => {
                static CUTS: AtomicUsize = AtomicUsize::new(0);
                let mut r = route(req, s, &config);
                let n = CUTS.fetch_add(1, Ordering::Relaxed);
                let keep = (r.body.len() / 3 + n % 97).min(r.body.len().saturating_sub(1));
                r.body.truncate(keep);
                return r;
            }
            Fault::DuplicateFirst => {
                let mut r = route(req, s, &config);
                if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&r.body)
                    && let Some(results) = v.get_mut("results").and_then(|x| x.as_array_mut())
                    && let Some(first) = results.first().cloned()
                {
                    results.insert(1.min(results.len()), first);
                    r.body = serde_json::to_vec(&v).unwrap_or_default();
                }
                return r;
            }
            Fault::Junk => {
                let body: Vec<u8> = (0..5000u32)
                    .map(|i| (i.wrapping_mul(7919) % 251) as u8)
                    .collect();
                return Response {
                    status: 200,
                    content_type: "image/jpeg",
                    body,
                    extra_headers: Vec::new(),
                    truncate: false,
                };
            }
        }
    }
    route(req, s, &config)
}

fn authorised(req: &Request, config: &MockConfig) -> bool {
    if config.api_key.is_none() && config.bearer.is_none() {
        return true;
    }
    let key_ok = config
        .api_key
        .as_ref()
        .is_some_and(|k| req.query.get("api_key") == Some(k));
    let bearer_ok = config.bearer.as_ref().is_some_and(|b| {
        req.headers.get("authorization").map(String::as_str) == Some(format!("Bearer {b}").as_str())
    });
    key_ok || bearer_ok
}

fn year_count(config: &MockConfig, year: i32) -> u32 {
    config
        .per_year
        .get(&year)
        .copied()
        .unwrap_or(config.default_per_year)
}

/// Movies of `year` whose release month is in `months` (the mock spreads them evenly).
fn movies_in(config: &MockConfig, year: i32, months: std::ops::RangeInclusive<u32>) -> Vec<u32> {
    (0..year_count(config, year))
        .filter(|i| months.contains(&(i % 12 + 1)))
        .collect()
}

fn movie_json(config: &MockConfig, year: i32, index: u32) -> serde_json::Value {
    let id = MockTmdb::movie_id(year, index);
    let month = index % 12 + 1;
    let no_poster =
        config.no_poster_every > 0 && (index + 1).is_multiple_of(config.no_poster_every);
    let g1 = GENRES[(index as usize) % GENRES.len()].0;
    let g2 = GENRES[(index as usize * 7 + 3) % GENRES.len()].0;
    serde_json::json!({
        "adult": false,
        "backdrop_path": format!("/b{id}.jpg"),
        "genre_ids": [g1, g2],
        "id": id,
        "original_language": "en",
        "original_title": format!("Movie {year}-{index}"),
        "overview": "A mock movie.",
        "popularity": 1000.0 / f64::from(index + 1),
        "poster_path": if no_poster { serde_json::Value::Null } else { format!("/p{id}.jpg").into() },
        "release_date": format!("{year:04}-{month:02}-15"),
        "title": format!("Movie {year}-{index}"),
        "video": false,
        "vote_average": 5.0 + f64::from(index % 50) / 10.0,
        "vote_count": 100 + index,
    })
}

struct Listing {
    results: Vec<serde_json::Value>,
    total_pages: u32,
    total_results: u64,
    year: i32,
    indices: Vec<u32>,
}

fn listing(req: &Request, config: &MockConfig) -> Result<Listing, Response> {
    let page: u32 = req
        .query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    if page == 0 || page > 500 {
        return Err(Response::error(422));
    }
    let (year, months) = if let Some(y) = req
        .query
        .get("primary_release_year")
        .and_then(|y| y.parse().ok())
    {
        (y, 1..=12)
    } else {
        let gte = req
            .query
            .get("primary_release_date.gte")
            .cloned()
            .unwrap_or_default();
        let lte = req
            .query
            .get("primary_release_date.lte")
            .cloned()
            .unwrap_or_default();
        let y: i32 = gte.get(..4).and_then(|y| y.parse().ok()).unwrap_or(2000);
        let m1: u32 = gte.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
        let m2: u32 = lte.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(12);
        (y, m1..=m2)
    };
    let all = movies_in(config, year, months);
    let total_results = all.len() as u64;
    let total_pages = (all.len() as u32).div_ceil(20).clamp(1, 500);
    let start = ((page - 1) * 20) as usize;
    let indices: Vec<u32> = all.iter().skip(start).take(20).copied().collect();
    let results = indices
        .iter()
        .map(|&i| movie_json(config, year, i))
        .collect();
    Ok(Listing {
        results,
        total_pages,
        total_results,
        year,
        indices,
    })
}

fn route(req: &Request, s: &Shared, config: &MockConfig) -> Response {
    let path = req.path.as_str();
    if path.starts_with("/3/") && !authorised(req, config) {
        return Response::error(401);
    }
    match path {
        "/3/configuration" => Response::json(
            200,
            &serde_json::json!({
                "images": {
                    "base_url": format!("{}/t/p/", s.base),
                    "secure_base_url": format!("{}/t/p/", s.base),
                    "poster_sizes": ["w92", "w154", "w185", "w342", "w500", "w780", "original"],
                },
                "change_keys": [],
            }),
        ),
        "/3/genre/movie/list" => Response::json(
            200,
            &serde_json::json!({
                "genres": GENRES.iter().map(|(id, name)| serde_json::json!({"id": id, "name": name})).collect::<Vec<_>>()
            }),
        ),
        "/3/discover/movie" => match listing(req, config) {
            Err(r) => r,
            Ok(l) => Response::json(
                200,
                &serde_json::json!({
                    "page": req.query.get("page").and_then(|p| p.parse::<u32>().ok()).unwrap_or(1),
                    "results": l.results,
                    "total_pages": l.total_pages,
                    "total_results": l.total_results,
                }),
            ),
        },
        "/movie" => match listing(req, config) {
            Err(r) => r,
            Ok(Listing { year, indices, .. }) => {
                let mut html = String::from(
                    "<!DOCTYPE html><html><head><title>Movies</title></head><body><div class=\"page_wrapper\">",
                );
                for i in indices {
                    let id = MockTmdb::movie_id(year, i);
                    let no_poster = config.no_poster_every > 0
                        && (i + 1).is_multiple_of(config.no_poster_every);
                    let img = if no_poster {
                        "<div class=\"no_image_holder\"></div>".to_owned()
                    } else {
                        format!(
                            "<img loading=\"lazy\" class=\"poster\" src=\"/t/p/w220_and_h330_face/p{id}.jpg\" \
                             srcset=\"/t/p/w220_and_h330_face/p{id}.jpg 1x, /t/p/w440_and_h660_face/p{id}.jpg 2x\" alt=\"Movie {year}-{i}\">"
                        )
                    };
                    html.push_str(&format!(
                        "<div class=\"card style_1\"><div class=\"image\"><div class=\"wrapper\">\
                         <a class=\"image\" href=\"/movie/{id}-movie-{i}\" title=\"Movie {year}-{i}\">{img}</a></div></div>\
                         <div class=\"content\"><h2><a href=\"/movie/{id}-movie-{i}\" title=\"Movie {year}-{i}\">Movie {year}-{i}</a></h2>\
                         <p>Jun 15, {year}</p></div></div>"
                    ));
                }
                html.push_str("</div></body></html>");
                Response {
                    status: 200,
                    content_type: "text/html; charset=utf-8",
                    body: html.into_bytes(),
                    extra_headers: Vec::new(),
                    truncate: false,
                }
            }
        },
        p if p.starts_with("/t/p/") => {
            // /t/p/<size>/p<id>.jpg
            let file = p.rsplit('/').next().unwrap_or("");
            let id: Option<i64> = file
                .strip_prefix('p')
                .and_then(|f| f.strip_suffix(".jpg"))
                .and_then(|n| n.parse().ok());
            match id {
                Some(id) if !s.images.is_empty() => {
                    s.stats.images_served.fetch_add(1, Ordering::Relaxed);
                    Response {
                        status: 200,
                        content_type: "image/jpeg",
                        body: s.images[(id as usize) % s.images.len()].clone(),
                        extra_headers: Vec::new(),
                        truncate: false,
                    }
                }
                _ => Response::error(404),
            }
        }
        _ => Response::error(404),
    }
}
