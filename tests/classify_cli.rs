//! `classify` through the real binary with the shipped model: bad files give a reason and
//! a non-zero exit, unusual but valid ones are converted and classified, and saliency
//! overlays are written as PNGs of the poster's size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

fn classify(data: &Path, args: &[&str]) -> Output {
    common::run_cli(data, &[&["classify"], args].concat())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A catalog of `count` generated posters, one decade each from the 1930s to the 2010s in
/// turn (`salt` varies the pictures).
fn decades_catalog(dir: &Path, count: u32, salt: u32) -> movie_eras::paths::DataDir {
    common::catalog_of(dir, count, |i| {
        (
            1930 + 10 * (i as i32 % 9),
            common::poster(i + salt, 154, 231),
        )
    })
}

#[test]
fn each_bad_file_fails_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for (file, reason) in common::bad_inputs(&tmp.path().join("bad")) {
        let o = classify(&data, &[file.to_str().unwrap()]);
        let out = text(&o);
        assert!(
            !o.status.success(),
            "{} was accepted: {out}",
            file.display()
        );
        assert!(
            out.contains(reason),
            "{}: expected {reason:?} in {out}",
            file.display()
        );
        assert!(!out.contains("panicked"), "{out}");
    }
    // Several files at once: the good one is classified, the run still fails, and the
    // JSON names each bad file with its error.
    let good = tmp.path().join("good.jpg");
    common::write_jpeg(&good, &common::poster(1, 154, 231));
    let empty = tmp.path().join("bad/empty.jpg");
    let o = classify(
        &data,
        &["--json", good.to_str().unwrap(), empty.to_str().unwrap()],
    );
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v[0]["era"].is_string(), "{v}");
    // Top-level decade; years to one decimal; which model answered.
    let decade = v[0]["decade"].as_i64().unwrap();
    assert!(decade % 10 == 0 && (1890..=2020).contains(&decade), "{v}");
    for y in [&v[0]["year"], &v[0]["interval"][0], &v[0]["interval"][1]] {
        let y = y.as_f64().unwrap();
        assert!(((y * 10.0).round() - y * 10.0).abs() < 1e-6, "{v}");
    }
    assert_eq!(v[0]["model"], "shipped model", "{v}");
    assert!(
        v[1]["error"].as_str().unwrap().contains("empty file"),
        "{v}"
    );
}

#[test]
fn unusual_valid_posters_are_converted_and_classified() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for (file, note) in common::unusual_inputs(&tmp.path().join("odd")) {
        let o = classify(&data, &["--json", file.to_str().unwrap()]);
        let out = text(&o);
        assert!(o.status.success(), "{}: {out}", file.display());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v[0]["era"].is_string(), "{v}");
        // Two readings: null, or both decades with the sentence Classify shows.
        let two = &v[0]["two_readings"];
        assert!(
            two.is_null() || (two["other_decade"].is_i64() && two["sentence"].is_string()),
            "{v}"
        );
        assert!(
            v[0]["conversion"].as_str().unwrap_or("").contains(note),
            "{}: expected {note:?} in {v}",
            file.display()
        );
    }
}

#[test]
fn saliency_overlays_are_written_at_the_posters_size() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let a = tmp.path().join("a.jpg");
    let b = tmp.path().join("b.png");
    common::write_jpeg(&a, &common::poster(7, 154, 231));
    common::poster(8, 185, 278).save(&b).unwrap();
    for method in ["gradient", "smoothgrad", "gradcam", "ig", "occlusion"] {
        let out = tmp.path().join(format!("{method}.png"));
        let o = classify(
            &data,
            &[
                a.to_str().unwrap(),
                "--saliency",
                out.to_str().unwrap(),
                "--method",
                method,
                "--overlay",
                "blend",
            ],
        );
        assert!(o.status.success(), "{method}: {}", text(&o));
        let img = image::open(&out).unwrap();
        assert_eq!((img.width(), img.height()), (154, 231), "{method}");
        assert!(text(&o).contains("saliency ("), "{}", text(&o));
    }
    // Several images: a folder of `<name>.<method>.png`, for a chosen era.
    let dir = tmp.path().join("overlays");
    std::fs::create_dir_all(&dir).unwrap();
    let o = classify(
        &data,
        &[
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--saliency",
            dir.to_str().unwrap(),
            "--method",
            "gradcam",
            "--scheme",
            "decades",
            "--era",
            "1950s",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[1]["saliency"]["era"], "1950s", "{v}");
    let b_overlay = image::open(dir.join("b.gradcam.png")).unwrap();
    assert_eq!((b_overlay.width(), b_overlay.height()), (185, 278));
    assert!(dir.join("a.gradcam.png").is_file());
    // An era the scheme does not have is a clear error.
    let o = classify(
        &data,
        &[
            a.to_str().unwrap(),
            "--saliency",
            dir.to_str().unwrap(),
            "--era",
            "Jurassic",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("no era \"Jurassic\""), "{}", text(&o));
}

#[test]
fn predict_stores_the_catalogs_predictions_once_and_export_carries_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::catalog_of(tmp.path(), 6, |i| {
        (1950 + 10 * i as i32, common::poster(i + 40, 154, 231))
    });
    let run = |args: &[&str]| common::run_cli(data.root(), args);
    // Before: export has no model columns filled, and says how to fill them.
    let o = run(&["export", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("run `movie-eras predict` first"),
        "{}",
        text(&o)
    );
    let o = run(&["predict", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let first: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (first["posters"].as_u64(), first["computed"].as_u64()),
        (Some(6), Some(6))
    );
    // A second run finds everything stored: nothing is computed again.
    let o = run(&["predict"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("nothing to do"), "{}", text(&o));
    let o = run(&["predict", "--json"]);
    let second: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(second["computed"].as_u64(), Some(0));
    assert_eq!(second["model"], first["model"]);
    // Export now carries the model's year and era for every ok poster, without the window.
    let o = run(&["export", "--format", "json", "--scheme", "decades"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("predict` first"), "{}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for r in rows {
        let year = r["predicted_year"].as_f64().unwrap();
        assert!((1900.0..2040.0).contains(&year), "{r}");
        let era = r["predicted_era"].as_str().unwrap();
        assert!(era.ends_with('s') && era.len() == 5, "{r}");
    }
    // A model directory that is not there is a clear error.
    let o = run(&[
        "predict",
        "--model",
        tmp.path().join("nope").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("loading the model"), "{}", text(&o));
}

#[test]
fn compare_writes_one_labelled_block_per_era_and_refuses_bad_input_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let years = [1952, 1985, 2015];
    let data = common::catalog_of(tmp.path(), 12, |i| {
        (
            years[i as usize % 3] + (i as i32 % 4),
            common::poster(i + 70, 60, 90),
        )
    });
    let run = |args: &[&str]| common::run_cli(data.root(), &[&["compare"], args].concat());
    let out = tmp.path().join("wall.png");
    let o = run(&[
        "--scheme",
        "decades",
        "--eras",
        "1950s,1980s,2010s",
        "--per-era",
        "3",
        "--width",
        "900",
        "--tile",
        "60",
        "--captions",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3 eras, 9 posters"), "{}", text(&o));
    let wall = image::open(&out).unwrap().to_rgb8();
    assert_eq!(wall.width(), 900);
    // One header band per era, each in its column's colour.
    let block_w = (900 - 6 * 4) / 3;
    for k in 0..3u32 {
        let p = wall.get_pixel(6 + k * (block_w + 6) + block_w - 3, 8);
        assert_eq!(
            p.0,
            movie_eras::explore::column_colour(k as usize),
            "block {k}"
        );
    }
    // Rows layout: the same eras stacked, taller than wide blocks side by side.
    let rows = tmp.path().join("rows.png");
    let o = run(&[
        "--eras",
        "1950s,2010s",
        "--layout",
        "rows",
        "--width",
        "900",
        "--out",
        rows.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(image::open(&rows).unwrap().width(), 900);
    // Bad input: each with a clear message and no file.
    let bad = |args: &[&str], says: &str| {
        let o = run(args);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(
            text(&o).contains(says),
            "{args:?}: expected {says:?} in {}",
            text(&o)
        );
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    };
    let nowhere = tmp.path().join("x.png");
    let x = nowhere.to_str().unwrap();
    bad(
        &["--eras", "1950s,1880s", "--out", x],
        "unknown era `1880s`",
    );
    bad(&["--scheme", "nope", "--eras", "1950s", "--out", x], "nope");
    bad(
        &["--eras", "1920s", "--out", x],
        "no posters match in 1920s",
    );
    bad(
        &["--eras", "1950s", "--sort", "confidence", "--out", x],
        "run `movie-eras predict` first",
    );
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under_file = file.join("wall.png");
    bad(
        &["--eras", "1950s", "--out", under_file.to_str().unwrap()],
        "cannot write",
    );
    assert!(!nowhere.exists());
}

#[test]
fn evaluate_scores_the_held_out_posters_under_a_folder_and_reports_two_readings() {
    let tmp = tempfile::tempdir().unwrap();
    let data = decades_catalog(tmp.path(), 40, 7);
    let run = |args: &[&str]| common::run_cli(data.root(), &[&["evaluate"], args].concat());
    let o = run(&["--json", "--scheme", "decades"]);
    assert!(o.status.success(), "{}", text(&o));
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let n = all["count"].as_u64().unwrap();
    assert!(n > 0, "{all}");
    let two = &all["two_readings"];
    assert!(two["shown"].as_u64().unwrap() <= n, "{two}");
    // Every poster lies under images/: the same held-out posters.
    let images = tmp.path().join("images");
    let o = run(&["--json", "--under", images.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let under: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(under["count"].as_u64(), Some(n));
    // None under another folder; a folder that is not there is named.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let o = run(&["--under", other.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("nothing to evaluate"), "{}", text(&o));
    let o = run(&["--under", tmp.path().join("nope").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--under"), "{}", text(&o));
}

#[test]
fn evaluate_sweeps_prior_strengths_and_scores_a_tuning_band() {
    let tmp = tempfile::tempdir().unwrap();
    let data = decades_catalog(tmp.path(), 60, 3);
    let run = |args: &[&str]| {
        common::run_cli(
            data.root(),
            &[&["evaluate", "--scheme", "decades"], args].concat(),
        )
    };
    let o = run(&["--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let plain: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The shipped model records no year mix: on the catalog it is the training split's.
    let o = run(&["--json", "--prior-strength", "0,1"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["prior_strength"].as_f64(), Some(0.0));
    // Strength 0 is the plain evaluation; strength 1 moves the years.
    for key in [
        "count",
        "decade_top1",
        "mae_years",
        "balanced_decade_accuracy",
    ] {
        assert_eq!(rows[0]["evaluation"][key], plain[key], "{key}");
    }
    assert_ne!(rows[1]["evaluation"]["mae_years"], plain["mae_years"]);
    // The table names each strength.
    let o = run(&["--prior-strength", "0,0.5"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("strength") && text(&o).contains("0.50"),
        "{}",
        text(&o)
    );
    // --probs-csv writes each poster's bin probabilities, from which the decade top-1
    // comes out as reported.
    let csv_path = tmp.path().join("probs.csv");
    let o = run(&["--json", "--probs-csv", csv_path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = rows.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..3], &["file", "year", "1890-1894"]);
    let (mut n, mut right) = (0u64, 0u64);
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        assert!(Path::new(cells[0]).is_file(), "{line}");
        let year: i32 = cells[1].parse().unwrap();
        let p: Vec<f64> = cells[2..].iter().map(|c| c.parse().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-3, "{line}");
        // Two five-year bins per decade from 1890.
        let decade = (0..p.len() / 2)
            .max_by(|&a, &b| (p[2 * a] + p[2 * a + 1]).total_cmp(&(p[2 * b] + p[2 * b + 1])))
            .unwrap();
        n += 1;
        right += u64::from(1890 + 10 * decade as i32 == year.div_euclid(10) * 10);
    }
    assert_eq!(Some(n), plain["count"].as_u64());
    let top1 = right as f64 / n as f64;
    assert!((top1 - plain["decade_top1"].as_f64().unwrap()).abs() < 1e-9);
    // A band inside the held-out posters holds fewer of them.
    let o = run(&["--json", "--outside-share", "0.1"]);
    assert!(o.status.success(), "{}", text(&o));
    let band: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(band["count"].as_u64().unwrap() < plain["count"].as_u64().unwrap());
    // Bad values get a message.
    for (args, says) in [
        (
            &["--outside-share", "0.5"][..],
            "--outside-share must be below",
        ),
        (&["--prior-strength", "3"][..], "not within 0 and 2"),
    ] {
        let o = run(args);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    }
}

/// Bin probabilities per file of an `evaluate --probs-csv` file.
fn probs_by_file(csv: &Path) -> std::collections::BTreeMap<String, Vec<f64>> {
    std::fs::read_to_string(csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let p = cells[2..].iter().map(|c| c.parse().unwrap()).collect();
            (cells[0].to_owned(), p)
        })
        .collect()
}

#[test]
fn combine_joins_the_shipped_networks_and_evaluate_averages_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = decades_catalog(tmp.path(), 40, 11);
    let run = |args: &[&str]| common::run_cli(data.root(), args);
    // The shipped model's two networks as models of their own.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("resources/model");
    let small = tmp.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    for f in ["model.bpk", "backbone.bpk"] {
        std::fs::copy(shipped.join(f), small.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped.join("model.json")).unwrap())
            .unwrap();
    assert_eq!(config["members"], serde_json::json!(["192x288"]));
    config.as_object_mut().unwrap().remove("members");
    std::fs::write(small.join("model.json"), config.to_string()).unwrap();
    let large = shipped.join("192x288");

    let both = tmp.path().join("both");
    let paths =
        |p: &[&Path]| -> Vec<String> { p.iter().map(|p| p.display().to_string()).collect() };
    let [s, l, b] = &paths(&[&small, &large, &both])[..] else {
        unreachable!()
    };
    let o = run(&["combine", s, l, "--out", b, "--scheme", "decades", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("160×240 + 192×288"), "{}", text(&o));
    let made: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(made["members"], serde_json::json!(["192x288"]));
    // Scored on the held-out posters: the figures the model menus show.
    let n = made["validation"]["count"].as_u64().unwrap();
    assert!(n > 0, "{made}");
    for f in ["backbone.bpk", "192x288/model.bpk", "192x288/backbone.bpk"] {
        assert_eq!(
            std::fs::read(both.join(f)).unwrap(),
            std::fs::read(shipped.join(f)).unwrap(),
            "{f}"
        );
    }
    // evaluate scores each network on its own input size and averages their answers.
    let mut scored = Vec::new();
    for (name, model) in [("small", s), ("large", l), ("both", b)] {
        let csv = tmp.path().join(format!("{name}.csv"));
        let o = run(&[
            "evaluate",
            "--model",
            model,
            "--json",
            "--probs-csv",
            csv.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        scored.push(probs_by_file(&csv));
    }
    assert_eq!(scored[2].len() as u64, n);
    for (file, p) in &scored[2] {
        let (x, y) = (&scored[0][file], &scored[1][file]);
        for i in 0..p.len() {
            assert!((p[i] - 0.5 * (x[i] + y[i])).abs() < 2e-6, "{file} bin {i}");
        }
    }
    assert_ne!(scored[0], scored[1]);
    // A folder in use, a combined model as a part, or one model alone: refused clearly.
    for (args, says) in [
        (vec!["combine", s, l, "--out", b], "not empty"),
        (
            vec![
                "combine",
                b,
                l,
                "--out",
                tmp.path().join("x").to_str().unwrap(),
            ],
            "members already",
        ),
        (
            vec![
                "combine",
                s,
                "--out",
                tmp.path().join("y").to_str().unwrap(),
            ],
            "MEMBER",
        ),
    ] {
        let o = run(&args);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    }
}
