//! Profile of the per-poster pipeline shared by harvest and import: each stage timed on
//! its own over the same posters, on one thread, so the costs add up to the CPU a poster
//! takes. The stages that were cut are timed beside what replaced them.
//!
//! `cargo bench --bench pipeline_bench -- [--posters DIR] [--max N]` (by default the
//! first 2,000 posters of `../shared/posters/images`, else 400 generated posters).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{arg, poster_files};
use image::RgbImage;
use movie_eras::catalog::{Catalog, NewMovie, PosterRecord};
use movie_eras::imaging::{self, ImageLimits};

/// The app's allocator (src/main.rs), so the timings are the app's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Generated w154-sized posters written to `dir` (when no real ones are at hand).
fn generated(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let img = RgbImage::from_fn(154, 231, |x, y| {
                image::Rgb([
                    (x * 3 + i as u32) as u8,
                    (y * 2) as u8,
                    ((x ^ y) + i as u32 * 7) as u8,
                ])
            });
            let path = dir.join(format!("g{i}.jpg"));
            std::fs::write(&path, imaging::encode_jpeg(&img, 85).unwrap()).unwrap();
            path
        })
        .collect()
}

struct Row {
    stage: &'static str,
    ms: f64,
    note: &'static str,
}

fn time<T>(n: usize, mut f: impl FnMut(usize) -> T) -> (f64, Vec<T>) {
    let start = Instant::now();
    let out: Vec<T> = (0..n).map(&mut f).collect();
    (start.elapsed().as_secs_f64() * 1000.0 / n as f64, out)
}

fn movie(i: usize, poster: PosterRecord) -> NewMovie {
    NewMovie {
        source_key: format!("bench:{i}"),
        source: "bench".into(),
        tmdb_id: Some(i as i64),
        title: format!("Movie {i}"),
        year: Some(1950 + (i % 70) as i32),
        release_date: None,
        genres: vec![(18, "Drama".into())],
        popularity: None,
        vote_average: None,
        vote_count: None,
        poster,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let max: usize = arg(&args, "--max").unwrap_or(2000);
    let dir: PathBuf =
        arg(&args, "--posters").unwrap_or_else(|| PathBuf::from("../shared/posters/images"));
    let tmp = tempfile::tempdir().unwrap();
    let mut files = poster_files(&dir, max);
    let source = if files.is_empty() {
        files = generated(tmp.path(), 400);
        "generated w154 posters".to_owned()
    } else {
        format!("real posters from {}", dir.display())
    };
    let n = files.len();
    let limits = ImageLimits::default();
    let mut rows = Vec::new();

    let (ms, bodies) = time(n, |i| imaging::read_image_file(&files[i], &limits).unwrap());
    rows.push(Row {
        stage: "read file",
        ms,
        note: "import only (harvest has the body)",
    });
    let kb = bodies.iter().map(Vec::len).sum::<usize>() as f64 / n as f64 / 1024.0;
    let (ms, decoded) = time(n, |i| imaging::decode_poster(&bodies[i], &limits).unwrap());
    rows.push(Row {
        stage: "validate + decode + SHA-256",
        ms,
        note: "once per poster",
    });
    let (ms, _) = time(n, |i| imaging::sha256_hex(&bodies[i]));
    rows.push(Row {
        stage: "  of which SHA-256",
        ms,
        note: "",
    });
    let (ms, _) = time(n, |i| imaging::colour_stats(&decoded[i].rgb));
    rows.push(Row {
        stage: "colour statistics (full poster)",
        ms,
        note: "",
    });
    let (ms, _) = time(n, |i| {
        let t = imaging::fit_within(&decoded[i].rgb, imaging::THUMB_WIDTH, imaging::THUMB_HEIGHT);
        imaging::encode_jpeg(&t, 85).unwrap()
    });
    rows.push(Row {
        stage: "before: thumbnail JPEG of every poster",
        ms,
        note: "cut: no copy of a poster that fits the box",
    });
    let (ms, summaries) = time(n, |i| imaging::summarise(&decoded[i].rgb).unwrap());
    rows.push(Row {
        stage: "now: summarise (statistics, thumbnail if larger than the box)",
        ms,
        note: "",
    });
    // Large posters (`--size original`, scans): 200 of them scaled up to 1000x1500.
    let large: Vec<RgbImage> = decoded
        .iter()
        .take(200)
        .map(|d| image::imageops::resize(&d.rgb, 1000, 1500, image::imageops::FilterType::Triangle))
        .collect();
    let nl = large.len();
    let (ms, _) = time(nl, |i| {
        let t = imaging::fit_within(&large[i], imaging::THUMB_WIDTH, imaging::THUMB_HEIGHT);
        (
            imaging::encode_jpeg(&t, 85).unwrap(),
            imaging::colour_stats(&large[i]),
        )
    });
    rows.push(Row {
        stage: "1000x1500 poster, before: thumbnail, statistics of the full poster",
        ms,
        note: "",
    });
    let (ms, _) = time(nl, |i| imaging::summarise(&large[i]).unwrap());
    rows.push(Row {
        stage: "1000x1500 poster, now: summarise (statistics of the thumbnail-size copy)",
        ms,
        note: "",
    });
    let thumbs = summaries.iter().filter(|s| s.thumbnail.is_some()).count();
    let records: Vec<PosterRecord> = (0..n)
        .map(|i| {
            PosterRecord::ok(
                format!("posters/{i}.jpg"),
                &decoded[i],
                summaries[i].clone(),
            )
        })
        .collect();

    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (ms, _) = time(n, |i| {
        movie_eras::fsutil::write_atomic(&out.join(format!("a{i}.jpg")), &bodies[i]).unwrap();
    });
    rows.push(Row {
        stage: "durable file write (temp file, fsync, rename)",
        ms,
        note: "harvest and import --copy; disk time, mostly waiting",
    });
    let (ms, _) = time(n, |i| {
        std::fs::write(out.join(format!("b{i}.jpg")), &bodies[i]).unwrap();
    });
    rows.push(Row {
        stage: "  plain write, for reference (the seed)",
        ms,
        note: "",
    });

    // Catalog: the harvest stores movies from listing pages, then each poster's outcome.
    let open = |name: &str| {
        let mut c = Catalog::open(&tmp.path().join(name)).unwrap();
        let movies: Vec<NewMovie> = (0..n)
            .map(|i| movie(i, PosterRecord::failed(None, "pending".into())))
            .collect();
        c.insert_movies(&movies).unwrap();
        c
    };
    let mut one = open("one.sqlite");
    let (ms, _) = time(n, |i| {
        one.update_poster(&format!("bench:{i}"), &records[i])
            .unwrap();
    });
    rows.push(Row {
        stage: "catalog: one commit per poster (as before)",
        ms,
        note: "",
    });
    let mut batched = open("batched.sqlite");
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("bench:{i}")).collect();
        let items: Vec<(&str, &PosterRecord)> = chunk
            .iter()
            .zip(&keys)
            .map(|(i, k)| (k.as_str(), &records[*i]))
            .collect();
        batched.update_posters(&items).unwrap();
    }
    rows.push(Row {
        stage: "catalog: commits of up to 64 posters (now, harvest)",
        ms: start.elapsed().as_secs_f64() * 1000.0 / n as f64,
        note: "what is queued commits together",
    });

    println!(
        "{n} {source}, {kb:.1} KB each on average, {}x{} px for the first; {thumbs} of them \
         larger than the {}x{} thumbnail box. One thread, milliseconds per poster:\n",
        decoded[0].rgb.width(),
        decoded[0].rgb.height(),
        imaging::THUMB_WIDTH,
        imaging::THUMB_HEIGHT
    );
    println!("| stage | ms per poster | note |");
    println!("|---|---:|---|");
    for r in &rows {
        println!("| {} | {:.3} | {} |", r.stage, r.ms, r.note);
    }
}
