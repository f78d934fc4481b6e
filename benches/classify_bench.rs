//! Latency of classifying one poster and of each saliency method, on the CPU, with the
//! shipped model: the median of repeated runs after a warm-up.
//!
//! `cargo bench --bench classify_bench` (options: `-- --poster FILE --runs N --model DIR`). Without
//! `--poster` it uses the first poster of `../shared/posters` when present, else a
//! generated 154×231 poster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use movie_eras::eras::EraSchemes;
use movie_eras::imaging::{self, ImageLimits};
use movie_eras::model::backend::{self, BackendChoice};
use movie_eras::model::inference::EraModel;
use movie_eras::model::saliency::{self, SaliencyMethod, SaliencySettings};

/// The app's allocator (src/main.rs), so the timings are the app's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn default_poster() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/posters/images");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files.into_iter().next()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let runs: usize = arg("--runs").and_then(|r| r.parse().ok()).unwrap_or(30);
    let poster = arg("--poster").map(PathBuf::from).or_else(default_poster);
    let bytes = match &poster {
        Some(p) => std::fs::read(p).unwrap(),
        None => {
            let img = image::RgbImage::from_fn(154, 231, |x, y| {
                image::Rgb([(x * 3 % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
            });
            imaging::encode_jpeg(&img, 90).unwrap()
        }
    };
    let dir = arg("--model")
        .map(PathBuf::from)
        .or_else(movie_eras::model::default_model_dir)
        .expect("the shipped model");
    let chosen = backend::choose(BackendChoice::Cpu).unwrap();
    let model = EraModel::load(&dir, &chosen.device).unwrap();
    let schemes = EraSchemes::builtin();
    let scheme = schemes.get("hollywood").unwrap();
    let limits = ImageLimits::default();
    let decoded = imaging::decode_poster(&bytes, &limits).unwrap();
    let net = &model.config.network;
    println!(
        "poster: {} ({}x{}), model: {} ({:?}, input {}, widths {:?}; saliency explains the first), backend: {}, {} runs each",
        poster.map_or_else(|| "generated".into(), |p| p.display().to_string()),
        decoded.rgb.width(),
        decoded.rgb.height(),
        dir.display(),
        net.arch,
        model.input_sizes(),
        net.widths,
        chosen.description,
        runs
    );
    let era = model.predict(&decoded.rgb, scheme).unwrap().best_era;
    println!("| step | median ms | target ms | met |");
    println!("|---|---:|---:|---|");
    let row = |name: &str, ms: f64, target: Option<f64>| {
        let (t, met) = match target {
            Some(t) => (format!("{t:.0}"), if ms < t { "yes" } else { "no" }),
            None => ("-".into(), "-"),
        };
        println!("| {name} | {ms:.1} | {t} | {met} |");
    };
    let classify = median_ms(runs, || {
        let d = imaging::decode_poster(&bytes, &limits).unwrap();
        std::hint::black_box(model.predict(&d.rgb, scheme).unwrap());
    });
    row("classify (decode + predict)", classify, Some(60.0));
    for method in SaliencyMethod::ALL {
        let settings = SaliencySettings::default().with_method(method);
        let ms = median_ms(runs.div_ceil(3).max(3), || {
            std::hint::black_box(
                saliency::saliency(&model, &decoded.rgb, scheme, era, &settings).unwrap(),
            );
        });
        let (name, target) = match method {
            SaliencyMethod::GradCam => ("Grad-CAM".to_owned(), Some(150.0)),
            SaliencyMethod::SmoothGrad => (
                format!("SmoothGrad ({} samples)", settings.samples),
                Some(1500.0),
            ),
            SaliencyMethod::Ig => (
                format!("Integrated Gradients ({} steps)", settings.steps),
                None,
            ),
            SaliencyMethod::Occlusion => (
                format!("Occlusion (patch {:.0}% of width)", settings.patch * 100.0),
                None,
            ),
            SaliencyMethod::Gradient => ("Vanilla gradient".to_owned(), None),
        };
        row(&name, ms, target);
    }
}
