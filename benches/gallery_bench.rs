//! Gallery performance with a 13,000-movie catalog, driven headless by egui_kittest
//! (the app's own `show`, no GPU): time to the first frame, time until the grid is
//! filled, UI frame CPU time while scrolling the whole gallery top to bottom (mean, 95th
//! percentile, worst), and the process's resident memory afterwards.
//!
//! `cargo bench --profile dev --bench gallery_bench` generates a catalog of 13,000
//! movies with thumbnails; `-- --data-dir DIR` uses an existing data directory instead
//! (e.g. one with the 13,137 shared posters imported). `--also-thumbnails-in-catalog`
//! then measures, in the same run, a copy of that catalog with a JPEG thumbnail stored
//! for every poster, as versions before 2026-12 kept them (the grid read those instead of
//! the poster files). `--compare-walls` also scrolls four decades of Compare walls (all
//! their posters, scrolled together) top to bottom.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use image::{Rgb, RgbImage};
use movie_eras::app::{MovieErasApp, Settings, Tab};
use movie_eras::catalog::{Catalog, NewMovie, PosterRecord, PosterStatus};
use movie_eras::eras::EraSchemes;
use movie_eras::imaging;
use movie_eras::paths::DataDir;

fn generated_catalog(dir: &std::path::Path, n: u32) {
    let mut c = Catalog::open(&dir.join("catalog.sqlite")).unwrap();
    let mut batch = Vec::new();
    for i in 0..n {
        let year = 1920 + (i % 105) as i32;
        let v = i.wrapping_mul(2_654_435_761);
        let img = RgbImage::from_fn(imaging::THUMB_WIDTH, imaging::THUMB_HEIGHT, |x, y| {
            Rgb([
                ((x * 2 + v) % 256) as u8,
                ((y + (v >> 8)) % 256) as u8,
                ((x + y + (v >> 16)) % 256) as u8,
            ])
        });
        let jpeg = imaging::encode_jpeg(&img, 80).unwrap();
        batch.push(NewMovie {
            source_key: format!("bench:{i}"),
            source: "bench".into(),
            tmdb_id: Some(i64::from(i)),
            title: format!("Movie {i}"),
            year: Some(year),
            release_date: None,
            genres: vec![(18, "Drama".into())],
            popularity: Some(f64::from(i % 100)),
            vote_average: None,
            vote_count: None,
            poster: PosterRecord {
                remote_path: None,
                file: None,
                sha256: Some(format!("{i:064}")),
                bytes: None,
                width: Some(154),
                height: Some(231),
                status: PosterStatus::Ok,
                reason: None,
                transient: false,
                stats: Some(imaging::colour_stats(&img)),
                thumbnail: Some((jpeg, img.width(), img.height())),
            },
        });
        if batch.len() == 1000 {
            c.insert_movies(&batch).unwrap();
            batch.clear();
        }
    }
    c.insert_movies(&batch).unwrap();
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// A copy of `data`'s catalog in `dest` with a thumbnail (JPEG, quality 85, at most the
/// thumbnail box) stored for every ok poster whose file reads, as older versions kept
/// them; poster files stay where they are (relative ones are made absolute).
fn with_thumbnails_in_catalog(data: &std::path::Path, dest: &std::path::Path) {
    let conn = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    conn.execute(
        "VACUUM INTO ?1",
        [dest.join("catalog.sqlite").display().to_string()],
    )
    .unwrap();
    drop(conn);
    let mut conn = rusqlite::Connection::open(dest.join("catalog.sqlite")).unwrap();
    let dir = DataDir::new(data);
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT id, file FROM posters WHERE status = 'ok' AND file IS NOT NULL")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let thumbs: Vec<(i64, String, Option<imaging::Thumbnail>)> = rows
        .into_iter()
        .map(|(id, file)| {
            let path = dir.poster_path(&file);
            let thumb = imaging::decode_poster_file(&path, &imaging::ImageLimits::default())
                .ok()
                .map(|d| {
                    let t =
                        imaging::fit_within(&d.rgb, imaging::THUMB_WIDTH, imaging::THUMB_HEIGHT);
                    (imaging::encode_jpeg(&t, 85).unwrap(), t.width(), t.height())
                });
            (id, path.display().to_string(), thumb)
        })
        .collect();
    let tx = conn.transaction().unwrap();
    for (id, path, thumb) in thumbs {
        tx.execute(
            "UPDATE posters SET file = ?1 WHERE id = ?2",
            rusqlite::params![path, id],
        )
        .unwrap();
        if let Some((jpeg, w, h)) = thumb {
            tx.execute(
                "INSERT OR REPLACE INTO thumbnails (poster_id, width, height, jpeg) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id, w, h, jpeg],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let given = args
        .iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let old_layout = args.iter().any(|a| a == "--also-thumbnails-in-catalog");
    let walls = args.iter().any(|a| a == "--compare-walls");
    if args.iter().any(|a| a == "--map-layout") {
        map_layout();
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = match given {
        Some(d) => d,
        None => {
            let t = Instant::now();
            generated_catalog(tmp.path(), 13_000);
            println!(
                "generated 13,000 movies in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            tmp.path().to_path_buf()
        }
    };
    let size_mib = |d: &std::path::Path| {
        std::fs::metadata(d.join("catalog.sqlite")).map_or(f64::NAN, |m| m.len() as f64) / 1048576.0
    };
    println!("\n## catalog as it is ({:.1} MiB)\n", size_mib(&data));
    measure(&data);
    if walls {
        println!("\n## Compare: four decades as walls of all their posters, scrolled together\n");
        measure_walls(&data);
    }
    if old_layout {
        let copy = tmp.path().join("with-thumbnails");
        std::fs::create_dir_all(&copy).unwrap();
        with_thumbnails_in_catalog(&data, &copy);
        println!(
            "\n## the same catalog with a thumbnail stored for every poster ({:.1} MiB)\n",
            size_mib(&copy)
        );
        measure(&copy);
    }
    similar_query();
}

/// Opens the Gallery on `data` and scrolls it top to bottom, printing the figures.
fn measure(data: &std::path::Path) {
    let rss_before = rss_mib();
    let started = Instant::now();
    let settings = Settings {
        tab: Tab::Gallery,
        ..Settings::default()
    };
    let (mut h, frame_ms) = timed_window(data, settings);
    h.step();
    let first_frame = started.elapsed();
    wait_for_catalog(&mut h, started);
    h.step();
    let movies = h.state().explorer().map_or(0, |e| e.rows.len());
    let filled = started.elapsed();
    println!(
        "catalog: {} ({movies} movies); first frame {:.0} ms; grid filled {:.0} ms after start",
        data.display(),
        first_frame.as_secs_f64() * 1e3,
        filled.as_secs_f64() * 1e3
    );
    // Scroll top to bottom with the wheel, 400 points per frame (about 2.5 rows of
    // posters), at most 60 frames per second, as a fast reader would.
    frame_ms.borrow_mut().clear();
    let rows = h.state().gallery().shown().len().div_ceil(11);
    let frames = (rows as f64 * 150.0 / 400.0).ceil() as usize + 10;
    let scroll_started = Instant::now();
    wheel_scroll(&mut h, frames, egui::pos2(500.0, 400.0));
    let scroll_secs = scroll_started.elapsed().as_secs_f64();
    // The last year's posters are on screen: the whole gallery was scrolled through.
    let last_year = h
        .state()
        .explorer()
        .and_then(|e| e.year_range)
        .map_or(0, |(_, b)| b);
    let at_end = h
        .query_all_by_label_contains(&format!("({last_year})"))
        .count();
    println!("after {frames} wheel steps: {at_end} posters of {last_year} on screen");
    assert!(at_end > 0, "the scroll did not reach the end");
    let mut t = frame_ms.borrow().clone();
    t.sort_by(f64::total_cmp);
    let mean = t.iter().sum::<f64>() / t.len().max(1) as f64;
    println!("| measure | value | target |");
    println!("|---|---:|---:|");
    println!(
        "| first frame | {:.0} ms | 1000 ms |",
        first_frame.as_secs_f64() * 1e3
    );
    println!(
        "| grid filled (catalog read) | {:.0} ms | |",
        filled.as_secs_f64() * 1e3
    );
    println!(
        "| UI frame CPU time while scrolling, mean ({} passes of `show` in {frames} frames, {:.1} s) | {mean:.2} ms | |",
        t.len(),
        scroll_secs
    );
    println!(
        "| UI frame CPU time while scrolling, 95th percentile | {:.2} ms | 8 ms |",
        percentile(&t, 0.95)
    );
    println!(
        "| UI frame CPU time while scrolling, worst | {:.2} ms | |",
        t.last().copied().unwrap_or(0.0)
    );
    println!(
        "| resident memory after scrolling (before the app: {rss_before:.0} MiB) | {:.0} MiB | 600 MiB |",
        rss_mib()
    );
}

/// The window on `data` with `settings`, recording each pass of `show` in milliseconds.
fn timed_window(
    data: &std::path::Path,
    settings: Settings,
) -> (Harness<'static, MovieErasApp>, Rc<RefCell<Vec<f64>>>) {
    let frame_ms: Rc<RefCell<Vec<f64>>> = Rc::default();
    let times = frame_ms.clone();
    let app = MovieErasApp::new(DataDir::new(data), EraSchemes::builtin(), settings);
    let h = Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .build_ui_state(
            move |ui, app: &mut MovieErasApp| {
                let t = Instant::now();
                app.show(ui);
                times.borrow_mut().push(t.elapsed().as_secs_f64() * 1e3);
            },
            app,
        );
    (h, frame_ms)
}

/// Steps `h` until its catalog is read (at most a minute after `started`).
fn wait_for_catalog(h: &mut Harness<'_, MovieErasApp>, started: Instant) {
    while h.state().explorer().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "catalog never loaded"
        );
        std::thread::sleep(Duration::from_millis(2));
        h.step();
    }
}

/// `frames` wheel steps of 400 points down with the pointer at `at`, at most 60 a second,
/// as a fast reader scrolls.
fn wheel_scroll(h: &mut Harness<'_, MovieErasApp>, frames: usize, at: egui::Pos2) {
    for _ in 0..frames {
        let frame_start = Instant::now();
        h.event(egui::Event::PointerMoved(at));
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, -400.0),
            phase: egui::TouchPhase::Move,
            modifiers: egui::Modifiers::NONE,
            source: egui::MouseWheelSource::Wheel,
        });
        h.step();
        let spent = frame_start.elapsed();
        if spent < Duration::from_micros(16_667) {
            std::thread::sleep(Duration::from_micros(16_667) - spent);
        }
    }
}

/// Opens Compare on `data` with four decades as walls of all their posters (scrolled
/// together) and scrolls them top to bottom, printing frame times.
fn measure_walls(data: &std::path::Path) {
    let decades = EraSchemes::builtin().get("decades").unwrap().clone();
    let cols: Vec<usize> = [1955, 1985, 2005, 2015]
        .iter()
        .map(|&y| decades.era_index(y))
        .collect();
    let mut settings = Settings {
        tab: Tab::Compare,
        scheme: "decades".into(),
        ..Settings::default()
    };
    settings
        .compare
        .columns
        .insert("decades".into(), cols.clone());
    settings.compare.all_posters = true;
    settings.compare.tile = 80.0;
    let (mut h, frame_ms) = timed_window(data, settings);
    let started = Instant::now();
    h.step();
    wait_for_catalog(&mut h, started);
    h.step();
    let longest = {
        let e = h.state().explorer().unwrap();
        cols.iter()
            .map(|&c| e.era_members(&decades, c).len())
            .max()
            .unwrap_or(0)
    };
    // Four columns of about 296 points hold three 80-point tiles a row (widened to fill).
    let rows = longest.div_ceil(3);
    let cell = (296.0 + 4.0) / 3.0 * 1.5;
    let frames = (rows as f64 * cell / 400.0).ceil() as usize + 10;
    frame_ms.borrow_mut().clear();
    wheel_scroll(&mut h, frames, egui::pos2(500.0, 500.0));
    let mut t = frame_ms.borrow().clone();
    t.sort_by(f64::total_cmp);
    let mean = t.iter().sum::<f64>() / t.len().max(1) as f64;
    println!("longest wall: {longest} posters; {frames} wheel steps of 400 points");
    println!("| measure | value | target |");
    println!("|---|---:|---:|");
    println!("| UI frame CPU time while scrolling, mean | {mean:.2} ms | |");
    println!(
        "| UI frame CPU time while scrolling, 95th percentile | {:.2} ms | 8 ms |",
        percentile(&t, 0.95)
    );
    println!(
        "| UI frame CPU time while scrolling, worst | {:.2} ms | |",
        t.last().copied().unwrap_or(0.0)
    );
}

/// Times the Map's t-SNE layout of 20,000 generated 1,280-value feature rows (40
/// clusters, unit length, as the model's embeddings are).
fn map_layout() {
    let (n, dim) = (20_000usize, 1280usize);
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let centres: Vec<Vec<f32>> = (0..40)
        .map(|_| (0..dim).map(|_| next()).collect())
        .collect();
    let mut rows: Vec<f32> = Vec::with_capacity(n * dim);
    for i in 0..n {
        rows.extend(centres[i % 40].iter().map(|c| c + 0.8 * next()));
    }
    movie_eras::explore::normalise_rows(&mut rows, dim);
    let t = Instant::now();
    let pca = movie_eras::explore::pca_2d(&rows, dim);
    let pca_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let layout = movie_eras::explore::layout::tsne_2d(&rows, dim, 1, false, &mut |_, _| {});
    let tsne_s = t.elapsed().as_secs_f64();
    assert_eq!((pca.len(), layout.len()), (n, n));
    println!("| Map layout of {n} posters x {dim} features | time | target |");
    println!("|---|---:|---:|");
    println!("| PCA | {pca_s:.1} s | |");
    println!(
        "| t-SNE ({} epochs, perplexity {}) | {tsne_s:.1} s | 60 s |",
        movie_eras::explore::layout::TSNE_EPOCHS,
        movie_eras::explore::layout::PERPLEXITY
    );
}

fn similar_query() {
    // "More like this": cosine nearest neighbours over 13,137 embeddings of the
    // backbone's width (1280), the Gallery details' query.
    let (n, dim) = (13_137usize, 1280usize);
    let mut state = 0x1234_5678u32;
    let mut rows: Vec<f32> = (0..n * dim)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 10_000) as f32 / 10_000.0
        })
        .collect();
    movie_eras::explore::normalise_rows(&mut rows, dim);
    let mut times: Vec<f64> = (0..20)
        .map(|q| {
            let t = Instant::now();
            std::hint::black_box(movie_eras::explore::most_similar(&rows, dim, q * 97, 8));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("\n| measure | value | target |\n|---|---:|---:|");
    println!(
        "| \"More like this\" query, {n} posters x {dim} features, median of 20 | {:.1} ms | 100 ms |",
        times[10]
    );
}
