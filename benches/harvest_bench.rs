//! Harvest throughput on the mock TMDB server with 20 ms latency per request:
//! this harvester vs. a sequential one-at-a-time loop vs. the seed's "one thread per year,
//! posters one by one inside it" pool of 20, all in the same run. Every variant does the
//! same per-poster work: download, decode and validate, thumbnail, colour statistics,
//! atomic file write, catalog commit.
//!
//! `cargo bench --bench harvest_bench` (options: `-- --latency-ms 20 --quick`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use movie_eras::catalog::{Catalog, NewMovie};
use movie_eras::harvest::mock::{MockConfig, MockTmdb};
use movie_eras::harvest::tmdb::{Auth, DateWindow, DiscoverPage, DiscoverQuery};
use movie_eras::harvest::{HarvestControl, HarvestOptions, process_download, run_harvest};
use movie_eras::imaging::ImageLimits;

struct Workload {
    name: &'static str,
    from: i32,
    to: i32,
    per_year: u32,
}

impl Workload {
    fn posters(&self) -> u32 {
        (self.to - self.from + 1) as u32 * self.per_year
    }
}

fn process_and_store(
    catalog: &Mutex<Catalog>,
    dir: &Path,
    m: &movie_eras::harvest::tmdb::DiscoverMovie,
    body: &[u8],
    year: i32,
) -> bool {
    let name = format!("{}.jpg", m.id);
    let Ok(mut poster) = process_download(body, &ImageLimits::default(), name.clone()) else {
        return false;
    };
    movie_eras::fsutil::write_atomic(&dir.join(&name), body).unwrap();
    poster.remote_path.clone_from(&m.poster_path);
    let movie = NewMovie {
        source_key: format!("tmdb:{}", m.id),
        source: "bench".into(),
        tmdb_id: Some(m.id),
        title: m.title.clone(),
        year: Some(year),
        release_date: m.release_date.clone(),
        genres: Vec::new(),
        popularity: m.popularity,
        vote_average: m.vote_average,
        vote_count: m.vote_count,
        poster,
    };
    catalog.lock().unwrap().insert_movies(&[movie]).unwrap();
    true
}

async fn get_bytes(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let resp = client.get(url).send().await.unwrap();
    resp.bytes().await.unwrap().to_vec()
}

/// One year, one request at a time: listing pages, then each poster in turn.
fn harvest_year_sequentially(
    mock: &MockTmdb,
    catalog: &Mutex<Catalog>,
    dir: &Path,
    year: i32,
    per_year: u32,
    limit: Option<u32>,
) -> u32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    movie_eras::harvest::fetch::ensure_crypto_provider();
    let client = reqwest::Client::new();
    let query = DiscoverQuery {
        window: DateWindow::Year(year),
        sort_by: "revenue.desc".into(),
        min_votes: None,
    };
    let mut done = 0;
    let limit = limit.unwrap_or(per_year).min(per_year);
    let pages = per_year.div_ceil(20);
    rt.block_on(async {
        for page in 1..=pages {
            let url = query.api_url(&mock.base_url(), page);
            let body = get_bytes(&client, &url).await;
            let dp: DiscoverPage = serde_json::from_slice(&body).unwrap();
            for m in &dp.results {
                if done >= limit {
                    return;
                }
                let Some(path) = &m.poster_path else { continue };
                let url = format!("{}/w154{path}", mock.image_url());
                let body = get_bytes(&client, &url).await;
                if process_and_store(catalog, dir, m, &body, year) {
                    done += 1;
                }
            }
        }
    });
    done
}

// Each variant gets its own new directory and nothing is deleted before the end: deleting
// thousands of files just before a run makes ext4 scan past recently freed inodes.
fn fresh(dir: &Path) -> (Mutex<Catalog>, std::path::PathBuf) {
    std::fs::create_dir_all(dir.join("posters")).unwrap();
    (
        Mutex::new(Catalog::open(&dir.join("catalog.sqlite")).unwrap()),
        dir.join("posters"),
    )
}

fn sequential(mock: &MockTmdb, w: &Workload, dir: &Path, cap: u32) -> (u32, Duration) {
    let (catalog, posters) = fresh(dir);
    let start = Instant::now();
    let mut done = 0;
    for year in w.from..=w.to {
        if done >= cap {
            break;
        }
        done +=
            harvest_year_sequentially(mock, &catalog, &posters, year, w.per_year, Some(cap - done));
    }
    (done, start.elapsed())
}

fn seed_pool(mock: &MockTmdb, w: &Workload, dir: &Path, threads: usize) -> (u32, Duration) {
    let (catalog, posters) = fresh(dir);
    let catalog = Arc::new(catalog);
    let years: Arc<Mutex<Vec<i32>>> = Arc::new(Mutex::new((w.from..=w.to).rev().collect()));
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let years = Arc::clone(&years);
            let catalog = Arc::clone(&catalog);
            let tx = tx.clone();
            let posters = posters.clone();
            s.spawn(move || {
                loop {
                    let Some(year) = years.lock().unwrap().pop() else {
                        break;
                    };
                    let n =
                        harvest_year_sequentially(mock, &catalog, &posters, year, w.per_year, None);
                    tx.send(n).unwrap();
                }
            });
        }
    });
    drop(tx);
    (rx.iter().sum(), start.elapsed())
}

fn ours(mock: &MockTmdb, w: &Workload, dir: &Path, connections: usize) -> (u32, Duration, u64) {
    let mut o = HarvestOptions::new(w.from, w.to, dir.join("posters"));
    o.per_year = w.per_year;
    o.auth = Auth::ApiKey("bench".into());
    o.api_url = mock.base_url();
    o.image_url = mock.image_url();
    o.api_rate = 0.0;
    o.connections = connections;
    let (tx, rx) = mpsc::channel();
    let drain = std::thread::spawn(move || rx.into_iter().count());
    let start = Instant::now();
    let s = run_harvest(
        &dir.join("catalog.sqlite"),
        &o,
        &HarvestControl::default(),
        &tx,
    )
    .unwrap();
    let t = start.elapsed();
    drop(tx);
    let _ = drain.join();
    (s.ok as u32, t, s.requests)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let latency_ms: u64 = args
        .iter()
        .position(|a| a == "--latency-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let quick = args.iter().any(|a| a == "--quick");
    // `--only-ours` skips the slow baselines (for profiling the harvester alone).
    let only_ours = args.iter().any(|a| a == "--only-ours");
    let latency = Duration::from_millis(latency_ms);
    let mock = MockTmdb::start(MockConfig {
        latency,
        default_per_year: 400,
        ..MockConfig::default()
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let connections = 20usize;
    let workloads = if quick {
        vec![Workload {
            name: "8 years x 60",
            from: 2010,
            to: 2017,
            per_year: 60,
        }]
    } else {
        vec![
            Workload {
                name: "deep: 8 years x 250 (2015-2022)",
                from: 2015,
                to: 2022,
                per_year: 250,
            },
            Workload {
                name: "wide: 87 years x 20 (1939-2025)",
                from: 1939,
                to: 2025,
                per_year: 20,
            },
        ]
    };
    println!(
        "Mock TMDB on 127.0.0.1, {latency_ms} ms latency per request, {connections} connections; \
         {} CPU cores. Posters/s (higher is better).\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| workload | variant | posters | seconds | posters/s | vs seed pool | of 20-connection bound |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for w in &workloads {
        let cap = if quick { 40 } else { 150 };
        let (n_ours, t_ours, requests) = ours(
            &mock,
            w,
            &tmp.path().join(format!("ours-{}", w.from)),
            connections,
        );
        if only_ours {
            println!(
                "| {} | movie-eras harvest | {n_ours} | {:.2} | {:.0} | | |",
                w.name,
                t_ours.as_secs_f64(),
                f64::from(n_ours) / t_ours.as_secs_f64()
            );
            continue;
        }
        let (n_seq, t_seq) = sequential(
            &mock,
            w,
            &tmp.path().join(format!("seq-{}", w.from)),
            cap.min(w.posters()),
        );
        let (n_seed, t_seed) = seed_pool(
            &mock,
            w,
            &tmp.path().join(format!("seed-{}", w.from)),
            connections,
        );
        assert_eq!(n_ours, w.posters(), "harvester missed posters");
        assert_eq!(n_seed, w.posters(), "seed pool missed posters");
        let rate = |n: u32, t: Duration| f64::from(n) / t.as_secs_f64();
        let seed_rate = rate(n_seed, t_seed);
        // 20 connections each completing one request per latency period; listing pages
        // take their share of requests.
        let bound =
            connections as f64 / latency.as_secs_f64() * f64::from(n_ours) / requests as f64;
        for (variant, n, t) in [
            ("sequential, one at a time", n_seq, t_seq),
            ("seed: thread per year, pool of 20", n_seed, t_seed),
            ("movie-eras harvest", n_ours, t_ours),
        ] {
            let r = rate(n, t);
            println!(
                "| {} | {variant} | {n} | {:.2} | {r:.0} | {:.2}x | {:.0}% |",
                w.name,
                t.as_secs_f64(),
                r / seed_rate,
                100.0 * r / bound
            );
        }
    }
    println!(
        "\nBound: {connections} connections / {latency_ms} ms = {:.0} requests/s, times the share of \
         requests that fetch posters (listing pages are the rest). The sequential loop runs on \
         the first posters of the workload only.",
        connections as f64 / latency.as_secs_f64()
    );
}
