//! Saliency on a model trained on a synthetic task where a bright square decides the
//! class: grey noise of random brightness with a white square is from the 1940s, without
//! one from the 2010s. Every method must give a finite 0..1 map of the poster's size that
//! concentrates on the square.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use movie_eras::jobs::Progress;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use image::{Rgb, RgbImage};
use movie_eras::catalog::Catalog;
use movie_eras::eras::EraSchemes;
use movie_eras::model::backend::{self, BackendChoice};
use movie_eras::model::inference::EraModel;
use movie_eras::model::network::NetworkConfig;
use movie_eras::model::saliency::{self, SaliencyMethod, SaliencySettings};
use movie_eras::model::training::{self, TrainOptions};

const W: u32 = 60;
const H: u32 = 90;
const SIDE: u32 = 22;

/// Grey noise (its brightness set by `seed`, so the mean says nothing) with, for old
/// posters, a white square at a place set by `seed`.
fn poster(old: bool, seed: u32) -> (RgbImage, (u32, u32)) {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    let sx = common::xorshift(&mut state) % (W - SIDE);
    let sy = common::xorshift(&mut state) % (H - SIDE);
    let base = 60 + (common::xorshift(&mut state) % 80) as u8;
    let img = RgbImage::from_fn(W, H, |x, y| {
        let n = (common::xorshift(&mut state) % 50) as u8;
        if old && (sx..sx + SIDE).contains(&x) && (sy..sy + SIDE).contains(&y) {
            Rgb([250, 250, 250])
        } else {
            Rgb([base + n, base + n, base + n])
        }
    });
    (img, (sx, sy))
}

fn trained_model(dir: &std::path::Path) -> EraModel {
    let data = common::catalog_of(dir, 240, |i| {
        let old = i % 2 == 0;
        (if old { 1945 } else { 2015 }, poster(old, i + 1).0)
    });
    let opts = TrainOptions {
        epochs: 4,
        batch: 16,
        lr: 5e-3,
        val_share: 0.2,
        network: NetworkConfig {
            input_width: 32,
            input_height: 48,
            widths: vec![8, 16, 16],
            classes: 28,
            dropout: 0.0,
            stage_depth: 1,
            ..NetworkConfig::default()
        },
        backend: BackendChoice::Cpu,
        epoch_size: 640,
        ..TrainOptions::default()
    };
    let out = dir.join("model");
    let catalog = Catalog::open(&data.catalog_path()).unwrap();
    let tx = Progress::ignore();
    let prepared = training::load_data(&catalog, &data, &opts, &tx).unwrap();
    let chosen = backend::choose(BackendChoice::Cpu).unwrap();
    let summary = training::train(
        &prepared,
        &out,
        &opts,
        false,
        &chosen,
        &EraSchemes::builtin(),
        &Arc::new(AtomicBool::new(false)),
        &tx,
    )
    .unwrap();
    let last = &summary.epochs.last().unwrap().validation;
    assert!(
        last.decade_top1 > 0.9,
        "the square task was not learned: {}",
        last.report()
    );
    EraModel::load(&out, &chosen.device).unwrap()
}

#[test]
fn every_method_highlights_the_deciding_square() {
    let tmp = tempfile::tempdir().unwrap();
    let model = trained_model(tmp.path());
    let schemes = EraSchemes::builtin();
    let scheme = schemes.get("hollywood").unwrap();
    let old_era = scheme.era_index(1945);
    let mut weak = Vec::new();
    for seed in [9001, 9002, 9003] {
        let (img, (sx, sy)) = poster(true, seed);
        let p = model.predict(&img, scheme).unwrap();
        assert_eq!(p.best_era, old_era, "{:?}", p.eras);
        for method in SaliencyMethod::ALL {
            // Occlusion's patch is set to the size of what is to be found, as a user
            // would: a patch smaller than the square leaves most of it in view.
            let settings = SaliencySettings {
                patch: 0.45,
                ..SaliencySettings::default().with_method(method)
            };
            let map = saliency::saliency(&model, &img, scheme, old_era, &settings).unwrap();
            assert_eq!((map.width, map.height), (W, H), "{method:?}");
            assert_eq!(map.values.len(), (W * H) as usize);
            assert!(
                map.values
                    .iter()
                    .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                "{method:?} gave values outside 0..1"
            );
            let inside = map.mean_in(sx, sy, sx + SIDE, sy + SIDE);
            let overall = map.mean();
            let outside = (overall * (W * H) as f32 - inside * (SIDE * SIDE) as f32)
                / (W * H - SIDE * SIDE) as f32;
            println!(
                "{method:?} seed {seed}: inside {inside:.3}, outside {outside:.3}, ratio {:.2}",
                inside / outside
            );
            // A map that ignored the square would score about 1.
            if inside.is_nan() || inside < 1.5 * outside {
                weak.push(format!(
                    "{method:?} (seed {seed}): inside {inside:.3}, outside {outside:.3}"
                ));
            }
        }
    }
    assert!(weak.is_empty(), "maps that miss the square: {weak:#?}");
    // Any size can be asked for, and an era outside the scheme is an error, not a panic.
    let (img, _) = poster(false, 77);
    let settings = SaliencySettings::default().with_method(SaliencyMethod::GradCam);
    let big = saliency::saliency_at(&model, &img, scheme, 0, &settings, 241, 17).unwrap();
    assert_eq!(
        (big.width, big.height, big.values.len()),
        (241, 17, 241 * 17)
    );
    assert!(saliency::saliency(&model, &img, scheme, 99, &settings).is_err());
}
