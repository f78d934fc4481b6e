//! End-to-end tests of `import` and `export` through the real binary, on generated images.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use movie_eras::catalog::Catalog;

mod common;

use common::{huge_png_header, poster, write_jpeg};

const BIN: &str = env!("CARGO_BIN_EXE_movie-eras");

fn run(data: &Path, args: &[&str]) -> std::process::Output {
    common::run_cli(data, args)
}

#[test]
fn import_reports_bad_files_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir_all(imgs.join("sub")).unwrap();
    let data = tmp.path().join("data");
    let mut csv = String::from("file,year,title\n");
    for i in 0..20u32 {
        let name = format!("sub/p{i}.jpg");
        // One large scan among TMDB-sized posters: only it gets a catalog thumbnail.
        let (w, h) = if i == 3 { (600, 900) } else { (154, 231) };
        write_jpeg(&imgs.join(&name), &poster(i, w, h));
        csv += &format!("{name},{},Movie {i}\n", 1930 + i * 5);
    }
    std::fs::write(imgs.join("empty.jpg"), b"").unwrap();
    std::fs::write(
        imgs.join("text.jpg"),
        b"this is a text file renamed to .jpg\n",
    )
    .unwrap();
    let good = movie_eras::imaging::encode_jpeg(&poster(99, 154, 231), 85).unwrap();
    std::fs::write(imgs.join("truncated.jpg"), &good[..good.len() / 3]).unwrap();
    let mut corrupt = good.clone();
    for b in corrupt.iter_mut().skip(200).take(400) {
        *b = 0x55;
    }
    std::fs::write(imgs.join("corrupt.jpg"), &corrupt).unwrap();
    std::fs::write(imgs.join("huge.png"), huge_png_header()).unwrap();
    for name in [
        "empty.jpg",
        "text.jpg",
        "truncated.jpg",
        "corrupt.jpg",
        "huge.png",
    ] {
        csv += &format!("{name},1980,Bad {name}\n");
    }
    csv += "missing.jpg,1990,Nowhere\n";
    csv += "sub/p0.jpg,1930,Duplicate row\n";
    csv += "sub/p1.jpg,nineteen,Bad year\n";
    csv += "../escape.jpg,1990,Escape\n";
    let labels = tmp.path().join("labels.csv");
    std::fs::write(&labels, csv).unwrap();

    let out = run(
        &data,
        &[
            "import",
            imgs.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // stderr is a pipe here, not a terminal: progress comes as plain lines.
    assert!(stderr.contains("importing: "), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    assert!(stderr.contains("empty file (0 bytes)"), "{stderr}");
    assert!(stderr.contains("not an image"), "{stderr}");
    assert!(stderr.contains("truncated JPEG"), "{stderr}");
    assert!(stderr.contains("50000x50000"), "{stderr}");
    assert!(stderr.contains("file not found"), "{stderr}");
    assert!(stderr.contains("duplicate of line"), "{stderr}");
    assert!(stderr.contains("bad year"), "{stderr}");
    assert!(stderr.contains("leaves the image folder"), "{stderr}");

    let cat = Catalog::open(&data.join("catalog.sqlite")).unwrap();
    let counts = cat.counts().unwrap();
    // 20 good posters, plus the corrupt one if the decoder could not tell (never counted ok).
    assert_eq!(counts.movies, 25, "{counts:?}");
    assert_eq!(counts.failed + counts.ok, 25);
    assert!(counts.failed >= 4, "{counts:?}");
    assert!(counts.ok <= 21);
    let rows = cat.movies().unwrap();
    let empty = rows.iter().find(|r| r.title == "Bad empty.jpg").unwrap();
    assert_eq!(empty.reason.as_deref(), Some("empty file (0 bytes)"));
    let ok = rows.iter().find(|r| r.title == "Movie 3").unwrap();
    assert_eq!(ok.year, Some(1945));
    let stats = ok.stats.as_ref().unwrap();
    assert!(stats.brightness > 0.0 && stats.brightness < 1.0);
    // The large scan keeps a thumbnail within the box; a w154 poster keeps none (the
    // viewer reads its file, which is there).
    let thumb = cat.thumbnail(ok.poster_id.unwrap()).unwrap().unwrap();
    let thumb = movie_eras::imaging::decode_poster(&thumb, &Default::default()).unwrap();
    assert_eq!(thumb.rgb.dimensions(), (400, 600));
    let small = rows.iter().find(|r| r.title == "Movie 4").unwrap();
    assert!(cat.thumbnail(small.poster_id.unwrap()).unwrap().is_none());
    assert!(Path::new(small.poster_file.as_deref().unwrap()).is_file());
    drop(cat);

    // Idempotent: a second run adds nothing.
    let again = run(
        &data,
        &[
            "import",
            imgs.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("imported 0 posters"), "{stderr}");
    assert!(stderr.contains("25 already in the catalog"), "{stderr}");

    // Export: CSV and JSON, one row per movie, with eras.
    let csv_out = run(&data, &["export", "--format", "csv", "--scheme", "decades"]);
    assert!(csv_out.status.success());
    let text = String::from_utf8(csv_out.stdout).unwrap();
    assert_eq!(text.lines().count(), 26);
    assert!(text.contains(",Movie 3,1945,1940s,"), "{text}");
    let json_path = tmp.path().join("out.json");
    let json_out = run(
        &data,
        &[
            "export",
            "--format",
            "json",
            "--out",
            json_path.to_str().unwrap(),
        ],
    );
    assert!(json_out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 25);
    let m = arr.iter().find(|r| r["title"] == "Movie 3").unwrap();
    assert_eq!(m["era"], "Golden Age");
    assert_eq!(m["status"], "ok");
    assert_eq!(m["poster_sha256"].as_str().unwrap().len(), 64);
    let bad = run(&data, &["export", "--scheme", "nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown era scheme"));
}

#[test]
fn import_with_copy_writes_posters_into_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_jpeg(&tmp.path().join("a.jpg"), &poster(1, 60, 90));
    std::fs::write(tmp.path().join("l.csv"), "a.jpg,1977\n").unwrap();
    let out = run(
        &data,
        &[
            "import",
            tmp.path().to_str().unwrap(),
            "--labels",
            tmp.path().join("l.csv").to_str().unwrap(),
            "--copy",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cat = Catalog::open(&data.join("catalog.sqlite")).unwrap();
    let rows = cat.movies().unwrap();
    let file = rows[0].poster_file.clone().unwrap();
    assert!(
        file.starts_with("posters/") && file.ends_with(".jpg"),
        "{file}"
    );
    let bytes = std::fs::read(data.join(&file)).unwrap();
    assert_eq!(
        movie_eras::imaging::sha256_hex(&bytes),
        rows[0].poster_sha256.clone().unwrap()
    );
}

#[test]
fn killed_import_leaves_a_consistent_catalog_and_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let data = tmp.path().join("data");
    let total = 1200u32;
    let mut csv = String::new();
    for i in 0..total {
        let name = format!("p{i}.jpg");
        write_jpeg(&imgs.join(&name), &poster(i, 154, 231));
        csv += &format!("{name},{}\n", 1900 + (i % 120));
    }
    let labels = tmp.path().join("labels.csv");
    std::fs::write(&labels, csv).unwrap();
    let db = data.join("catalog.sqlite");

    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "import",
            imgs.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--batch",
            "8",
            "-vv",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill it as soon as two batches are committed: the import logs each commit, and the
    // test blocks reading those lines (no polling, no clock).
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = std::io::BufRead::lines(stderr);
    let mut committed = 0;
    // The pipe stays open (in `lines`) until after the kill.
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("committed a batch") {
            committed += 1;
            if committed == 2 {
                break;
            }
        }
    }
    assert_eq!(committed, 2, "import never committed two batches");
    child.kill().unwrap();
    drop(lines);
    child.wait().unwrap();

    let cat = Catalog::open(&db).unwrap();
    assert_eq!(cat.integrity_check().unwrap(), "ok");
    let partial = cat.counts().unwrap();
    assert!(
        partial.movies < u64::from(total),
        "import finished before the kill: {partial:?}"
    );
    // Committed batches are whole: every movie has its poster, its file and stats (and no
    // thumbnail copy of a w154 poster).
    assert_eq!(partial.ok, partial.movies);
    for row in cat.movies().unwrap() {
        assert!(row.stats.is_some());
        assert!(Path::new(row.poster_file.as_deref().unwrap()).is_file());
        assert!(cat.thumbnail(row.poster_id.unwrap()).unwrap().is_none());
    }
    drop(cat);

    let out = run(
        &data,
        &[
            "import",
            imgs.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cat = Catalog::open(&db).unwrap();
    assert_eq!(cat.integrity_check().unwrap(), "ok");
    let done = cat.counts().unwrap();
    assert_eq!(done.movies, u64::from(total));
    assert_eq!(done.ok, u64::from(total));
    let rows = cat.movies().unwrap();
    let mut keys: Vec<_> = rows
        .iter()
        .map(|r| r.poster_file.clone().unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), total as usize, "duplicates after resume");
}

#[test]
fn bad_labels_file_and_missing_dir_fail_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = run(
        &data,
        &["import", "/nonexistent/dir", "--labels", "/nonexistent.csv"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    std::fs::write(tmp.path().join("empty.csv"), "").unwrap();
    let out = run(
        &data,
        &[
            "import",
            tmp.path().to_str().unwrap(),
            "--labels",
            tmp.path().join("empty.csv").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}
