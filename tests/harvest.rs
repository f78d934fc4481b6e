//! Harvest tests against the mock TMDB server on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use movie_eras::catalog::{Catalog, PosterStatus};
use movie_eras::harvest::fetch::{FetchError, Fetcher, RateLimiter, RetryPolicy};
use movie_eras::harvest::mock::{Fault, MockConfig, MockTmdb};
use movie_eras::harvest::tmdb::Auth;
use movie_eras::harvest::{
    HarvestControl, HarvestError, HarvestEvent, HarvestOptions, HarvestSummary, run_harvest,
};
use movie_eras::jobs::{JobHandle, Progress, no_waker};

const BIN: &str = env!("CARGO_BIN_EXE_movie-eras");

fn options(mock: &MockTmdb, data: &Path, from: i32, to: i32, per_year: u32) -> HarvestOptions {
    let mut o = HarvestOptions::new(from, to, data.join("posters"));
    o.per_year = per_year;
    o.auth = Auth::ApiKey("good-key".into());
    o.api_url = mock.base_url();
    o.image_url = mock.image_url();
    o.site_url = mock.base_url();
    o.api_rate = 0.0;
    o.connections = 6;
    o.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    o
}

fn harvest(
    data: &Path,
    opts: &HarvestOptions,
) -> (Result<HarvestSummary, String>, Vec<HarvestEvent>) {
    let (progress, rx) = Progress::channel();
    let r = run_harvest(
        &data.join("catalog.sqlite"),
        opts,
        &HarvestControl::default(),
        &progress,
    )
    .map_err(|e| e.to_string());
    drop(progress);
    (r, rx.into_iter().collect())
}

/// Blocks until the mock answers one more request (a guard of a minute against a hang).
fn next_request(mock: &MockTmdb) {
    let seen = mock.log().len();
    assert!(
        mock.wait_for_log(Duration::from_secs(60), |log| log.len() > seen),
        "the harvest sent no request for a minute"
    );
}

fn keyed_mock(config: MockConfig) -> MockTmdb {
    MockTmdb::start(MockConfig {
        api_key: Some("good-key".into()),
        bearer: Some("good-token".into()),
        ..config
    })
    .unwrap()
}

#[test]
fn api_harvest_stores_movies_posters_and_genres_within_the_connection_bound() {
    let mock = keyed_mock(MockConfig {
        default_per_year: 50,
        no_poster_every: 10,
        latency: Duration::from_millis(5),
        ..MockConfig::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(&mock, tmp.path(), 2000, 2002, 30);
    let (r, events) = harvest(tmp.path(), &opts);
    let s = r.unwrap();
    // 30 per year; every 10th movie has no poster on TMDB.
    assert_eq!(s.listed, 90);
    assert_eq!(s.ok, 81, "{s:?}");
    assert_eq!(s.pages, 6);
    let cat = Catalog::open(&tmp.path().join("catalog.sqlite")).unwrap();
    let c = cat.counts().unwrap();
    assert_eq!((c.movies, c.ok, c.failed, c.pending), (90, 81, 9, 0));
    let rows = cat.movies().unwrap();
    let first = rows
        .iter()
        .find(|r| r.tmdb_id == Some(MockTmdb::movie_id(2000, 0)))
        .unwrap();
    assert_eq!(first.year, Some(2000));
    assert_eq!(first.title, "Movie 2000-0");
    assert!(first.genres.contains("Action"), "{}", first.genres);
    let file = first.poster_file.clone().unwrap();
    assert!(file.starts_with("posters/"), "{file}");
    assert!(tmp.path().join(&file).is_file());
    // A w154 poster fits the thumbnail box: the catalog keeps no copy of its pixels.
    assert!(cat.thumbnail(first.poster_id.unwrap()).unwrap().is_none());
    let no_poster = rows
        .iter()
        .find(|r| r.status == Some(PosterStatus::Failed))
        .unwrap();
    assert!(no_poster.reason.as_deref().unwrap().contains("no poster"));
    // Requests in flight never exceed the bound. Open sockets may exceed it for a moment:
    // hyper hands a finished connection back to its pool on another task, and a request
    // that starts in between opens a new one (seen under load: 7 with a bound of 6).
    // reqwest has no hard per-host connection cap; the pool keeps at most 6 idle.
    assert!(mock.stats().max_in_flight.load(Ordering::SeqCst) <= 6);
    let sockets = mock.stats().max_connections.load(Ordering::SeqCst);
    assert!(
        sockets <= 6 + 2,
        "{sockets} sockets open at once with a bound of 6"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, HarvestEvent::Progress(p) if p.ok == 81))
    );
    // The key never reaches the catalog's job record.
    let jobs = cat.harvest_jobs().unwrap();
    assert_eq!(jobs[0].status, "done");
    assert!(!jobs[0].params.contains("good-key"));
    // Nothing half-written is left behind.
    for f in std::fs::read_dir(tmp.path().join("posters")).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".part"), "{name}");
    }
    // A second run has nothing to do and duplicates nothing.
    let (r2, _) = harvest(tmp.path(), &opts);
    let s2 = r2.unwrap();
    assert_eq!((s2.ok, s2.listed, s2.pages), (0, 0, 0));
    assert_eq!(cat.counts().unwrap().movies, 90);
}

#[test]
fn bearer_token_works_and_a_wrong_key_is_reported() {
    let mock = keyed_mock(MockConfig {
        default_per_year: 5,
        ..MockConfig::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(&mock, tmp.path(), 1990, 1990, 5);
    opts.auth = Auth::Bearer("good-token".into());
    assert_eq!(harvest(tmp.path(), &opts).0.unwrap().ok, 5);

    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(&mock, tmp.path(), 1990, 1991, 5);
    opts.auth = Auth::ApiKey("bad-key".into());
    let err = harvest(tmp.path(), &opts).0.unwrap_err();
    assert!(err.contains("rejected the API key"), "{err}");
    assert!(err.contains("Invalid API key"), "{err}");
    assert!(
        !err.contains("bad-key"),
        "the key leaked into the message: {err}"
    );
    let cat = Catalog::open(&tmp.path().join("catalog.sqlite")).unwrap();
    assert_eq!(cat.counts().unwrap().movies, 0);
    assert_eq!(cat.harvest_jobs().unwrap()[0].status, "failed");
}

#[test]
fn rate_limits_server_errors_and_bad_bodies_are_survived() {
    let mock = keyed_mock(MockConfig {
        default_per_year: 20,
        ..MockConfig::default()
    });
    let id = |i| MockTmdb::movie_id(2010, i);
    mock.inject(
        "/3/discover/movie",
        vec![
            Fault::RateLimited("0.3".into()),
            Fault::Status(500),
            Fault::Junk,
        ],
    );
    mock.inject(
        &format!("/t/p/w154/p{}.jpg", id(0)),
        vec![Fault::Status(503), Fault::Truncate],
    );
    mock.inject(&format!("/t/p/w154/p{}.jpg", id(1)), vec![Fault::Junk]);
    // Junk on every attempt: given up with the reason.
    mock.inject(
        &format!("/t/p/w154/p{}.jpg", id(2)),
        vec![Fault::Junk, Fault::Junk],
    );
    mock.inject(
        &format!("/t/p/w154/p{}.jpg", id(3)),
        vec![Fault::Status(404)],
    );
    mock.inject(
        &format!("/t/p/w154/p{}.jpg", id(4)),
        vec![Fault::RateLimited("0.2".into())],
    );
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(&mock, tmp.path(), 2010, 2010, 20);
    let s = harvest(tmp.path(), &opts).0.unwrap();
    // The fetcher's own record of the waits Retry-After asked for (no clock in the test).
    assert!(
        s.rate_limit_wait_secs >= 0.2,
        "Retry-After was not honoured: {s:?}"
    );
    assert_eq!(s.rate_limited, 2);
    assert!(s.retries >= 4, "{s:?}");
    assert_eq!((s.ok, s.failed), (18, 2), "{s:?}");
    let cat = Catalog::open(&tmp.path().join("catalog.sqlite")).unwrap();
    let rows = cat.movies().unwrap();
    let reason = |i| {
        rows.iter()
            .find(|r| r.tmdb_id == Some(id(i)))
            .and_then(|r| r.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason(2).contains("not an image"), "{}", reason(2));
    assert!(reason(3).contains("404"), "{}", reason(3));
    for i in [0, 1, 4] {
        assert_eq!(reason(i), "");
    }
}

#[test]
fn fetcher_reports_client_errors_and_gives_up_on_persistent_5xx() {
    let mock = MockTmdb::start(MockConfig::default()).unwrap();
    mock.inject("/3/discover/movie", vec![Fault::Status(500); 3]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fetcher = Fetcher::new(
        2,
        "test",
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let limiter = RateLimiter::new(0.0);
    let base = mock.base_url();
    let page501 = format!("{base}/3/discover/movie?primary_release_year=2000&page=501");
    // The three 500s are consumed by the first request, which gives up.
    let r = rt.block_on(fetcher.get(&page501, &[], &limiter));
    assert!(
        matches!(&r, Err(FetchError::GaveUp { attempts: 3, last }) if last.contains("500")),
        "{r:?}"
    );
    let r = rt.block_on(fetcher.get(&page501, &[], &limiter));
    match r {
        Err(FetchError::Client {
            status: 422,
            message,
        }) => assert!(message.contains("Invalid page"), "{message}"),
        other => panic!("{other:?}"),
    }
    let r = rt.block_on(fetcher.get(&format!("{base}/nope"), &[], &limiter));
    assert!(matches!(r, Err(FetchError::NotFound(_))), "{r:?}");
}

#[test]
fn website_mode_parses_cards_without_a_key() {
    let mock = MockTmdb::start(MockConfig {
        default_per_year: 30,
        no_poster_every: 7,
        ..MockConfig::default()
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(&mock, tmp.path(), 1977, 1977, 25);
    opts.auth = Auth::None;
    let s = harvest(tmp.path(), &opts).0.unwrap();
    assert_eq!(s.listed, 25);
    assert_eq!(s.ok, 22, "{s:?}");
    assert!(
        mock.log().iter().all(|l| !l.starts_with("/3/")),
        "website mode used the API"
    );
    let cat = Catalog::open(&tmp.path().join("catalog.sqlite")).unwrap();
    let rows = cat.movies().unwrap();
    let m = rows
        .iter()
        .find(|r| r.tmdb_id == Some(MockTmdb::movie_id(1977, 3)))
        .unwrap();
    assert_eq!(m.title, "Movie 1977-3");
    assert_eq!(m.year, Some(1977));
    assert_eq!(m.status, Some(PosterStatus::Ok));
}

#[test]
fn a_year_beyond_500_pages_is_split_by_month_and_cancel_stops_cleanly() {
    let mock = keyed_mock(MockConfig {
        default_per_year: 12_000,
        latency: Duration::from_millis(2),
        ..MockConfig::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(&mock, tmp.path(), 1999, 1999, 10_020);
    opts.connections = 4;
    let db = tmp.path().join("catalog.sqlite");
    let job: JobHandle<HarvestSummary, HarvestEvent, HarvestError> = {
        let opts = opts.clone();
        JobHandle::spawn("harvest", no_waker(), move |control, progress| {
            run_harvest(&db, &opts, control, progress)
        })
        .unwrap()
    };
    let split = mock.wait_for_log(Duration::from_secs(120), |log| {
        log.iter()
            .any(|l| l.contains("primary_release_date.gte=1999-02-01"))
    });
    assert!(
        split,
        "the year was not split: {:?}",
        &mock.log()[..3.min(mock.log().len())]
    );
    job.cancel();
    let mut notes = Vec::new();
    let s = job
        .join_with(|e| {
            if let HarvestEvent::Note(n) = e {
                notes.push(n);
            }
        })
        .unwrap();
    assert!(s.cancelled);
    assert!(notes.iter().any(|n| n.contains("splitting")), "{notes:?}");
    assert!(
        !mock
            .log()
            .iter()
            .any(|l| l.contains("primary_release_year=1999"))
    );
    let cat = Catalog::open(&tmp.path().join("catalog.sqlite")).unwrap();
    assert_eq!(cat.integrity_check().unwrap(), "ok");
    assert_eq!(cat.harvest_jobs().unwrap()[0].status, "cancelled");
}

#[test]
fn killed_harvest_resumes_with_nothing_lost_or_duplicated() {
    let mock = keyed_mock(MockConfig {
        default_per_year: 60,
        latency: Duration::from_millis(15),
        ..MockConfig::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = data.join("catalog.sqlite");
    let args = |_: ()| {
        let mut c = Command::new(BIN);
        c.arg("--data-dir")
            .arg(&data)
            .args([
                "harvest",
                "--from",
                "1950",
                "--to",
                "1953",
                "--per-year",
                "60",
                "--connections",
                "4",
            ])
            .args([
                "--api-url",
                &mock.base_url(),
                "--image-url",
                &mock.image_url(),
                "--api-rate",
                "0",
            ])
            .env("TMDB_API_KEY", "good-key")
            .env_remove("TMDB_BEARER_TOKEN")
            .env("HOME", tmp.path())
            .env("XDG_CONFIG_HOME", tmp.path().join("cfg"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let mut child = args(()).spawn().unwrap();
    // Checked at each request the mock answers: no sleeping, no clock.
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("harvest ended before it was killed: {status}");
        }
        if db.exists()
            && let Ok(c) = Catalog::open(&db).and_then(|c| c.counts())
            && c.ok >= 30
        {
            break;
        }
        next_request(&mock);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    {
        let cat = Catalog::open(&db).unwrap();
        assert_eq!(cat.integrity_check().unwrap(), "ok");
        let c = cat.counts().unwrap();
        assert!(c.ok < 240, "finished before the kill: {c:?}");
        // Every poster marked ok has its file, whole.
        for r in cat.movies().unwrap() {
            if r.status == Some(PosterStatus::Ok) {
                let bytes = std::fs::read(data.join(r.poster_file.unwrap())).unwrap();
                assert_eq!(
                    movie_eras::imaging::sha256_hex(&bytes),
                    r.poster_sha256.unwrap()
                );
            }
        }
    }
    let out = args(()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cat = Catalog::open(&db).unwrap();
    let c = cat.counts().unwrap();
    assert_eq!((c.movies, c.ok, c.failed, c.pending), (240, 240, 0, 0));
    let mut ids: Vec<i64> = cat
        .movies()
        .unwrap()
        .iter()
        .filter_map(|r| r.tmdb_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 240);
    let files = std::fs::read_dir(data.join("posters")).unwrap().count();
    assert_eq!(files, 240, "stray or missing poster files");
}

fn quick_fetcher(attempts: u32) -> Fetcher {
    Fetcher::new(
        2,
        "test",
        RetryPolicy {
            max_attempts: attempts,
            base_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_millis(50),
            ..RetryPolicy::default()
        },
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
}

#[test]
fn api_calls_are_never_redirected_to_another_host_and_no_referer_leaks_the_key() {
    let api = MockTmdb::start(MockConfig::default()).unwrap();
    let other = MockTmdb::start(MockConfig::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fetcher = quick_fetcher(3);
    let limiter = RateLimiter::new(0.0);
    // An API call redirected to another host: refused at once, nothing reaches it.
    api.inject(
        "/3/discover/movie",
        vec![Fault::Redirect(format!(
            "{}/3/discover/movie",
            other.base_url()
        ))],
    );
    let url = format!(
        "{}/3/discover/movie?primary_release_year=2000&page=1&api_key=SECRET",
        api.base_url()
    );
    let r = rt.block_on(fetcher.get(&url, &[], &limiter));
    assert!(
        matches!(&r, Err(FetchError::Redirect(m)) if m.contains("another host") && !m.contains("SECRET")),
        "{r:?}"
    );
    assert!(
        other.header_log().is_empty(),
        "the other host was contacted"
    );
    // An image may move to another CDN host: followed, without a Referer.
    api.inject(
        "/t/p/w154/",
        vec![Fault::Redirect(format!(
            "{}/t/p/w154/x.jpg",
            other.base_url()
        ))],
    );
    let img = format!("{}/w154/x.jpg", api.image_url());
    let _ = rt.block_on(fetcher.get(&img, &[], &limiter));
    let seen = other.header_log();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!seen[0].1.contains_key("referer"), "{seen:?}");
    assert!(!seen[0].1.contains_key("authorization"), "{seen:?}");
}

#[test]
fn absurd_retry_after_is_clamped_and_huge_bodies_are_refused() {
    let mock = MockTmdb::start(MockConfig::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fetcher = quick_fetcher(3);
    let limiter = RateLimiter::new(0.0);
    let url = format!(
        "{}/3/discover/movie?primary_release_year=2000&page=1",
        mock.base_url()
    );
    // Retry-After: 1e20 used to panic building the Duration.
    mock.inject(
        "/3/discover/movie",
        vec![
            Fault::RateLimited("1e20".into()),
            Fault::RateLimited("inf".into()),
        ],
    );
    let r = rt.block_on(fetcher.get(&url, &[], &limiter));
    assert!(r.is_ok(), "{r:?}");
    // Each wait was clamped to the policy's cap.
    assert!(
        fetcher
            .stats
            .longest_rate_limit_wait_ms
            .load(Ordering::Relaxed)
            <= 50
    );
    // A 20 MB JSON body is cut off at the API cap while streaming, without retries.
    mock.inject("/3/discover/movie", vec![Fault::Huge(20 << 20)]);
    let before = mock.stats().requests.load(Ordering::Relaxed);
    let r = rt.block_on(fetcher.get(&url, &[], &limiter));
    assert!(matches!(r, Err(FetchError::TooLarge { .. })), "{r:?}");
    assert_eq!(mock.stats().requests.load(Ordering::Relaxed), before + 1);
}

#[test]
fn absurd_rates_are_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_movie-eras"))
        .args(["--data-dir"])
        .arg(tmp.path())
        .args(["harvest", "--api-rate", "1e-300", "--api-key", "k"])
        .args([
            "--api-url",
            "http://127.0.0.1:9",
            "--from",
            "2000",
            "--to",
            "2000",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--api-rate"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_website_page_without_cards_fails_and_is_asked_for_again_next_run() {
    let mock = MockTmdb::start(MockConfig {
        default_per_year: 10,
        ..MockConfig::default()
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(&mock, tmp.path(), 1977, 1977, 10);
    opts.auth = Auth::None;
    // A bot-check page (no cards) answers the first run.
    mock.inject("/movie", vec![Fault::Junk]);
    let (r, _) = harvest(tmp.path(), &opts);
    let err = r.err().unwrap();
    assert!(err.contains("no movie cards"), "{err}");
    // The page was not stored as "page 1 of 1": a plain rerun lists the year.
    let s = harvest(tmp.path(), &opts).0.unwrap();
    assert_eq!(s.listed, 10, "{s:?}");
}

#[test]
fn a_bearer_token_with_a_newline_gets_a_clear_message_at_once() {
    let mock = keyed_mock(MockConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(&mock, tmp.path(), 2000, 2000, 5);
    opts.auth = Auth::Bearer("good-token\n".into());
    let err = harvest(tmp.path(), &opts).0.err().unwrap();
    assert!(err.contains("line break"), "{err}");
    assert!(
        !err.contains("good-token"),
        "the token is not echoed: {err}"
    );
    // At once: not a single request was tried.
    assert_eq!(mock.stats().requests.load(Ordering::Relaxed), 0);
}

#[test]
fn a_hanging_server_costs_at_most_the_deadline_per_request() {
    let mock = MockTmdb::start(MockConfig::default()).unwrap();
    // Every attempt hangs far longer than the per-attempt timeout.
    mock.inject(
        "/3/discover/movie",
        vec![Fault::Delay(Duration::from_secs(3)); 20],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fetcher = Fetcher::new(
        2,
        "test",
        RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(10),
            timeout: Duration::from_millis(300),
            deadline: Duration::from_millis(1000),
            ..RetryPolicy::default()
        },
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let limiter = RateLimiter::new(0.0);
    let url = format!("{}/3/discover/movie?page=1", mock.base_url());
    let r = rt.block_on(fetcher.get(&url, &[], &limiter));
    match r {
        Err(FetchError::GaveUp { attempts, last }) => {
            assert!(attempts < 20, "{attempts}");
            assert!(last.contains("deadline"), "{last}");
        }
        other => panic!("{other:?}"),
    }
    // The deadline, not the attempts, ended it: far fewer tries than allowed were sent.
    assert!(mock.stats().requests.load(Ordering::Relaxed) < 20);
}

/// `movie-eras harvest` against `mock` on `data`, `per_year` movies of 1960–1961.
fn harvest_cli(mock: &MockTmdb, home: &Path, data: &Path, per_year: &str) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--data-dir")
        .arg(data)
        .args(["harvest", "--from", "1960", "--to", "1961"])
        .args([
            "--per-year",
            per_year,
            "--connections",
            "2",
            "--api-rate",
            "0",
        ])
        .args([
            "--api-url",
            &mock.base_url(),
            "--image-url",
            &mock.image_url(),
        ])
        .env("TMDB_API_KEY", "good-key")
        .env_remove("TMDB_BEARER_TOKEN")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("cfg"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn a_second_harvest_on_one_data_dir_refuses_while_an_import_and_readers_keep_working() {
    let mock = keyed_mock(MockConfig {
        default_per_year: 40,
        latency: Duration::from_millis(40),
        ..MockConfig::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = data.join("catalog.sqlite");
    // Posters to import while the harvest writes.
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let mut csv = String::new();
    for i in 0..150u32 {
        let name = format!("p{i}.jpg");
        common::write_jpeg(&imgs.join(&name), &common::poster(i, 154, 231));
        csv += &format!("{name},{}\n", 1930 + (i % 40));
    }
    let labels = tmp.path().join("labels.csv");
    std::fs::write(&labels, csv).unwrap();

    let mut first = harvest_cli(&mock, tmp.path(), &data, "40").spawn().unwrap();
    while !(db.exists()
        && Catalog::open(&db)
            .and_then(|c| c.counts())
            .is_ok_and(|c| c.ok >= 3))
    {
        assert!(
            first.try_wait().unwrap().is_none(),
            "harvest ended too soon"
        );
        next_request(&mock);
    }
    // The same kind of job refuses at start, naming the running one.
    let second = harvest_cli(&mock, tmp.path(), &data, "40")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains("another harvest is running on this data directory")
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    // Another kind of job and the readers work meanwhile.
    let import = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "import",
            imgs.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
        ])
        .args(["--batch", "4"])
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let status = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(
        first.try_wait().unwrap().is_none(),
        "the harvest ended during the import: the test proves nothing"
    );
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = Catalog::open(&db).unwrap().counts().unwrap();
    assert_eq!((c.movies, c.ok, c.pending), (230, 230, 0), "{c:?}");
    // With the first one done, a harvest may run again.
    let again = harvest_cli(&mock, tmp.path(), &data, "40")
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// `(status, transient, reason)` of the poster of `tmdb_id`.
fn poster_state(db: &Path, tmdb_id: i64) -> (String, bool, String) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT p.status, p.transient, coalesce(p.reason, '') FROM posters p
         JOIN movies m ON m.id = p.movie_id WHERE m.tmdb_id = ?1",
        [tmdb_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

#[test]
fn damaged_downloads_get_the_retry_budget_and_transient_failures_retry_on_resume() {
    let mock = keyed_mock(MockConfig {
        default_per_year: 10,
        ..MockConfig::default()
    });
    let id = |i| MockTmdb::movie_id(2011, i);
    let path = |i| format!("/t/p/w154/p{}.jpg", id(i));
    // Damage the transfer cannot see, three times: stored on the fourth download.
    mock.inject(
        &path(0),
        vec![Fault::Corrupt, Fault::Corrupt, Fault::Corrupt],
    );
    // The same broken file every time: permanent.
    mock.inject(&path(1), vec![Fault::Junk, Fault::Junk, Fault::Junk]);
    // Server errors past the budget: transient.
    mock.inject(&path(2), vec![Fault::Status(503); 4]);
    // Damage past the budget: transient.
    mock.inject(&path(3), vec![Fault::Corrupt; 4]);
    mock.inject(&path(4), vec![Fault::Status(404)]);
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("catalog.sqlite");
    let opts = options(&mock, tmp.path(), 2011, 2011, 10);
    let s = harvest(tmp.path(), &opts).0.unwrap();
    assert_eq!((s.ok, s.failed), (6, 4), "{s:?}");
    assert_eq!(poster_state(&db, id(0)).0, "ok");
    let (status, transient, reason) = poster_state(&db, id(1));
    assert_eq!((status.as_str(), transient), ("failed", false), "{reason}");
    assert!(reason.contains("the same broken file twice"), "{reason}");
    let (status, transient, reason) = poster_state(&db, id(2));
    assert_eq!((status.as_str(), transient), ("failed", true), "{reason}");
    assert!(reason.contains("503"), "{reason}");
    let (status, transient, reason) = poster_state(&db, id(3));
    assert_eq!((status.as_str(), transient), ("failed", true), "{reason}");
    assert!(
        reason.contains("still damaged after 4 downloads"),
        "{reason}"
    );
    let (_, transient, reason) = poster_state(&db, id(4));
    assert!(!transient && reason.contains("404"), "{reason}");
    // A later run, without --retry-failed, retries the transient ones by itself.
    let s = harvest(tmp.path(), &opts).0.unwrap();
    assert_eq!((s.ok, s.failed), (2, 0), "{s:?}");
    for i in [2, 3] {
        assert_eq!(
            poster_state(&db, id(i)),
            ("ok".into(), false, String::new())
        );
    }
    assert_eq!(poster_state(&db, id(1)).0, "failed");
    // --retry-failed asks for the permanent ones too.
    let mut retry = opts.clone();
    retry.retry_failed = true;
    let s = harvest(tmp.path(), &retry).0.unwrap();
    assert_eq!(s.ok + s.failed, 2, "{s:?}");
}

#[test]
fn a_movie_listed_twice_on_a_page_counts_once_and_the_progress_says_what_fails() {
    let mock = keyed_mock(MockConfig {
        default_per_year: 12,
        ..MockConfig::default()
    });
    mock.inject("/3/discover/movie", vec![Fault::DuplicateFirst]);
    mock.inject(
        &format!("/t/p/w154/p{}.jpg", MockTmdb::movie_id(2012, 5)),
        vec![Fault::Status(502); 2],
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(&mock, tmp.path(), 2012, 2012, 12);
    opts.retry.base_delay = Duration::from_millis(400);
    opts.retry.max_delay = Duration::from_millis(400);
    let (r, events) = harvest(tmp.path(), &opts);
    let s = r.unwrap();
    assert_eq!((s.listed, s.ok), (12, 12), "{s:?}");
    let problems: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            HarvestEvent::Progress(p) => p.problem.clone(),
            _ => None,
        })
        .collect();
    assert!(
        problems.iter().any(|p| p.contains("HTTP 502")
            && p.contains("attempts left")
            && p.contains("127.0.0.1")
            && !p.contains("good-key")),
        "{problems:?}"
    );
}

#[test]
fn a_malformed_config_file_is_reported_not_taken_for_no_key() {
    let mock = keyed_mock(MockConfig::default());
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("cfg/movie-eras/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    // An unquoted key: not TOML.
    std::fs::write(&config, "tmdb_api_key = secret-123\n").unwrap();
    let data = tmp.path().join("data");
    let out = harvest_cli(&mock, tmp.path(), &data, "2")
        .env_remove("TMDB_API_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("config.toml"), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
    assert!(stderr.contains("--no-key"), "{stderr}");
    assert!(!stderr.contains("secret-123"), "{stderr}");
    assert_eq!(mock.stats().requests.load(Ordering::SeqCst), 0);
    // With a key given, the file is not needed: a warning, and the harvest runs.
    let out = harvest_cli(&mock, tmp.path(), &data, "2").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(!stderr.contains("secret-123"), "{stderr}");
}
