//! Era model tests on generated posters: a tiny network learns a colour cue, saves and
//! loads back bit-identically, resumes from a checkpoint, and cancels cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use movie_eras::jobs::Progress;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use image::{Rgb, RgbImage};
use movie_eras::catalog::Catalog;
use movie_eras::eras::EraSchemes;
use movie_eras::model::YearBins;
use movie_eras::model::backend::{self, BackendChoice};
use movie_eras::model::inference::EraModel;
use movie_eras::model::network::NetworkConfig;
use movie_eras::model::training::{self, TrainEvent, TrainOptions};
use movie_eras::paths::DataDir;

mod common;

/// Old posters (1940s) are dark and grey, new ones (2010s) bright and red, with noise.
fn poster(year: i32, seed: u32) -> RgbImage {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    RgbImage::from_fn(60, 90, |_, _| {
        let n = (common::xorshift(&mut state) % 40) as u8;
        if year < 1980 {
            Rgb([40 + n, 40 + n, 40 + n])
        } else {
            Rgb([200 + n / 2, 60 + n, 40])
        }
    })
}

fn catalog_with_posters(dir: &Path, per_class: u32) -> DataDir {
    common::catalog_of(dir, per_class * 2, |i| {
        let year = if i % 2 == 0 { 1945 } else { 2015 };
        (year, poster(year, i + 1))
    })
}

fn tiny_options(epochs: usize) -> TrainOptions {
    TrainOptions {
        epochs,
        batch: 16,
        lr: 5e-3,
        val_share: 0.25,
        network: NetworkConfig {
            input_width: 24,
            input_height: 36,
            widths: vec![6, 8],
            classes: 28,
            dropout: 0.0,
            stage_depth: 1,
            ..NetworkConfig::default()
        },
        backend: BackendChoice::Cpu,
        epoch_size: 512,
        ..TrainOptions::default()
    }
}

fn run(
    data: &DataDir,
    out: &Path,
    opts: &TrainOptions,
    resume: bool,
    cancel: &Arc<AtomicBool>,
) -> (training::TrainSummary, Vec<TrainEvent>) {
    let catalog = Catalog::open(&data.catalog_path()).unwrap();
    let (tx, rx) = Progress::channel();
    let prepared = training::load_data(&catalog, data, opts, &tx).unwrap();
    let chosen = backend::choose(BackendChoice::Cpu).unwrap();
    let summary = training::train(
        &prepared,
        out,
        opts,
        resume,
        &chosen,
        &EraSchemes::builtin(),
        cancel,
        &tx,
    )
    .unwrap();
    drop(tx);
    (summary, rx.into_iter().collect())
}

#[test]
fn tiny_model_learns_saves_loads_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = catalog_with_posters(tmp.path(), 40);
    let out = tmp.path().join("model");
    let cancel = Arc::new(AtomicBool::new(false));
    // A third of the steps see shrunken, re-compressed copies.
    let mut first_opts = tiny_options(3);
    first_opts.augment.rescale = 0.3;
    let (summary, events) = run(&data, &out, &first_opts, false, &cancel);
    assert_eq!(summary.epochs.len(), 3);
    assert!(!summary.cancelled);
    // Loss goes down and the colour cue is learned.
    let losses: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect();
    let k = losses.len() / 3;
    let first: f64 = losses[..k].iter().sum::<f64>() / k as f64;
    let last: f64 = losses[losses.len() - k..].iter().sum::<f64>() / k as f64;
    // The soft targets' own entropy (about 1.4 nats) is the floor, so the drop is measured
    // against the first steps.
    assert!(last < first - 0.3, "loss {first:.3} -> {last:.3}");
    let final_eval = &summary.epochs[2].validation;
    assert!(final_eval.decade_top1 > 0.9, "{}", final_eval.report());

    // Save/load round trip: the same predictions, bit for bit.
    let device = backend::choose(BackendChoice::Cpu).unwrap().device;
    let a = EraModel::load(&out, &device).unwrap();
    let b = EraModel::load(&out, &device).unwrap();
    let schemes = EraSchemes::builtin();
    let h = schemes.get("hollywood").unwrap();
    let old = a.predict(&poster(1945, 999), h).unwrap();
    let again = b.predict(&poster(1945, 999), h).unwrap();
    assert_eq!(old.bin_probs, again.bin_probs);
    assert!(old.year < 1975.0, "old poster dated {}", old.year);
    let new = a.predict(&poster(2015, 998), h).unwrap();
    assert!(
        new.year > old.year + 10.0,
        "new poster dated {} vs old {}",
        new.year,
        old.year
    );
    // The training year mix is recorded (strength 0: answers as trained); at strength 1
    // the model answers the raw probabilities divided by the mix, renormalised.
    let mix = a
        .config
        .prior
        .clone()
        .expect("a trained model records its year mix");
    assert_eq!(mix.strength, 0.0);
    assert_eq!(mix.train_share.len(), a.config.bins.count);
    assert!((mix.train_share.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    let mut corrected = EraModel::load(&out, &device).unwrap();
    corrected.config.prior = Some(mix.with_strength(1.0));
    let moved = corrected.predict(&poster(1945, 999), h).unwrap();
    let mut expected = old.bin_probs.clone();
    mix.with_strength(1.0).apply(&mut expected);
    assert_ne!(moved.bin_probs, old.bin_probs);
    for (x, y) in moved.bin_probs.iter().zip(&expected) {
        assert!(
            (x - y).abs() < 1e-6,
            "{:?} vs {expected:?}",
            moved.bin_probs
        );
    }
    // Saving the loaded model again and loading that gives the same outputs bit for bit
    // (the file itself also records random parameter ids, so bytes are not compared).
    let reloaded_dir = tmp.path().join("copy");
    movie_eras::model::inference::save_model(&a.net, &a.config, &reloaded_dir).unwrap();
    let c = EraModel::load(&reloaded_dir, &device).unwrap();
    assert_eq!(
        c.predict(&poster(1945, 999), h).unwrap().bin_probs,
        old.bin_probs
    );
    assert_eq!(c.config, a.config);

    // Resuming with other settings keeps the run's own, except the number of epochs.
    let mut other = tiny_options(5);
    other.network.input_width = 32;
    other.network.input_height = 48;
    other.seed = 7;
    other.augment.rescale = 0.0;
    assert_eq!(
        training::resume_options(&out, &other, false).unwrap(),
        other
    );
    let resumed = training::resume_options(&out, &other, true).unwrap();
    let mut expected = first_opts.clone();
    expected.epochs = 5;
    assert_eq!(resumed, expected);
    // The checkpoint's own settings (what `train --resume` without `--epochs` keeps).
    assert_eq!(
        training::checkpoint_options(&out).unwrap(),
        Some(first_opts.clone())
    );
    assert_eq!(
        training::checkpoint_options(&tmp.path().join("nothing")).unwrap(),
        None
    );
    // Posters prepared for the other settings are refused with a clear error, not a panic.
    let catalog = Catalog::open(&data.catalog_path()).unwrap();
    let tx = Progress::ignore();
    let wrong = training::load_data(&catalog, &data, &other, &tx).unwrap();
    assert!(!wrong.matches(&resumed));
    let err = training::train(
        &wrong,
        &out,
        &other,
        true,
        &backend::choose(BackendChoice::Cpu).unwrap(),
        &EraSchemes::builtin(),
        &cancel,
        &tx,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("other settings"), "{err}");

    // Resume: continues at epoch 4 up to 5.
    let (more, events) = run(&data, &out, &resumed, true, &cancel);
    assert_eq!(
        more.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        vec![4, 5]
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TrainEvent::Started { first_epoch: 4, .. }))
    );
    assert!(training::latest_checkpoint(&out).unwrap().0 == 5);
}

#[test]
fn cancel_stops_before_the_next_step_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = catalog_with_posters(tmp.path(), 10);
    let out = tmp.path().join("model");
    let cancel = Arc::new(AtomicBool::new(true));
    let (summary, _) = run(&data, &out, &tiny_options(2), false, &cancel);
    assert!(summary.cancelled);
    assert!(summary.epochs.is_empty());
    assert!(training::latest_checkpoint(&out).is_none());
}

#[test]
fn too_little_data_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let catalog = Catalog::open(&data.catalog_path()).unwrap();
    let tx = Progress::ignore();
    let err = training::load_data(&catalog, &data, &tiny_options(1), &tx)
        .err()
        .unwrap();
    assert!(err.to_string().contains("training posters"), "{err}");
}

fn backbone_options(epochs: usize, finetune_blocks: usize) -> TrainOptions {
    let mut network =
        NetworkConfig::pretrained(movie_eras::model::backbone::Arch::EfficientnetLite0);
    // Small inputs keep the backbone cheap in tests.
    network.input_width = 64;
    network.input_height = 96;
    network.finetune_blocks = finetune_blocks;
    // A linear head keeps the tests quick; the head test reads the style statistics (the
    // shipped recipe's features), fine-tuning reads the last map.
    network.hidden = 0;
    if finetune_blocks > 0 {
        network.levels = movie_eras::model::network::FeatureLevels::Final;
    }
    TrainOptions {
        epochs,
        batch: 8,
        lr: 3e-3,
        val_share: 0.25,
        network,
        backend: BackendChoice::Cpu,
        ..TrainOptions::default()
    }
}

#[test]
fn head_on_cached_backbone_features_learns_resumes_and_reuses_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = catalog_with_posters(tmp.path(), 20);
    let out = tmp.path().join("model");
    let cancel = Arc::new(AtomicBool::new(false));
    let (summary, events) = run(&data, &out, &backbone_options(2, 0), false, &cancel);
    assert_eq!(summary.epochs.len(), 2);
    let extracted = events
        .iter()
        .filter(|e| matches!(e, TrainEvent::Extracting { .. }))
        .count();
    assert!(extracted > 2, "feature progress is reported batch by batch");
    // Only the head is saved: some 300 kB (2,768 features × 28 bins) instead of the
    // backbone's 13 MB.
    assert!(std::fs::metadata(out.join("model.bpk")).unwrap().len() < 1_000_000);
    assert!(!out.join("backbone.bpk").exists());
    // Resume to epoch 4: the features come from the cache (all done at the first report).
    let (summary, events) = run(&data, &out, &backbone_options(4, 0), true, &cancel);
    assert_eq!(
        summary.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        vec![3, 4]
    );
    // Everything is cached: one report per set, no batch extracted.
    assert_every_feature_came_from_the_cache(&events);
    // About ten held-out posters: one miss is 10 points, so the bar is the baseline's.
    let eval = &summary.epochs[1].validation;
    assert!(
        eval.decade_top1 >= 0.8 && eval.decade_top1 > eval.baseline.decade_top1,
        "{}",
        eval.report()
    );
    // The model predicts through the whole network (backbone + head) like the cached
    // path did.
    let device = backend::choose(BackendChoice::Cpu).unwrap().device;
    let m = EraModel::load(&out, &device).unwrap();
    let (old, new) = years_of_an_old_and_a_new_poster(&m);
    assert!(old < 1980.0 && new > 1980.0, "{old} {new}");
}

/// The years `m` gives a held-back 1945 poster and a 2015 one.
fn years_of_an_old_and_a_new_poster(m: &EraModel) -> (f64, f64) {
    let schemes = EraSchemes::builtin();
    let scheme = schemes.get("decades").unwrap();
    let year = |p: RgbImage| m.predict(&p, scheme).unwrap().year;
    (year(poster(1945, 999)), year(poster(2015, 998)))
}

#[test]
fn an_ensemble_of_heads_trains_every_member_and_stores_them_in_half_precision() {
    let tmp = tempfile::tempdir().unwrap();
    let data = catalog_with_posters(tmp.path(), 20);
    let out = tmp.path().join("model");
    let cancel = Arc::new(AtomicBool::new(false));
    let mut opts = backbone_options(3, 0);
    opts.network.heads = 3;
    let (summary, _) = run(&data, &out, &opts, false, &cancel);
    let eval = &summary.epochs[2].validation;
    assert!(
        eval.decade_top1 >= 0.8 && eval.decade_top1 > eval.baseline.decade_top1,
        "{}",
        eval.report()
    );
    // Three linear heads of 28 bins over the features, two bytes a weight.
    let c = opts.network.feature_channels() as u64;
    let weights = 3 * (c + 1) * 28 * 2;
    let size = std::fs::metadata(out.join("model.bpk")).unwrap().len();
    assert!(
        size >= weights && size < weights + weights / 10,
        "{size} bytes for {weights} bytes of half-precision weights"
    );
    let device = backend::choose(BackendChoice::Cpu).unwrap().device;
    let m = EraModel::load(&out, &device).unwrap();
    let head = m.net.head();
    assert_eq!(head.members(), 3);
    // Each member learned on its own: they differ, and each dates the posters alone.
    let w = |h: &movie_eras::model::network::EraHead| {
        h.head.weight.val().into_data().try_to_vec::<f32>().unwrap()
    };
    assert_ne!(w(&head), w(&head.more[0]));
    assert_ne!(w(&head.more[0]), w(&head.more[1]));
    for k in 0..3 {
        let member = movie_eras::model::network::EraHead {
            more: Vec::new(),
            ..match k {
                0 => head.clone(),
                k => head.more[k - 1].clone(),
            }
        };
        let single = EraModel {
            net: m.net.clone().with_head(member),
            ..EraModel::load(&out, &device).unwrap()
        };
        let (old, new) = years_of_an_old_and_a_new_poster(&single);
        assert!(old < 1980.0 && new > 1980.0, "member {k}: {old} {new}");
    }
    let (old, new) = years_of_an_old_and_a_new_poster(&m);
    assert!(old < 1980.0 && new > 1980.0, "{old} {new}");
}

#[test]
fn finetuning_trains_only_the_last_blocks_and_saves_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = catalog_with_posters(tmp.path(), 6);
    let out = tmp.path().join("model");
    let cancel = Arc::new(AtomicBool::new(false));
    let mut opts = backbone_options(1, 1);
    opts.epoch_size = 16;
    let (summary, _) = run(&data, &out, &opts, false, &cancel);
    assert_eq!(summary.epochs.len(), 1);
    assert!(
        out.join("backbone.bpk").is_file(),
        "fine-tuned blocks are saved"
    );
    assert_only_the_last_block_changed(&out);
}

#[test]
fn finetuning_from_cached_block_inputs_trains_the_same_layers_and_reuses_the_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let data = catalog_with_posters(tmp.path(), 6);
    let out = tmp.path().join("model");
    let cancel = Arc::new(AtomicBool::new(false));
    let mut opts = backbone_options(1, 1);
    opts.finetune_cached = true;
    let (summary, events) = run(&data, &out, &opts, false, &cancel);
    assert_eq!(summary.epochs.len(), 1);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TrainEvent::Extracting { done, total, .. } if done < total)),
        "the block inputs are computed once"
    );
    assert_only_the_last_block_changed(&out);
    // The figures the cached path reported are those of the saved network on pixels.
    assert_reported_figures_are_the_saved_networks(&data, &out, &opts, &summary);
    // A second run finds every map in the cache: one report per set, no batch run.
    let (_, events) = run(&data, &tmp.path().join("again"), &opts, false, &cancel);
    assert_every_feature_came_from_the_cache(&events);
}

/// Checks that a run found every feature (or block input) in the cache: one progress
/// report per set (training, validation), complete at once, no batch extracted.
fn assert_every_feature_came_from_the_cache(events: &[TrainEvent]) {
    let reports: Vec<(usize, usize)> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Extracting { done, total, .. } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!(reports[1].0, reports[1].1, "{reports:?}");
}

/// Checks that the validation figures a cached fine-tuning run reported for its last
/// epoch are those of the network it saved in `out`, run on the validation posters' pixels.
fn assert_reported_figures_are_the_saved_networks(
    data: &DataDir,
    out: &Path,
    opts: &TrainOptions,
    summary: &training::TrainSummary,
) {
    let reported = &summary.epochs.last().unwrap().validation;
    let device = backend::choose(BackendChoice::Cpu).unwrap().device;
    let model = EraModel::load(out, &device).unwrap();
    assert!(!model.uses_cached_features());
    let catalog = Catalog::open(&data.catalog_path()).unwrap();
    let split = training::load_data(&catalog, data, opts, &Progress::ignore()).unwrap();
    let val = &split.for_features.as_ref().unwrap().val;
    let (prepared, _) = movie_eras::model::data::prepare(val, &model.config.network);
    let probs = training::predict_prepared(&model.net, &prepared, &model.config, &device, 16, true)
        .unwrap();
    let years: Vec<i32> = prepared.iter().map(|p| p.year).collect();
    let eval = movie_eras::model::metrics::evaluate(
        &probs,
        &years,
        &model.config.bins,
        EraSchemes::builtin().get("hollywood").unwrap(),
    );
    assert_eq!(eval.count, reported.count);
    assert!(
        (eval.mae_years - reported.mae_years).abs() < 0.01,
        "{} vs {}",
        eval.mae_years,
        reported.mae_years
    );
}

/// Checks that a fine-tuned model in `out` differs from the pretrained backbone in the
/// last block and the head conv only.
fn assert_only_the_last_block_changed(out: &Path) {
    let device = backend::choose(BackendChoice::Cpu).unwrap().device;
    let tuned = EraModel::load(out, &device).unwrap();
    let pretrained = movie_eras::model::backbone::pretrained(
        movie_eras::model::backbone::Arch::EfficientnetLite0,
        false,
        &device,
    )
    .unwrap();
    use burn::module::Module;
    let flat = |m: &movie_eras::model::backbone::EfficientNet| -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        struct Collect<'a>(&'a mut Vec<Vec<f32>>);
        impl burn::module::ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(
                &mut self,
                p: &burn::module::Param<burn::prelude::Tensor<D>>,
            ) {
                self.0
                    .push(p.val().into_data().try_to_vec::<f32>().unwrap());
            }
        }
        m.visit(&mut Collect(&mut out));
        out
    };
    let before = flat(&pretrained);
    let after = flat(tuned.net.backbone().unwrap());
    assert_eq!(before.len(), after.len());
    let changed: Vec<bool> = before.iter().zip(&after).map(|(a, b)| a != b).collect();
    // The stem and the first 15 blocks are frozen; the last block and the head conv train.
    let n = changed.len();
    assert!(
        changed[..n - 8].iter().all(|c| !c),
        "frozen layers changed: {changed:?}"
    );
    assert!(
        changed[n - 8..].iter().any(|c| *c),
        "nothing was fine-tuned: {changed:?}"
    );
}

#[test]
fn the_year_term_of_the_loss_measures_the_expected_years_error_in_decades() {
    use movie_eras::model::training::{loss, training_loss};
    let device = backend::choose(BackendChoice::Cpu).unwrap().device;
    let bins = YearBins::default();
    // Nearly all probability on the bin of 1950–1954 (centre 1952).
    let b = bins.bin(1952);
    let mut logits = vec![-20.0f32; bins.count];
    logits[b] = 20.0;
    let logits: burn::prelude::Tensor<2> = burn::prelude::Tensor::from_data(
        burn::prelude::TensorData::new(logits, [1, bins.count]),
        &device,
    );
    let target = movie_eras::model::data::soft_target(1952, &bins, 4.0);
    let targets: burn::prelude::Tensor<2> = burn::prelude::Tensor::from_data(
        burn::prelude::TensorData::new(target, [1, bins.count]),
        &device,
    );
    let ce = loss(logits.clone(), targets.clone()).into_scalar::<f32>();
    let value = |year: i32, w: f64| {
        training_loss(logits.clone(), targets.clone(), &[year], &bins, w).into_scalar::<f32>()
    };
    // Weight 0 is the cross-entropy alone.
    assert!((value(2012, 0.0) - ce).abs() < 1e-6);
    // 60 years off is 6 decades: the term adds 6 × the weight; on the year, nearly nothing.
    let centre = bins.centre(b) as f32;
    assert!((value(2012, 0.5) - ce - 0.5 * (2012.0 - centre) / 10.0).abs() < 1e-3);
    assert!((value(1952, 0.5) - ce - 0.5 * (1952.0 - centre).abs() / 10.0).abs() < 1e-3);
}

#[test]
fn finetuning_with_the_layout_features_from_cached_stage_inputs_matches_the_saved_network() {
    let tmp = tempfile::tempdir().unwrap();
    let data = catalog_with_posters(tmp.path(), 6);
    let out = tmp.path().join("model");
    let cancel = Arc::new(AtomicBool::new(false));
    let mut opts = backbone_options(1, 1);
    opts.network.levels = movie_eras::model::network::FeatureLevels::Layout;
    opts.finetune_cached = true;
    let (summary, _) = run(&data, &out, &opts, false, &cancel);
    assert_only_the_last_block_changed(&out);
    // What the tail computed from the cached stage input and the earlier stages' summary
    // is what the saved network computes from pixels.
    assert_reported_figures_are_the_saved_networks(&data, &out, &opts, &summary);
    // Whole stages only: block 12 is inside stage 6.
    let request = movie_eras::model::train_job::TrainRequest {
        finetune_blocks: 4,
        finetune_cached: true,
        ..movie_eras::model::train_job::TrainRequest::default()
    };
    let err = request.options().unwrap_err().to_string();
    assert!(err.contains("whole stages"), "{err}");
}

#[test]
fn layout_features_are_completed_from_cached_stage_inputs() {
    use movie_eras::model::features::{self, FeatureCache};
    use movie_eras::model::network::{EraNet, FeatureLevels};
    let tmp = tempfile::tempdir().unwrap();
    let device = backend::choose(BackendChoice::Cpu).unwrap().device;
    let mut head = NetworkConfig::pretrained(movie_eras::model::backbone::Arch::EfficientnetLite0);
    head.input_width = 64;
    head.input_height = 96;
    head.levels = FeatureLevels::Layout;
    let mut tail = head.clone();
    tail.finetune_blocks = 5; // stages 6 and 7
    let norm = movie_eras::model::backbone::normalisation();
    let posters: Vec<RgbImage> = (0..3u8)
        .map(|k| RgbImage::from_fn(77, 115, |x, y| Rgb([x as u8 * k, y as u8, 40 * k])))
        .collect();
    let net = EraNet::new(&head, &device).unwrap();
    let direct = features::extract(&net, &head, &norm, &posters, &device).unwrap();
    let maps = features::extract(
        &EraNet::new(&tail, &device).unwrap(),
        &tail,
        &norm,
        &posters,
        &device,
    )
    .unwrap();
    // Only the stage inputs are cached, and the files do not exist: whatever comes back
    // was completed from the cache.
    let mut cache = FeatureCache::open(&tmp.path().join("features.sqlite")).unwrap();
    let items: Vec<(String, features::PosterFeatures)> = maps
        .into_iter()
        .enumerate()
        .map(|(i, f)| (format!("sha{i}"), f))
        .collect();
    cache
        .put_many(&features::cache_key(&tail).unwrap(), &items)
        .unwrap();
    let samples: Vec<movie_eras::model::data::Sample> = (0..3)
        .map(|i| movie_eras::model::data::Sample {
            path: tmp.path().join(format!("missing-{i}.png")),
            year: 1950,
            key: format!("sha{i}"),
            title: String::new(),
            split_key: None,
        })
        .collect();
    let complete = |low: bool, cache: &mut FeatureCache| {
        features::features_for(
            low,
            &samples,
            &net,
            &head,
            &norm,
            cache,
            &device,
            2,
            |_, _| {},
            || false,
        )
        .unwrap()
    };
    let (got, failed) = complete(false, &mut cache);
    assert!(failed.is_empty(), "{failed:?}");
    for (g, d) in got.iter().zip(&direct) {
        let g = g.as_ref().unwrap();
        assert_eq!(g.plain.len(), d.plain.len());
        let worst = g
            .plain
            .iter()
            .chain(&g.flipped)
            .zip(d.plain.iter().chain(&d.flipped))
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "{worst}");
    }
    // …and stored under the head's own key.
    assert!(
        cache
            .get(&features::cache_key(&head).unwrap(), "sha0")
            .unwrap()
            .is_some()
    );
    // A copy with another change (shrunken) has no stage inputs cached: it is unreadable here.
    let (low, failed) = complete(true, &mut cache);
    assert!(low.iter().all(Option::is_none));
    assert_eq!(failed.len(), 3);
}

#[test]
fn distillation_teaches_the_teachers_answers_read_from_the_feature_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    // Teachers trained on inverted labels: dark grey posters "2015", bright red "1945".
    let inverted = common::catalog_of(&tmp.path().join("inverted"), 40, |i| {
        let looks = if i % 2 == 0 { 1945 } else { 2015 };
        (
            if looks == 1945 { 2015 } else { 1945 },
            poster(looks, i + 1),
        )
    });
    let head_teacher = tmp.path().join("head-teacher");
    let mut head_opts = backbone_options(4, 0);
    head_opts.network.levels = movie_eras::model::network::FeatureLevels::Layout;
    run(&inverted, &head_teacher, &head_opts, false, &cancel);
    // The second teacher fine-tunes stage 7 from cached stage inputs, from the first.
    let tail_teacher = tmp.path().join("tail-teacher");
    let mut tail_opts = head_opts.clone();
    tail_opts.epochs = 1;
    tail_opts.lr = 1e-4;
    tail_opts.network.finetune_blocks = 1;
    tail_opts.finetune_cached = true;
    tail_opts.init_from = Some(head_teacher.clone());
    run(&inverted, &tail_teacher, &tail_opts, false, &cancel);
    let teachers = vec![head_teacher, tail_teacher];

    // What the teachers say on the right-labelled catalog's posters, read from its feature
    // cache, is the mean of what each says on the poster's pixels.
    let data = catalog_with_posters(&tmp.path().join("right"), 20);
    let catalog = Catalog::open(&data.catalog_path()).unwrap();
    let samples = movie_eras::model::data::samples_from_catalog(&catalog, &data).unwrap();
    let device = backend::choose(BackendChoice::Cpu).unwrap().device;
    let mut cache = movie_eras::model::features::FeatureCache::open(&data.features_path()).unwrap();
    let bins = YearBins::default();
    let cached = movie_eras::model::distill::teacher_probs(
        &teachers,
        &samples,
        &bins,
        &mut cache,
        &device,
        |_, _| {},
        || false,
    )
    .unwrap();
    let models: Vec<EraModel> = teachers
        .iter()
        .map(|t| EraModel::load(t, &device).unwrap())
        .collect();
    for (s, got) in samples.iter().zip(&cached).take(6) {
        let rgb = image::open(&s.path).unwrap().to_rgb8();
        let mut want = vec![0f32; bins.count];
        for m in &models {
            let p = m.probs(m.input_tensor(&rgb, &device)).unwrap();
            want.iter_mut().zip(&p[0]).for_each(|(w, p)| *w += p / 2.0);
        }
        let got = got.as_ref().unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-3, "{}: {worst}", s.path.display());
    }

    // A student taught by them alone (weight 1) learns their inverted answers, not the
    // catalog's years; the run says what the teachers read.
    let mut opts = head_opts.clone();
    opts.teachers = teachers.clone();
    opts.distill = 1.0;
    let out = tmp.path().join("student");
    let (_, events) = run(&data, &out, &opts, false, &cancel);
    assert!(
        events.iter().any(
            |e| matches!(e, TrainEvent::Note(n) if n.contains("teachers") && n.contains("100%"))
        ),
        "the run reports its teachers"
    );
    let (old, new) = years_of_an_old_and_a_new_poster(&EraModel::load(&out, &device).unwrap());
    assert!(old > 1980.0 && new < 1980.0, "{old} {new}");
    // Without teachers the same run learns the catalog's years.
    let (old, new) = {
        let out = tmp.path().join("plain");
        run(&data, &out, &head_opts, false, &cancel);
        years_of_an_old_and_a_new_poster(&EraModel::load(&out, &device).unwrap())
    };
    assert!(old < 1980.0 && new > 1980.0, "{old} {new}");
    // Distillation is for runs on cached features: pixel training says so.
    let mut pixels = tiny_options(1);
    pixels.teachers = teachers;
    pixels.distill = 0.5;
    let catalog = Catalog::open(&data.catalog_path()).unwrap();
    let (tx, _rx) = Progress::channel();
    let prepared = training::load_data(&catalog, &data, &pixels, &tx).unwrap();
    let chosen = backend::choose(BackendChoice::Cpu).unwrap();
    let err = training::train(
        &prepared,
        &tmp.path().join("pixels"),
        &pixels,
        false,
        &chosen,
        &EraSchemes::builtin(),
        &cancel,
        &tx,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("cached features"), "{err}");
}

/// A model's config file as JSON, edited by `edit`.
fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("model.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn models_at_two_input_sizes_combine_into_one_that_averages_them() {
    use movie_eras::model::inference::{combine_models, fingerprint};
    let tmp = tempfile::tempdir().unwrap();
    let data = catalog_with_posters(tmp.path(), 24);
    let cancel = Arc::new(AtomicBool::new(false));
    let small = tmp.path().join("small");
    let large = tmp.path().join("large");
    run(&data, &small, &tiny_options(1), false, &cancel);
    let mut opts = tiny_options(1);
    opts.network.input_width = 32;
    opts.network.input_height = 48;
    run(&data, &large, &opts, false, &cancel);

    let both = tmp.path().join("both");
    let config = combine_models(&small, std::slice::from_ref(&large), &both).unwrap();
    assert_eq!(config.members, ["32x48"]);
    assert!(
        config.validation.is_none(),
        "figures of the first model alone"
    );
    assert!(both.join("32x48/model.bpk").is_file());
    let device = backend::choose(BackendChoice::Cpu).unwrap().device;
    let a = EraModel::load(&small, &device).unwrap();
    let b = EraModel::load(&large, &device).unwrap();
    let m = EraModel::load(&both, &device).unwrap();
    assert_eq!(m.input_sizes(), "24×36 + 32×48");
    assert!(!m.uses_cached_features());
    let scheme = EraSchemes::builtin();
    let h = scheme.get("hollywood").unwrap();
    for p in [poster(1945, 5), poster(2015, 6)] {
        let (pa, pb) = (a.predict(&p, h).unwrap(), b.predict(&p, h).unwrap());
        let pm = m.predict(&p, h).unwrap();
        assert_ne!(pa.bin_probs, pb.bin_probs, "two different networks");
        for ((x, y), z) in pa.bin_probs.iter().zip(&pb.bin_probs).zip(&pm.bin_probs) {
            assert!((z - 0.5 * (x + y)).abs() < 1e-6, "{z} vs {x}, {y}");
        }
        // The Gallery's batch path answers the same.
        let batch = m.probs_and_embeddings(std::slice::from_ref(&p)).unwrap();
        for (x, y) in batch[0].0.iter().zip(&pm.bin_probs) {
            assert!((x - y).abs() < 1e-6);
        }
    }
    // The fingerprint (the key of stored predictions) covers the member's weights.
    assert_ne!(m.fingerprint, a.fingerprint);
    let member_weights = both.join("32x48/model.bpk");
    let original = std::fs::read(&member_weights).unwrap();
    let mut changed = original.clone();
    *changed.last_mut().unwrap() ^= 1;
    std::fs::write(&member_weights, &changed).unwrap();
    assert_ne!(fingerprint(&both).unwrap(), m.fingerprint);
    std::fs::write(&member_weights, &original).unwrap();
    assert_eq!(fingerprint(&both).unwrap(), m.fingerprint);

    // The new folder must be new or empty; a combined model is not combined again; the
    // models must share their split.
    let refused = |first: &Path, member: &Path, out: &Path| {
        combine_models(first, &[member.to_path_buf()], out)
            .unwrap_err()
            .to_string()
    };
    assert!(refused(&small, &large, &both).contains("not empty"));
    let again = tmp.path().join("again");
    assert!(refused(&both, &large, &again).contains("members already"));
    assert!(!again.exists());
    let other_split = tmp.path().join("other-split");
    copy_dir(&large, &other_split);
    edit_config(&other_split, |v| v["recipe"]["seed"] = 7.into());
    assert!(refused(&small, &other_split, &again).contains("another split"));

    // Broken member lists are refused with a reason, never followed out of the folder.
    // (what the refusal says, which config, its key, the new value)
    let cases = [
        (
            "not a plain, unique folder name",
            "",
            "members",
            serde_json::json!(["../small"]),
        ),
        (
            "not a plain, unique folder name",
            "",
            "members",
            serde_json::json!(["32x48", "32x48"]),
        ),
        (
            "at most 4",
            "",
            "members",
            serde_json::json!(["a", "b", "c", "d", "e"]),
        ),
        ("missing", "", "members", serde_json::json!(["missing"])),
        (
            "cannot have members of its own",
            "32x48",
            "members",
            serde_json::json!(["x"]),
        ),
        (
            "year bins differ",
            "32x48",
            "bins",
            serde_json::json!({"first": 1900, "width": 5, "count": 28}),
        ),
    ];
    for (i, (says, part, key, value)) in cases.into_iter().enumerate() {
        let bad = tmp.path().join(format!("bad-{i}"));
        copy_dir(&both, &bad);
        edit_config(&bad.join(part), |v| v[key] = value);
        let e = EraModel::load(&bad, &device)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(says), "case {i}: {e}");
    }
}
