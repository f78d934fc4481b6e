//! CPU throughput of the backbone: Burn's forward pass (the feature pass's network) against
//! ONNX Runtime running the same converted weights, on the same input size and batch, in
//! one run.
//!
//! `cargo bench --bench backbone_bench -- [--batch 32[,8,...]] [--runs 6] [--rounds 3]
//! [--input 160x240] [--ort-python PYTHON] [--skip-layers]`. The pretrained
//! EfficientNet-Lite0 runs on the CPU on batches of `--batch` images (the feature pass runs
//! 16 posters with their mirror images: 32): on Burn's own layers (not with
//! `--skip-layers`), and as the app's feature pass runs it (the frozen network as fused CPU
//! kernels, `model::backbone`), timing the pooled last map (what ONNX Runtime computes)
//! and, fused, also the layout features the cache stores. With `--ort-python` (or
//! `MOVIE_ERAS_ORT_PYTHON`: a Python with `numpy`, `onnx` and `onnxruntime`, e.g. a venv),
//! it exports the network with `tools/export_onnx.py` (checked against the conversion's
//! reference), times it with `tools/ort_bench.py` on as many threads as Burn has, in
//! `--rounds` rounds alternating with the fused pass's, and prints two ratios: of the
//! median batch times and of the best ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use burn::prelude::*;
use common::arg;
use movie_eras::model::backbone::{self, Arch, Summary};

/// The app's allocator (src/main.rs), so the timings are the app's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seconds per batch of each of `runs` timed calls of `f` after one warm-up, sorted.
fn timed(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// ONNX Runtime's median and best seconds per batch (`tools/ort_bench.py`), or why there
/// are none.
fn ort_run(
    python: &str,
    model: &Path,
    batch: usize,
    (w, h): (usize, usize),
    threads: usize,
    runs: usize,
) -> Result<(f64, f64), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(root.join("tools/ort_bench.py"))
        .args(["--model", &model.display().to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--width", &w.to_string(), "--height", &h.to_string()])
        .args([
            "--threads",
            &threads.to_string(),
            "--runs",
            &runs.to_string(),
        ])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let read = |key: &str| {
        v[key]
            .as_f64()
            .ok_or_else(|| format!("no {key} in tools/ort_bench.py's output"))
    };
    Ok((read("median_s")?, read("best_s")?))
}

/// Exports the backbone to ONNX with `tools/export_onnx.py` (checked on the reference).
fn export(python: &str, dir: &Path) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = dir.join("efficientnet-lite0.onnx");
    let out = Command::new(python)
        .arg(root.join("tools/export_onnx.py"))
        .args(["--out", &model.display().to_string()])
        .arg("--check")
        .arg(root.join("tests/fixtures/efficientnet_lite0_reference.json"))
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(model)
}

/// Seeded pseudo-random inputs in the normalised range (content does not change the cost).
fn inputs(batch: usize, (w, h): (usize, usize), device: &Device) -> Tensor<4> {
    let mut state = 7u64;
    let values: Vec<f32> = (0..batch * 3 * h * w)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [batch, 3, h, w]), device)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batches: Vec<usize> = arg::<String>(&args, "--batch")
        .unwrap_or_else(|| "32".into())
        .split(',')
        .map(|b| b.trim().parse().expect("--batch N[,N...]"))
        .collect();
    let runs: usize = arg(&args, "--runs").unwrap_or(6);
    // Rounds of Burn's and ONNX Runtime's runs, alternating.
    let rounds: usize = arg(&args, "--rounds").unwrap_or(3).max(1);
    let input: String = arg(&args, "--input").unwrap_or_else(|| "160x240".into());
    let (w, h) = input
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<usize>().ok()?, h.parse::<usize>().ok()?)))
        .expect("--input WxH");
    let python = arg::<String>(&args, "--ort-python")
        .or_else(|| std::env::var("MOVIE_ERAS_ORT_PYTHON").ok());
    // --skip-layers: time the fused pass (and ONNX Runtime) only, e.g. under a profiler.
    let skip_layers = args.iter().any(|a| a == "--skip-layers");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let device = Device::flex();
    let net = backbone::pretrained(Arch::EfficientnetLite0, false, &device).unwrap();
    println!(
        "EfficientNet-Lite0, input {w}x{h}, {threads} threads; fused and ONNX Runtime: \
         {rounds} alternating rounds of {} timed batches each after a warm-up",
        runs.div_ceil(2)
    );
    let dir = tempfile::tempdir().unwrap();
    let onnx = python.as_ref().and_then(|py| match export(py, dir.path()) {
        Ok(model) => Some((py.clone(), model)),
        Err(e) => {
            eprintln!("ONNX export failed, ONNX Runtime not timed: {e}");
            None
        }
    });
    println!(
        "{:>5} {:>14} {:>14} {:>14} {:>14} {:>12} {:>10}",
        "batch",
        "layers img/s",
        "fused img/s",
        "fused+layout",
        "onnxrt img/s",
        "fused/onnxrt",
        "best/best"
    );
    for &batch in &batches {
        let x = inputs(batch, (w, h), &device);
        let pooled = || {
            let f = net.forward_frozen(x.clone(), usize::MAX);
            let [b, c, _, _] = f.dims();
            let v = f.mean_dim(3).mean_dim(2).reshape([b, c]).into_data();
            assert_eq!(v.num_elements(), b * c);
        };
        let layers = || {
            let f = net.forward_layers(x.clone());
            let [b, c, _, _] = f.dims();
            let v = f.mean_dim(3).mean_dim(2).reshape([b, c]).into_data();
            assert_eq!(v.num_elements(), b * c);
        };
        let layout = || {
            let (_, s) = net.forward_levels(x.clone(), usize::MAX, Summary::Layout);
            assert!(s.into_data().num_elements() > 0);
        };
        // Alternate Burn and ONNX Runtime so that a change in the machine's load hits both.
        let mut burn_times = Vec::new();
        let mut ort_times = Vec::new();
        let mut ort_best = f64::INFINITY;
        for _ in 0..rounds {
            burn_times.extend(timed(runs.div_ceil(2), pooled));
            if let Some((py, model)) = &onnx {
                match ort_run(py, model, batch, (w, h), threads, runs.div_ceil(2)) {
                    Ok((median, best)) => {
                        ort_times.push(median);
                        ort_best = ort_best.min(best);
                    }
                    Err(e) => eprintln!("ONNX Runtime failed: {e}"),
                }
            }
        }
        burn_times.sort_by(f64::total_cmp);
        let burn = burn_times[burn_times.len() / 2];
        let burn_best = burn_times[0];
        let layout_times = timed(runs, layout);
        let with_layers = if skip_layers {
            f64::NAN
        } else {
            let layer_times = timed(runs.div_ceil(2), layers);
            layer_times[layer_times.len() / 2]
        };
        let with_layout = layout_times[layout_times.len() / 2];
        let ips = |s: f64| batch as f64 / s;
        let (ort, ratio, best_ratio) = if ort_times.is_empty() {
            ("-".to_owned(), "-".to_owned(), "-".to_owned())
        } else {
            ort_times.sort_by(f64::total_cmp);
            let ort = ort_times[ort_times.len() / 2];
            (
                format!("{:.1}", ips(ort)),
                format!("{:.2}x", burn / ort),
                format!("{:.2}x", burn_best / ort_best),
            )
        };
        println!(
            "{batch:>5} {:>14.1} {:>14.1} {:>14.1} {ort:>14} {ratio:>12} {best_ratio:>10}",
            ips(with_layers),
            ips(burn),
            ips(with_layout)
        );
    }
    println!(
        "(target: fused/onnxrt at most 1.5x: medians; best/best: the fastest batch of each, \
         which the machine's other load slows least; layers: Burn's own layers, unfused)"
    );
}
