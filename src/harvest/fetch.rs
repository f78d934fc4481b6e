//! HTTP fetching with a bounded connection pool, a request-rate limit, and retries:
//! 429 honours `Retry-After` (clamped), 5xx and network errors back off with jitter,
//! bodies shorter than their `Content-Length` count as truncated and are retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore};

/// Why a fetch failed for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// 401: wrong or missing API key.
    #[error("TMDB rejected the API key (HTTP 401{})", detail(.0))]
    Unauthorized(String),
    /// 404.
    #[error("not found (HTTP 404{})", detail(.0))]
    NotFound(String),
    /// Another 4xx, not retried (422 for a page beyond 500, say).
    #[error("HTTP {status}{}", detail(.message))]
    Client {
        /// Status code.
        status: u16,
        /// TMDB's `status_message`, or the start of the body.
        message: String,
    },
    /// Still failing after all retries.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last problem seen.
        last: String,
    },
    /// Cancelled by the user.
    #[error("cancelled")]
    Cancelled,
    /// The server sent a larger body than allowed.
    #[error("response body larger than {} MiB: refused", limit >> 20)]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// A body that is not what was asked for (a listing page without any movie).
    #[error("unexpected response: {0}")]
    Unexpected(String),
    /// A redirect that is not followed: an API call sent to another host, or a loop.
    #[error("{0}")]
    Redirect(String),
    /// The request could not be built (bad base URL, say).
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl FetchError {
    /// Whether asking again later may succeed (server errors, timeouts, odd bodies), as
    /// opposed to answers that will not change (404, other 4xx, refused redirects,
    /// oversized bodies, bad requests).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::GaveUp { .. } | Self::Unexpected(_) | Self::Cancelled
        )
    }
}

/// The host (and port) of `url`, for messages that must not carry its query (the key).
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| {
                u.port()
                    .map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))
            })
        })
        .unwrap_or_else(|| "the server".into())
}

fn detail(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// TMDB's error body: `{"status_code":7,"status_message":"Invalid API key…","success":false}`.
pub fn tmdb_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrBody {
        status_message: Option<String>,
        status_code: Option<i64>,
    }
    match serde_json::from_slice::<ErrBody>(body) {
        Ok(ErrBody {
            status_message: Some(m),
            status_code,
        }) => match status_code {
            Some(c) => format!("{m} (TMDB code {c})"),
            None => m,
        },
        _ => String::from_utf8_lossy(&body[..body.len().min(120)])
            .trim()
            .to_owned(),
    }
}

/// Retry policy.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff delay; doubles each retry, with ±50% jitter.
    pub base_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// `Retry-After` values are clamped to this.
    pub max_retry_after: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Longest time one request may take in all — attempts, timeouts and backoff together,
    /// not counting waits a 429's `Retry-After` asked for — so a server that hangs costs
    /// at most this much per request.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(60),
        }
    }
}

/// Slowest request rate accepted (one request per 100 s).
pub const MIN_RATE: f64 = 0.01;
/// Fastest request rate accepted.
pub const MAX_RATE: f64 = 10_000.0;
/// Largest API (JSON) response body read.
pub const MAX_API_BODY: usize = 8 << 20;
/// Largest website (HTML) page read.
pub const MAX_PAGE_BODY: usize = 4 << 20;
/// Largest image body read (the poster file limit).
pub const MAX_IMAGE_BODY: usize = 64 << 20;

/// Longest `Retry-After` taken from a server (longer values are clamped to it before any
/// `Duration` is built).
pub const MAX_RETRY_AFTER_SECS: f64 = 3600.0;

/// A token-bucket limit on requests per second, shared by all tasks.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// `per_second <= 0` (or not a number) means no limit; rates are clamped to
    /// [`MIN_RATE`]..=[`MAX_RATE`] so the interval is always a valid duration.
    pub fn new(per_second: f64) -> Self {
        let interval = (per_second > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / per_second.clamp(MIN_RATE, MAX_RATE)));
        Self {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next slot.
    pub async fn acquire(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            // Allow a small burst after idle time, never a flood.
            let slot = (*next).max(now - interval * 4);
            *next = slot + interval;
            slot.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Pushes the next slot back (after a 429), so every task waits.
    pub async fn hold_off(&self, d: Duration) {
        let mut next = self.next.lock().await;
        *next = (*next).max(Instant::now() + d);
    }
}

/// Live counters shared with progress reporting.
#[derive(Debug, Default)]
pub struct FetchStats {
    /// Requests sent (all attempts).
    pub requests: AtomicU64,
    /// Retries made.
    pub retries: AtomicU64,
    /// 429 responses seen.
    pub rate_limited: AtomicU64,
    /// Milliseconds until which requests wait because of a 429 (unix ms), 0 if none.
    pub waiting_until_ms: AtomicU64,
    /// Requests sent and not yet answered.
    pub in_flight: AtomicU64,
    /// Milliseconds waited on 429 answers, in all (what Retry-After asked, clamped).
    pub rate_limit_wait_ms: AtomicU64,
    /// The longest single wait on a 429, in milliseconds.
    pub longest_rate_limit_wait_ms: AtomicU64,
    /// The latest problem that made a request wait or retry, and when (unix ms).
    pub last_problem: std::sync::Mutex<Option<(String, u64)>>,
}

impl FetchStats {
    fn note_problem(&self, what: String) {
        if let Ok(mut p) = self.last_problem.lock() {
            *p = Some((what, unix_ms()));
        }
    }

    /// The latest problem if it is less than `within` old: what failed, on which host, and
    /// how many attempts were left.
    pub fn recent_problem(&self, within: Duration) -> Option<String> {
        let p = self.last_problem.lock().ok()?;
        let (what, at) = p.as_ref()?;
        (unix_ms().saturating_sub(*at) <= within.as_millis() as u64).then(|| what.clone())
    }
}

/// A shared HTTP client limited to `connections` requests (hence connections) at once.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    /// The policy in force.
    pub policy: RetryPolicy,
    /// Counters.
    pub stats: Arc<FetchStats>,
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A successful response body.
#[derive(Debug)]
pub struct Fetched {
    /// The body.
    pub body: Vec<u8>,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Installs rustls' crypto provider once (reqwest is built without a default one).
pub fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Fetcher {
    /// A fetcher with at most `connections` simultaneous requests.
    pub fn new(
        connections: usize,
        user_agent: &str,
        policy: RetryPolicy,
        cancel: Arc<AtomicBool>,
    ) -> Result<Self, FetchError> {
        ensure_crypto_provider();
        let connections = connections.max(1);
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            // A redirect must never carry the query's credentials to another host in a
            // Referer; and an API call may not be redirected off its host at all.
            .referer(false)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let from = attempt.previous().first().map(|u| {
                    (
                        u.host_str().map(str::to_owned),
                        u.port_or_known_default(),
                        u.query().is_some_and(|q| q.contains("api_key="))
                            || u.path().starts_with("/3/"),
                    )
                });
                let to = (
                    attempt.url().host_str().map(str::to_owned),
                    attempt.url().port_or_known_default(),
                );
                match from {
                    Some((host, port, true))
                        if (host.as_deref(), port) != (to.0.as_deref(), to.1) =>
                    {
                        attempt.error(format!(
                            "refused a redirect of an API request to another host ({})",
                            to.0.as_deref().unwrap_or("?")
                        ))
                    }
                    _ if attempt.previous().len() >= 5 => attempt.error("too many redirects"),
                    _ => attempt.follow(),
                }
            }))
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .timeout(policy.timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| FetchError::BadRequest(e.to_string()))?;
        Ok(Self {
            client,
            permits: Arc::new(Semaphore::new(connections)),
            policy,
            stats: Arc::new(FetchStats::default()),
            cancel,
        })
    }

    /// The backoff before retry number `attempt` (0-based): the base delay doubled each
    /// time, capped, with ±50% jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .base_delay
            .saturating_mul(1u32 << attempt.min(16));
        let capped = exp.min(self.policy.max_delay);
        let jitter = 0.5 + rand::random::<f64>();
        capped.mul_f64(jitter)
    }

    /// Sleeps `d`, or less when the job is cancelled meanwhile.
    pub async fn sleep_cancellable(&self, d: Duration) -> Result<(), FetchError> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(FetchError::Cancelled);
            }
            tokio::time::sleep((end - Instant::now()).min(Duration::from_millis(100))).await;
        }
        Ok(())
    }

    /// GETs `url` with `headers`, retrying as the policy says. `limiter` paces requests.
    /// A body is read up to [`MAX_API_BODY`] bytes; use [`Fetcher::get_limited`] for
    /// another cap.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, String)],
        limiter: &RateLimiter,
    ) -> Result<Fetched, FetchError> {
        self.get_limited(url, headers, limiter, MAX_API_BODY).await
    }

    /// [`Fetcher::get`] with bodies capped at `max_body` bytes while streaming: a larger
    /// body (announced or actual) fails at once, without retries.
    pub async fn get_limited(
        &self,
        url: &str,
        headers: &[(&str, String)],
        limiter: &RateLimiter,
        max_body: usize,
    ) -> Result<Fetched, FetchError> {
        let mut last = String::new();
        let started = Instant::now();
        let mut rate_limited_for = Duration::ZERO;
        // Time spent on this request, less the waits a 429 asked for.
        let spent = |rl: Duration| started.elapsed().saturating_sub(rl);
        let mut attempts = 0;
        for attempt in 0..self.policy.max_attempts {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(FetchError::Cancelled);
            }
            let remaining = self.policy.deadline.saturating_sub(spent(rate_limited_for));
            if remaining.is_zero() {
                last = format!(
                    "{last} (no answer within the {:.0} s deadline)",
                    self.policy.deadline.as_secs_f64()
                );
                break;
            }
            attempts = attempt + 1;
            if attempt > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            limiter.acquire().await;
            let outcome = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| FetchError::Cancelled)?;
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
                let mut req = self
                    .client
                    .get(url)
                    .timeout(self.policy.timeout.min(remaining));
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                let sent = req.send().await;
                self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                let result = match sent {
                    Err(e) if e.is_redirect() => {
                        return Err(FetchError::Redirect(format!(
                            "refused to follow a redirect of {}: an API request may not move \
                             to another host, and at most 5 redirects are followed",
                            redact(url)
                        )));
                    }
                    Err(e) => Err(describe_reqwest(&e)),
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let retry_after = resp
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_retry_after);
                        let content_type = resp
                            .headers()
                            .get(reqwest::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let expected = resp.content_length();
                        if expected.is_some_and(|n| n > max_body as u64) {
                            return Err(FetchError::TooLarge { limit: max_body });
                        }
                        match read_capped(resp, max_body).await {
                            Err(None) => return Err(FetchError::TooLarge { limit: max_body }),
                            Err(Some(e)) => {
                                Err(format!("truncated body: {}", describe_reqwest(&e)))
                            }
                            Ok(body) => {
                                if let Some(n) = expected
                                    && n != body.len() as u64
                                {
                                    Err(format!("truncated body ({} of {n} bytes)", body.len()))
                                } else {
                                    Ok((status, retry_after, content_type, body.to_vec()))
                                }
                            }
                        }
                    }
                };
                // Let the connection task hand the connection back to the pool before the
                // permit goes, so the next request reuses it instead of opening another.
                tokio::task::yield_now().await;
                result
            };
            match outcome {
                Ok((200..=299, _, content_type, body)) => {
                    return Ok(Fetched { body, content_type });
                }
                Ok((429, retry_after, _, _)) => {
                    self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                    let wait = retry_after
                        .unwrap_or_else(|| self.backoff(attempt))
                        .min(self.policy.max_retry_after);
                    self.stats
                        .waiting_until_ms
                        .store(unix_ms() + wait.as_millis() as u64, Ordering::Relaxed);
                    limiter.hold_off(wait).await;
                    last = format!(
                        "rate limited (HTTP 429, Retry-After {:.1} s)",
                        wait.as_secs_f64()
                    );
                    log::warn!("{last}");
                    self.stats
                        .note_problem(format!("{}: {last}, waiting", host_of(url)));
                    let ms = wait.as_millis() as u64;
                    self.stats
                        .rate_limit_wait_ms
                        .fetch_add(ms, Ordering::Relaxed);
                    self.stats
                        .longest_rate_limit_wait_ms
                        .fetch_max(ms, Ordering::Relaxed);
                    self.sleep_cancellable(wait).await?;
                    rate_limited_for += wait;
                    self.stats.waiting_until_ms.store(0, Ordering::Relaxed);
                    continue;
                }
                Ok((401, _, _, body)) => return Err(FetchError::Unauthorized(tmdb_message(&body))),
                Ok((404, _, _, body)) => return Err(FetchError::NotFound(tmdb_message(&body))),
                Ok((status @ 400..=499, _, _, body)) if status != 408 => {
                    return Err(FetchError::Client {
                        status,
                        message: tmdb_message(&body),
                    });
                }
                Ok((status, _, _, body)) => {
                    last = format!("HTTP {status}{}", detail(&tmdb_message(&body)));
                }
                Err(e) => last = e,
            }
            if attempt + 1 < self.policy.max_attempts {
                let wait = self.backoff(attempt);
                if spent(rate_limited_for) + wait >= self.policy.deadline {
                    last = format!(
                        "{last} (no answer within the {:.0} s deadline)",
                        self.policy.deadline.as_secs_f64()
                    );
                    break;
                }
                log::info!("retrying {}: {last}", redact(url));
                self.stats.note_problem(format!(
                    "{}: {last}; retrying in {:.1} s ({} of {} attempts left)",
                    host_of(url),
                    wait.as_secs_f64(),
                    self.policy.max_attempts - attempt - 1,
                    self.policy.max_attempts
                ));
                self.sleep_cancellable(wait).await?;
            }
        }
        self.stats.note_problem(format!(
            "{}: gave up after {attempts} attempts: {last}",
            host_of(url)
        ));
        Err(FetchError::GaveUp { attempts, last })
    }
}

/// Reads a body chunk by chunk, stopping (`Err(None)`) as soon as it passes `max`.
async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, Option<reqwest::Error>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Some)? {
        if body.len() + chunk.len() > max {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body interrupted"
    } else {
        "network error"
    };
    // reqwest's message may carry the URL, and with it the key: strip it. The causes
    // (a refused redirect's reason, say) follow it.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        msg.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), &redact(url.as_str()));
    }
    format!("{kind}: {}", redact(&msg))
}

/// Parses a `Retry-After` header: seconds (possibly fractional). HTTP dates are treated
/// as "a little while" (10 s), since clocks may disagree.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        // Clamped before the conversion: `1e20` or `inf` must not panic.
        return (!secs.is_nan() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER_SECS)));
    }
    (!v.is_empty()).then(|| Duration::from_secs(10))
}

/// Removes the `api_key` value from a URL for logs and messages.
pub fn redact(url: &str) -> String {
    let Some(pos) = url.find("api_key=") else {
        return url.to_owned();
    };
    let start = pos + "api_key=".len();
    let end = url[start..].find('&').map_or(url.len(), |e| start + e);
    format!("{}***{}", &url[..start], &url[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_and_redaction() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("1e20"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_retry_after("inf"), Some(Duration::from_secs(3600)));
        // Absurd rates never build an invalid Duration.
        let _ = RateLimiter::new(1e-300);
        let _ = RateLimiter::new(f64::INFINITY);
        let _ = RateLimiter::new(f64::NAN);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            redact("http://x/3/discover/movie?api_key=SECRET&page=2"),
            "http://x/3/discover/movie?api_key=***&page=2"
        );
        assert_eq!(redact("http://x/?api_key=SECRET"), "http://x/?api_key=***");
        assert_eq!(
            tmdb_message(br#"{"status_code":7,"status_message":"Invalid API key: You must be granted a valid key.","success":false}"#),
            "Invalid API key: You must be granted a valid key. (TMDB code 7)"
        );
        assert_eq!(tmdb_message(b"<html>oops</html>"), "<html>oops</html>");
    }
}
