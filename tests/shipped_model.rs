//! The model shipped in `resources/model` loads, gives sane answers on generated posters
//! and the recorded (golden) answers on four of them (no dependence on `../shared`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use image::{Rgb, RgbImage};
use movie_eras::eras::EraSchemes;
use movie_eras::model::backend::{self, BackendChoice};
use movie_eras::model::inference::EraModel;

fn shipped() -> EraModel {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("resources/model");
    let device = backend::choose(BackendChoice::Cpu).unwrap().device;
    EraModel::load(&dir, &device).expect("the shipped model loads")
}

#[test]
fn shipped_model_gives_plausible_answers() {
    let model = shipped();
    let schemes = EraSchemes::builtin();
    for name in ["hollywood", "decades"] {
        let scheme = schemes.get(name).unwrap();
        let inputs = [
            // A grey, grainy, dark poster; a saturated bright one; a flat colour; a tiny
            // image; a very wide one.
            RgbImage::from_fn(154, 231, |x, y| {
                let v = (40 + (x * 7 + y * 13) % 50) as u8;
                Rgb([v, v, v])
            }),
            RgbImage::from_fn(154, 231, |x, y| {
                Rgb([(x * 255 / 154) as u8, 30, (y * 255 / 231) as u8])
            }),
            RgbImage::from_pixel(154, 231, Rgb([10, 10, 12])),
            RgbImage::from_pixel(1, 1, Rgb([200, 0, 0])),
            RgbImage::from_pixel(900, 20, Rgb([0, 90, 200])),
        ];
        for img in &inputs {
            let p = model.predict(img, scheme).unwrap();
            let total: f64 = p.eras.iter().map(|(_, v)| v).sum();
            assert!(
                (total - 1.0).abs() < 1e-3,
                "era probabilities sum to {total}"
            );
            assert!(p.eras.iter().all(|(_, v)| v.is_finite() && *v >= 0.0));
            let best = p.eras[p.best_era].1;
            // Better than a uniform guess over the scheme's eras.
            assert!(best > 1.0 / p.eras.len() as f64, "{name}: best {best}");
            assert!((1890.0..=2030.0).contains(&p.year), "year {}", p.year);
            assert!(p.interval.0 <= p.year && p.year <= p.interval.1);
        }
    }
}

#[test]
fn shipped_model_config_is_complete() {
    let model = shipped();
    let c = &model.config;
    assert_eq!(c.bins.count, c.network.classes);
    assert!(c.era_schemes.iter().any(|s| s == "hollywood"));
    assert!(c.validation.is_some(), "validation figures are recorded");
    assert!(c.normalisation.std.iter().all(|s| *s > 0.0));
    // The shipped model is a head on the pretrained backbone (compiled into the binary),
    // and its recorded held-out figures beat the most-common-decade baseline.
    assert_eq!(
        c.network.arch,
        movie_eras::model::backbone::Arch::EfficientnetLite0
    );
    assert!(model.net.backbone().is_some());
    // The recipe: the last feature map with the layout features, an MLP head.
    assert_eq!(
        c.network.levels,
        movie_eras::model::network::FeatureLevels::Layout
    );
    assert_eq!(c.network.hidden, 512);
    let v = c.validation.as_ref().unwrap();
    assert!(
        v.decade_top1 > v.baseline.decade_top1 + 0.1,
        "{}",
        v.report()
    );
    assert!(v.balanced_decade_accuracy > 2.0 * v.baseline.balanced_decade_accuracy);
    assert!(v.mae_years < v.baseline.mae_years);
    // Its answer averages the 160×240 network with the same recipe at 192×288.
    assert_eq!(c.members, ["192x288"]);
    assert_eq!(model.input_sizes(), "160×240 + 192×288");
    let member = &model.members[0].config;
    assert_eq!(member.bins, c.bins);
    assert_eq!(member.network.finetune_blocks, c.network.finetune_blocks);
}

#[test]
fn flip_averaging_scores_a_poster_and_its_mirror_alike() {
    let mut model = shipped();
    let scheme = EraSchemes::builtin();
    let scheme = scheme.get("hollywood").unwrap();
    // Strongly asymmetric: a bright red left third, a dark blue rest with a white bar.
    let poster = RgbImage::from_fn(154, 231, |x, y| {
        if x < 50 {
            Rgb([230, 40, 20])
        } else if (100..120).contains(&y) {
            Rgb([250, 250, 250])
        } else {
            Rgb([10, 20, (60 + x / 3) as u8])
        }
    });
    let mirrored = image::imageops::flip_horizontal(&poster);
    let gap = |m: &EraModel| {
        let a = m.predict(&poster, scheme).unwrap().bin_probs;
        let b = m.predict(&mirrored, scheme).unwrap().bin_probs;
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(model.flip_average, "flip averaging is on by default");
    let with = gap(&model);
    model.flip_average = false;
    let without = gap(&model);
    // Not exactly 0: the poster is resized to the input size before it is mirrored, and
    // resizing a mirrored poster rounds a little differently.
    assert!(
        with < 1e-3,
        "mirror images differ by {with} with flip averaging"
    );
    assert!(
        without > 10.0 * with.max(1e-6),
        "the network alone should see the mirror as a different poster ({without})"
    );
}

/// Generated posters that the shipped model dates to different decades.
fn golden_posters() -> Vec<(&'static str, RgbImage)> {
    let sepia = |x: u32, y: u32| {
        let v = ((x * 3 + y * 5) % 90 + 90) as f32;
        Rgb([v as u8, (v * 0.8) as u8, (v * 0.55) as u8])
    };
    vec![
        (
            "grey grainy",
            RgbImage::from_fn(154, 231, |x, y| {
                let v = (40 + (x * 7 + y * 13) % 50) as u8;
                Rgb([v, v, v])
            }),
        ),
        (
            "sepia with a red title band",
            RgbImage::from_fn(154, 231, |x, y| {
                if y < 60 {
                    Rgb([200, 40, 30])
                } else {
                    sepia(x, y)
                }
            }),
        ),
        (
            "yellow and red stripes",
            RgbImage::from_fn(154, 231, |_, y| {
                if y % 40 < 20 {
                    Rgb([250, 220, 20])
                } else {
                    Rgb([200, 20, 20])
                }
            }),
        ),
        (
            "blue and orange halves",
            RgbImage::from_fn(154, 231, |x, _| {
                if x < 77 {
                    Rgb([20, 60, 140])
                } else {
                    Rgb([240, 130, 30])
                }
            }),
        ),
    ]
}

/// The shipped model's decade, its probability and the estimated year for each of
/// [`golden_posters`], recorded when it was shipped.
const GOLDEN: [(&str, f64, f64); 4] = [
    ("2010s", 0.6027, 2016.05),
    ("2010s", 0.2279, 1990.07),
    ("1960s", 0.2311, 1993.16),
    ("1980s", 0.2034, 1983.67),
];

#[test]
fn shipped_model_golden_predictions() {
    // A broken load (wrong weights, changed preprocessing, a mixed-up head) moves these;
    // retraining the shipped model means recording them again (the failure prints them).
    let model = shipped();
    let schemes = EraSchemes::builtin();
    let scheme = schemes.get("decades").unwrap();
    let got: Vec<(String, f64, f64)> = golden_posters()
        .iter()
        .map(|(_, img)| {
            let p = model.predict(img, scheme).unwrap();
            let (era, prob) = p.eras[p.best_era].clone();
            (era, prob, p.year)
        })
        .collect();
    for ((name, _), ((era, prob, year), (g_era, g_prob, g_year))) in
        golden_posters().iter().zip(got.iter().zip(GOLDEN))
    {
        assert!(
            era == g_era && (prob - g_prob).abs() < 0.01 && (year - g_year).abs() < 0.5,
            "{name}: got {era} {prob:.4} {year:.2}, recorded {g_era} {g_prob:.4} {g_year:.2}; \
             all: {got:?}"
        );
    }
}
