//! Harvest throughput on the mock TMDB server (20 ms latency per request by default),
//! `movie-eras harvest` against the seed's design, in the same run:
//!
//! - **seed (Rust)**: what the seed does and nothing more — a pool of 20 threads, one
//!   release year per thread, discover pages 1..=N of that year, then each poster in
//!   turn, its bytes written to a file (no decoding, no validation, no catalog), metadata
//!   to a CSV at the end;
//! - **seed (Python)**: the seed's own script, `../shared/bench/seed_scraper.py` (Python
//!   with `requests`), when it and `python3` with `requests` are there;
//! - **movie-eras harvest**: the app's job with 20 connections (download, decode and
//!   validate, hash, colour statistics, thumbnail when the poster is larger than the
//!   thumbnail box, durable file write, catalog commit).
//!
//! The mock serves real posters when a folder of them is given (`--posters DIR`, by default
//! `../shared/posters/images` when it exists), else generated ones.
//!
//! `cargo bench --bench harvest_bench -- [--latency-ms 20] [--from 1939 --to 2025
//! --per-year 80] [--posters DIR] [--seed-script PATH] [--quick] [--only-ours]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{arg, poster_files};
use movie_eras::harvest::mock::{MockConfig, MockTmdb};
use movie_eras::harvest::tmdb::{Auth, DateWindow, DiscoverPage, DiscoverQuery};
use movie_eras::harvest::{HarvestControl, HarvestOptions, run_harvest};
use movie_eras::jobs::Progress;

struct Workload {
    from: i32,
    to: i32,
    per_year: u32,
}

impl Workload {
    fn posters(&self) -> u32 {
        (self.to - self.from + 1) as u32 * self.per_year
    }

    fn name(&self) -> String {
        format!(
            "{} years x {} ({}-{})",
            self.to - self.from + 1,
            self.per_year,
            self.from,
            self.to
        )
    }
}

/// One year as the seed does it: its listing pages, then each poster's bytes to a file.
/// Returns the metadata rows (file, title, year).
fn seed_year(
    client: &reqwest::Client,
    rt: &tokio::runtime::Runtime,
    mock: &MockTmdb,
    out: &Path,
    year: i32,
    per_year: u32,
) -> Vec<(String, String, i32)> {
    let query = DiscoverQuery {
        window: DateWindow::Year(year),
        sort_by: "revenue.desc".into(),
        min_votes: None,
    };
    let mut rows = Vec::new();
    rt.block_on(async {
        for page in 1..=per_year.div_ceil(20) {
            let url = query.api_url(&mock.base_url(), page);
            let Ok(resp) = client.get(&url).send().await else {
                continue;
            };
            let Ok(body) = resp.bytes().await else {
                continue;
            };
            let Ok(dp) = serde_json::from_slice::<DiscoverPage>(&body) else {
                continue;
            };
            for m in &dp.results {
                let Some(path) = &m.poster_path else { continue };
                let url = format!("{}/w154{path}", mock.image_url());
                let Ok(resp) = client.get(&url).send().await else {
                    continue;
                };
                let Ok(data) = resp.bytes().await else {
                    continue;
                };
                let name = format!("{}.jpg", m.id);
                if std::fs::write(out.join(&name), &data).is_ok() {
                    rows.push((name, m.title.clone(), year));
                }
            }
        }
    });
    rows
}

/// The seed's pool: `threads` threads, each taking the next year until none is left.
fn seed_rust(mock: &MockTmdb, w: &Workload, dir: &Path, threads: usize) -> (u32, Duration) {
    let out = dir.join("posters");
    std::fs::create_dir_all(&out).unwrap();
    movie_eras::harvest::fetch::ensure_crypto_provider();
    let years: Arc<Mutex<Vec<i32>>> = Arc::new(Mutex::new((w.from..=w.to).rev().collect()));
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let years = Arc::clone(&years);
            let tx = tx.clone();
            let out = out.clone();
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let client = reqwest::Client::new();
                loop {
                    let Some(year) = years.lock().unwrap().pop() else {
                        break;
                    };
                    tx.send(seed_year(&client, &rt, mock, &out, year, w.per_year))
                        .unwrap();
                }
            });
        }
    });
    drop(tx);
    let rows: Vec<_> = rx.iter().flatten().collect();
    let mut csv = std::fs::File::create(out.join("metadata.csv")).unwrap();
    writeln!(csv, "filename,title,release_year").unwrap();
    for (f, t, y) in &rows {
        writeln!(csv, "{f},\"{}\",{y}", t.replace('"', "\"\"")).unwrap();
    }
    (rows.len() as u32, start.elapsed())
}

/// The seed's own Python script against the mock; `None` when it cannot run here.
fn seed_python(
    script: &Path,
    mock: &MockTmdb,
    w: &Workload,
    dir: &Path,
    threads: usize,
) -> Option<(u32, Duration)> {
    // The script always takes discover pages 1-4: 80 posters a year.
    if !script.is_file() || w.per_year != 80 {
        return None;
    }
    let has_requests = std::process::Command::new("python3")
        .args(["-c", "import requests"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_requests {
        return None;
    }
    let start = Instant::now();
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(mock.base_url())
        .arg(mock.base_url())
        .arg("bench")
        .arg(w.from.to_string())
        .arg(w.to.to_string())
        .arg(threads.to_string())
        .arg(dir.join("posters"))
        .output()
        .ok()?;
    let t = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text
        .split_whitespace()
        .find_map(|t| t.strip_prefix("posters="))
        .and_then(|n| n.parse().ok())?;
    Some((n, t))
}

fn ours(mock: &MockTmdb, w: &Workload, dir: &Path, connections: usize) -> (u32, Duration, u64) {
    let mut o = HarvestOptions::new(w.from, w.to, dir.join("posters"));
    o.per_year = w.per_year;
    o.auth = Auth::ApiKey("bench".into());
    o.api_url = mock.base_url();
    o.image_url = mock.image_url();
    o.api_rate = 0.0;
    o.connections = connections;
    let start = Instant::now();
    let s = run_harvest(
        &dir.join("catalog.sqlite"),
        &o,
        &HarvestControl::default(),
        &Progress::ignore(),
    )
    .unwrap();
    let t = start.elapsed();
    (s.ok as u32, t, s.requests)
}

/// Up to `max` poster files of `dir`, read into memory.
fn load_posters(dir: &Path, max: usize) -> Vec<Vec<u8>> {
    poster_files(dir, max)
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let latency_ms: u64 = arg(&args, "--latency-ms").unwrap_or(20);
    let quick = args.iter().any(|a| a == "--quick");
    // `--only-ours` skips the baselines (for profiling the harvester alone).
    let only_ours = args.iter().any(|a| a == "--only-ours");
    let w = if quick {
        Workload {
            from: 2010,
            to: 2017,
            per_year: 80,
        }
    } else {
        Workload {
            from: arg(&args, "--from").unwrap_or(1939),
            to: arg(&args, "--to").unwrap_or(2025),
            per_year: arg(&args, "--per-year").unwrap_or(80),
        }
    };
    let posters_dir: PathBuf =
        arg(&args, "--posters").unwrap_or_else(|| PathBuf::from("../shared/posters/images"));
    let script: PathBuf = arg(&args, "--seed-script")
        .unwrap_or_else(|| PathBuf::from("../shared/bench/seed_scraper.py"));
    let images = load_posters(&posters_dir, 20_000);
    let latency = Duration::from_millis(latency_ms);
    let mock = MockTmdb::start_with_images(
        MockConfig {
            latency,
            default_per_year: w.per_year.max(100),
            ..MockConfig::default()
        },
        images.clone(),
    )
    .unwrap();
    let served = if images.is_empty() {
        "generated posters (no poster folder)".to_owned()
    } else {
        format!(
            "{} real posters from {} ({:.1} KB each on average)",
            images.len(),
            posters_dir.display(),
            images.iter().map(Vec::len).sum::<usize>() as f64 / images.len() as f64 / 1024.0
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let connections = 20usize;
    println!(
        "Mock TMDB on 127.0.0.1, {latency_ms} ms latency per request, serving {served}; \
         {connections} connections or threads; {} CPU cores. {}: {} posters.\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        w.name(),
        w.posters()
    );
    println!("| variant | posters | seconds | posters/s | movie-eras vs this |");
    println!("|---|---:|---:|---:|---:|");
    let (n_ours, t_ours, requests) = ours(&mock, &w, &tmp.path().join("ours"), connections);
    assert_eq!(n_ours, w.posters(), "harvester missed posters");
    let rate = |n: u32, t: Duration| f64::from(n) / t.as_secs_f64();
    let row = |variant: &str, n: u32, t: Duration| {
        println!(
            "| {variant} | {n} | {:.2} | {:.0} | {:.2}x |",
            t.as_secs_f64(),
            rate(n, t),
            t.as_secs_f64() / t_ours.as_secs_f64()
        );
    };
    if !only_ours {
        let (n_seed, t_seed) = seed_rust(&mock, &w, &tmp.path().join("seed-rust"), connections);
        assert_eq!(n_seed, w.posters(), "seed pool missed posters");
        row(
            "seed (Rust): thread per year, pool of 20, bytes to disk",
            n_seed,
            t_seed,
        );
        match seed_python(
            &script,
            &mock,
            &w,
            &tmp.path().join("seed-python"),
            connections,
        ) {
            Some((n, t)) => row(
                "seed (Python, shared/bench/seed_scraper.py): same design",
                n,
                t,
            ),
            None => println!(
                "| seed (Python): not run ({} or python3 with requests missing, or not 80 a year) | | | | |",
                script.display()
            ),
        }
    }
    row(
        "movie-eras harvest (20 connections, decode, validate, catalog)",
        n_ours,
        t_ours,
    );
    // 20 connections each completing one request per latency period; listing pages take
    // their share of requests. The seed's pool also waits on each year's own sequence.
    let bound = connections as f64 / latency.as_secs_f64() * f64::from(n_ours) / requests as f64;
    let per_year_s = f64::from(w.per_year + w.per_year.div_ceil(20)) * latency.as_secs_f64();
    let years = (w.to - w.from + 1) as usize;
    let rounds = years.div_ceil(connections) as f64;
    println!(
        "\nBounds at {latency_ms} ms per request: 20 connections carry at most {:.0} posters/s \
         ({:.2} s for this workload, listing pages included); the seed's pool, whose threads \
         each wait on one year's {} requests in turn, needs at least {rounds:.0} rounds of \
         {per_year_s:.2} s = {:.2} s. movie-eras reached {:.0}% of its bound.",
        bound,
        f64::from(n_ours) / bound,
        w.per_year + w.per_year.div_ceil(20),
        rounds * per_year_s,
        100.0 * rate(n_ours, t_ours) / bound
    );
}
