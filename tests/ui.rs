//! UI tests with egui_kittest: the window's tabs, the About panel and the catalog summary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use burn::prelude::Device;
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use movie_eras::app::{MovieErasApp, Settings, Tab};
use movie_eras::catalog::{Catalog, NewMovie, PosterRecord, PosterStatus};
use movie_eras::eras::EraSchemes;
use movie_eras::jobs;
use movie_eras::paths::DataDir;

fn harness(data: &std::path::Path) -> Harness<'static, MovieErasApp> {
    harness_with(data, 800.0, |_| {})
}

/// A 1200-pixel-wide window `height` high on the data directory `data`, its settings
/// changed by `adjust` before the first frame.
fn harness_with(
    data: &std::path::Path,
    height: f32,
    adjust: impl FnOnce(&mut Settings),
) -> Harness<'static, MovieErasApp> {
    let mut app = MovieErasApp::new(
        DataDir::new(data),
        EraSchemes::builtin(),
        Settings::default(),
    );
    adjust(app.settings_mut());
    Harness::builder()
        .with_size(egui::vec2(1200.0, height))
        .build_ui_state(|ui, app: &mut MovieErasApp| app.show(ui), app)
}

/// A node's text: its label, or for plain text its value.
fn text_of(node: &egui_kittest::kittest::AccessKitNode<'_>) -> String {
    node.label().or_else(|| node.value()).unwrap_or_default()
}

/// Steps the window until `done` holds. Between frames it blocks until a background job
/// reports ([`jobs::wait_for_activity`]): no sleeping and no clock in the test. Two
/// minutes without any background activity fail naming `what` (a guard against a hang,
/// not a timing check).
fn step_until(
    h: &mut Harness<'_, MovieErasApp>,
    what: &str,
    mut done: impl FnMut(&mut Harness<'_, MovieErasApp>) -> bool,
) {
    loop {
        let seen = jobs::activity();
        // A few frames first: layout and repaints need no background work.
        for _ in 0..3 {
            h.step();
            if done(h) {
                return;
            }
        }
        let now = jobs::wait_for_activity(seen, Duration::from_secs(120));
        assert!(
            now != seen,
            "{what}: no background activity for two minutes"
        );
    }
}

/// The movie ids of the Gallery's posters, in the order shown.
fn shown_ids(h: &Harness<'_, MovieErasApp>) -> Vec<i64> {
    let e = h.state().explorer().unwrap();
    h.state()
        .gallery()
        .shown()
        .iter()
        .map(|&i| e.rows[i].id)
        .collect()
}

/// Steps until `label` is on screen (workers report asynchronously).
fn wait_for(h: &mut Harness<'_, MovieErasApp>, label: &str) {
    step_until(h, &format!("`{label}` never appeared"), |h| {
        h.query_all_by_label_contains(label).next().is_some()
    });
}

#[test]
fn about_panel_shows_tmdb_attribution() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = harness(tmp.path());
    h.step();
    h.get_by_label("About").click();
    h.step();
    h.step();
    assert_eq!(h.state().settings().tab, Tab::About);
    h.get_by_label("This product uses the TMDB API but is not endorsed or certified by TMDB.");
    h.get_by_label_contains(&movie_eras::version::long_version());
    h.get_by_label(movie_eras::version::BACKBONE_CREDIT);
}

/// A catalog of six movies with poster files: five posters ok, one failed.
fn gallery_catalog(data: &std::path::Path) {
    let images = data.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let movies = [
        ("Casablanca", 1942, "Drama, Romance"),
        ("Rebecca", 1940, "Drama"),
        ("Jaws", 1975, "Thriller"),
        ("Star Wars", 1977, "Adventure, Science Fiction"),
        ("The Avengers", 2012, "Action, Science Fiction"),
        ("Lost Reel", 1999, "Drama"),
    ];
    let rows: Vec<NewMovie> = movies
        .iter()
        .enumerate()
        .map(|(i, (title, year, genres))| {
            let file = images.join(format!("p{i}.png"));
            common::poster(i as u32 + 1, 154, 231).save(&file).unwrap();
            let poster = if *title == "Lost Reel" {
                PosterRecord::failed(None, "HTTP 404".into())
            } else {
                PosterRecord {
                    remote_path: None,
                    file: Some(file.display().to_string()),
                    // The file's real hash, so a dropped copy is found in the catalog.
                    sha256: Some(movie_eras::imaging::sha256_hex(
                        &std::fs::read(&file).unwrap(),
                    )),
                    bytes: None,
                    width: Some(154),
                    height: Some(231),
                    status: PosterStatus::Ok,
                    reason: None,
                    transient: false,
                    stats: None,
                    thumbnail: None,
                }
            };
            NewMovie {
                source_key: format!("t:{i}"),
                source: "test".into(),
                tmdb_id: Some(100 + i as i64),
                title: (*title).into(),
                year: Some(*year),
                release_date: None,
                genres: genres
                    .split(", ")
                    .map(|g| (g.bytes().map(i64::from).sum::<i64>(), g.to_owned()))
                    .collect(),
                popularity: Some(10.0 * i as f64),
                vote_average: None,
                vote_count: None,
                poster,
            }
        })
        .collect();
    let mut c = Catalog::open(&data.join("catalog.sqlite")).unwrap();
    c.insert_movies(&rows).unwrap();
}

#[test]
fn gallery_filters_change_what_is_shown_and_a_click_opens_details() {
    let tmp = tempfile::tempdir().unwrap();
    gallery_catalog(tmp.path());
    let mut h = harness(tmp.path());
    wait_for(&mut h, "5 of 6 movies");
    // Posters that are ok, in year order.
    for t in [
        "Rebecca (1940)",
        "Casablanca (1942)",
        "Jaws (1975)",
        "The Avengers (2012)",
    ] {
        h.get_by_label(t);
    }
    // Typing in the search box narrows the grid.
    h.get_by_role(egui::Role::TextInput).focus();
    h.get_by_role(egui::Role::TextInput).type_text("casa");
    h.step();
    h.step();
    wait_for(&mut h, "1 of 6 movies");
    assert!(h.query_by_label("Jaws (1975)").is_none());
    // An era filter (set as the era menu does) and the failed-poster filter.
    h.state_mut().settings_mut().gallery.filter.title.clear();
    let golden = EraSchemes::builtin()
        .get("hollywood")
        .unwrap()
        .era_of(1942)
        .name
        .clone();
    h.state_mut().settings_mut().gallery.filter.era = Some(golden);
    h.step();
    wait_for(&mut h, "2 of 6 movies");
    assert!(h.query_by_label("Star Wars (1977)").is_none());
    h.state_mut().settings_mut().gallery.filter = movie_eras::explore::Filter {
        status: Some(PosterStatus::Failed),
        ..movie_eras::explore::Filter::default()
    };
    h.step();
    wait_for(&mut h, "1 of 6 movies");
    h.get_by_label("Lost Reel (1999)");
    h.state_mut().settings_mut().gallery.filter = movie_eras::explore::Filter::default();
    h.step();
    wait_for(&mut h, "5 of 6 movies");
    // Sorting by the model's error runs the model over the catalog first.
    h.state_mut().settings_mut().gallery.sort = movie_eras::explore::SortKey::Error;
    h.step();
    step_until(&mut h, "the model pass never finished", |h| {
        h.state().gallery().errors().len() >= 5
    });
    let errors = h.state().gallery().errors().clone();
    let shown = shown_ids(&h);
    assert_eq!(shown.len(), 5);
    assert!(
        shown.windows(2).all(|w| errors[&w[0]] <= errors[&w[1]]),
        "not in error order: {shown:?} {errors:?}"
    );
    h.state_mut().settings_mut().gallery.sort = movie_eras::explore::SortKey::Year;
    h.step();
    // Clicking a poster opens its details with the model's prediction and Grad-CAM (the
    // tile's label now carries the model's guess too).
    h.get_by_label_contains("Casablanca (1942)").click();
    h.step();
    wait_for(&mut h, "Drama, Romance");
    wait_for(&mut h, "Estimated year");
    h.get_by_label_contains("Grad-CAM");
    h.get_by_label_contains("p0.png");
}

#[test]
fn gallery_says_which_poster_files_are_missing() {
    // The catalog keeps no copy of a poster that fits the thumbnail box: with its file
    // gone the tile cannot show it, and the Gallery says why and where.
    let tmp = tempfile::tempdir().unwrap();
    gallery_catalog(tmp.path());
    for i in [0, 2] {
        std::fs::remove_file(tmp.path().join("images").join(format!("p{i}.png"))).unwrap();
    }
    let mut h = harness(tmp.path());
    wait_for(&mut h, "5 of 6 movies");
    wait_for(&mut h, "2 of the posters loaded so far cannot be shown");
    let note = h
        .get_by_label_contains("2 of the posters loaded so far cannot be shown")
        .accesskit_node();
    let note = text_of(&note);
    assert!(note.contains("files are missing from"), "{note}");
    assert!(
        note.contains(&tmp.path().join("images").display().to_string()),
        "{note}"
    );
    // The others still show.
    h.get_by_label("Rebecca (1940)");
}

#[test]
fn compare_shows_the_chosen_eras_with_their_average_posters() {
    let tmp = tempfile::tempdir().unwrap();
    gallery_catalog(tmp.path());
    let hollywood = EraSchemes::builtin().get("hollywood").unwrap().clone();
    let cols = vec![hollywood.era_index(1942), hollywood.era_index(1975)];
    let mut h = harness_with(tmp.path(), 800.0, |s| {
        s.compare.columns.insert("hollywood".into(), cols);
        s.tab = Tab::Compare;
    });
    wait_for(&mut h, "Golden Age (1939–1954)");
    wait_for(&mut h, "New Hollywood (1967–1982)");
    // Golden Age: Rebecca and Casablanca; New Hollywood: Jaws and Star Wars.
    wait_for(&mut h, "Average of 2 posters");
    assert_eq!(h.query_all_by_label("2 posters").count(), 2);
    // Their posters are on the walls.
    h.get_by_label("Casablanca (1942)");
    h.get_by_label("Jaws (1975)");
    // The statistics are one click away.
    h.get_by_label("Statistics").click();
    wait_for(&mut h, "Poster statistics over the years");
    // The contact sheet the export button writes: one column per era.
    let out = tmp.path().join("sheet.png");
    let posters: Vec<movie_eras::explore::era_looks::PosterSource> = (1..=2)
        .map(|id| (id, Some(tmp.path().join(format!("images/p{}.png", id - 1)))))
        .collect();
    movie_eras::explore::era_looks::write_contact_sheet(
        &tmp.path().join("catalog.sqlite"),
        vec![
            (0, None, vec![([200, 10, 10], 1.0)], posters.clone()),
            (1, None, vec![], posters),
        ],
        &out,
    )
    .unwrap();
    let sheet = image::open(&out).unwrap();
    assert!(
        sheet.width() > 2 * 4 * 96 && sheet.height() > 144,
        "{}x{}",
        sheet.width(),
        sheet.height()
    );
}

/// A harness showing the Harvest tab of `app`.
fn on_harvest_tab(app: MovieErasApp) -> Harness<'static, MovieErasApp> {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1200.0, 900.0))
        .build_ui_state(|ui, app: &mut MovieErasApp| app.show(ui), app);
    h.step();
    h.get_by_label("Harvest").click();
    h.step();
    h
}

#[test]
fn harvest_tab_saves_the_key_and_harvests_from_a_mock_server() {
    use movie_eras::harvest::mock::{MockConfig, MockTmdb};
    let mock = MockTmdb::start(MockConfig {
        api_key: Some("gui-key-123".into()),
        default_per_year: 30,
        ..MockConfig::default()
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("config/config.toml");
    let mut app = MovieErasApp::new(
        DataDir::new(tmp.path().join("data")),
        EraSchemes::builtin(),
        Settings::default(),
    )
    .with_config_path(config_path.clone());
    {
        let s = &mut app.settings_mut().harvest;
        s.from = 1990;
        s.to = 1991;
        s.per_year = 6;
        s.connections = 4;
        s.api_url = mock.base_url();
        s.image_url = mock.image_url();
        s.site_url = mock.base_url();
    }
    let mut h = on_harvest_tab(app);
    h.get_by_label_contains("No key saved");
    let field = h.get_by_label("TMDB API key or read access token");
    field.focus();
    field.type_text("gui-key-123");
    h.step();
    h.get_by_label("Save key").click();
    h.step();
    wait_for(&mut h, "A key is saved");
    let saved = std::fs::read_to_string(&config_path).unwrap();
    assert!(saved.contains("gui-key-123"));
    h.get_by_label("Start harvest").click();
    h.step();
    wait_for(&mut h, "Harvest finished");
    h.get_by_label_contains("12 posters stored, 0 failed");
    let c = Catalog::open(&tmp.path().join("data/catalog.sqlite")).unwrap();
    assert_eq!(c.counts().unwrap().ok, 12);
    // The mock answers 401 to any other key, so the harvest used the key typed above.
    assert!(
        mock.log()
            .iter()
            .any(|l| l.starts_with("/3/discover/movie"))
    );
}

#[test]
fn harvest_tab_reports_a_refused_key_clearly() {
    use movie_eras::harvest::mock::{MockConfig, MockTmdb};
    let mock = MockTmdb::start(MockConfig {
        api_key: Some("right".into()),
        ..MockConfig::default()
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("config.toml");
    movie_eras::config::UserConfig {
        tmdb_api_key: Some("wrong".into()),
        tmdb_bearer_token: None,
    }
    .save(&config_path)
    .unwrap();
    let mut app = MovieErasApp::new(
        DataDir::new(tmp.path().join("data")),
        EraSchemes::builtin(),
        Settings::default(),
    )
    .with_config_path(config_path);
    let s = &mut app.settings_mut().harvest;
    s.from = 2000;
    s.to = 2000;
    s.api_url = mock.base_url();
    s.image_url = mock.image_url();
    let mut h = on_harvest_tab(app);
    h.get_by_label("Start harvest").click();
    h.step();
    wait_for(&mut h, "Harvest failed");
    let label = format!("{:?}", h.get_by_label_contains("Harvest failed"));
    assert!(label.contains("Invalid API key"), "{label}");
}

/// A file dropped on the window (what eframe hands egui on native platforms).
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn dropping_posters_shows_a_prediction_and_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let poster = tmp.path().join("poster.png");
    image::RgbImage::from_fn(154, 231, |x, y| image::Rgb([(x + y) as u8, 40, 90]))
        .save(&poster)
        .unwrap();
    let junk = tmp.path().join("notes.jpg");
    std::fs::write(&junk, "this is text, not a JPEG").unwrap();
    let mut h = harness(&tmp.path().join("data"));
    h.step();
    for f in [&poster, &junk] {
        h.input_mut()
            .dropped_files
            .push(std::sync::Arc::new(Dropped(f.clone())));
    }
    h.step();
    assert_eq!(h.state().settings().tab, Tab::Classify);
    wait_for(&mut h, "Estimated year");
    wait_for(&mut h, "Cannot classify");
    h.get_by_label_contains("poster.png");
}

#[test]
fn saliency_overlay_appears_for_the_predicted_and_a_clicked_era() {
    let tmp = tempfile::tempdir().unwrap();
    let poster = tmp.path().join("poster.png");
    common::poster(4, 154, 231).save(&poster).unwrap();
    let mut h = harness(&tmp.path().join("data"));
    h.step();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(poster.clone())));
    h.step();
    wait_for(&mut h, "Estimated year");
    h.get_by_label_contains("Show saliency").click();
    h.step();
    wait_for(&mut h, "Grad-CAM for");
    h.get_by_label("Export overlay PNG…");
    // The shipped model averages two networks; saliency says which one it explains.
    h.get_by_label_contains(
        "Explains the model's 160×240 network; its answer averages 2 networks (160×240 + 192×288)",
    );
    // Clicking an era's name explains that era instead.
    h.get_by_label("Golden Age").click();
    h.step();
    wait_for(&mut h, "Grad-CAM for Golden Age");
    for mode in ["Heat map", "Blend", "Mask"] {
        h.get_by_label(mode).click();
        h.step();
    }
    h.get_by_label_contains("Grad-CAM for Golden Age");
    // Pasting a copied file path classifies that file too.
    let second = tmp.path().join("second.png");
    common::poster(9, 154, 231).save(&second).unwrap();
    h.event(egui::Event::Paste(format!("file://{}", second.display())));
    h.step();
    wait_for(&mut h, "second.png");
    // An image pasted from the clipboard (egui-winit delivers its pixels) is classified.
    let pixels = egui::ColorImage::from_rgb([60, 90], &vec![120u8; 60 * 90 * 3]);
    h.event(egui::Event::PasteImage(std::sync::Arc::new(pixels)));
    h.step();
    wait_for(&mut h, "Pasted image");
    step_until(&mut h, "the pasted poster was not classified", |h| {
        h.query_all_by_label_contains("Estimated year").count() >= 3
    });
}

#[test]
fn bad_and_unusual_files_dropped_on_the_window_get_clear_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = common::bad_inputs(&tmp.path().join("bad"));
    let odd = common::unusual_inputs(&tmp.path().join("odd"));
    let mut h = harness(&tmp.path().join("data"));
    h.step();
    for (f, _) in bad.iter().chain(&odd) {
        h.input_mut()
            .dropped_files
            .push(std::sync::Arc::new(Dropped(f.clone())));
    }
    h.step();
    for (f, reason) in &bad {
        if f.is_dir() {
            // A dropped folder opens the import instead, which finds no images in it.
            wait_for(
                &mut h,
                "no images (jpg, png, webp, gif, bmp) in this folder",
            );
        } else {
            wait_for(&mut h, reason);
        }
    }
    for (_, note) in &odd {
        wait_for(&mut h, note);
    }
    // The window is still up and answering.
    h.get_by_label("About").click();
    h.step();
    assert_eq!(h.state().settings().tab, Tab::About);
}

/// `count` posters with noise seeded by `i * mul + add`: dark grey ones from 1945, bright
/// red ones from 2015.
fn dark_and_red_catalog(dir: &std::path::Path, count: u32, mul: u32, add: u32) -> DataDir {
    common::catalog_of(dir, count, |i| {
        let old = i % 2 == 0;
        let mut state = i * mul + add;
        let img = image::RgbImage::from_fn(60, 90, |_, _| {
            let n = (common::xorshift(&mut state) % 30) as u8;
            if old {
                image::Rgb([40 + n, 40 + n, 40 + n])
            } else {
                image::Rgb([200 + n, 60 + n, 40])
            }
        });
        (if old { 1945 } else { 2015 }, img)
    })
}

#[test]
fn train_tab_trains_with_live_figures_and_writes_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dark_and_red_catalog(tmp.path(), 48, 7, 1);
    let mut app = MovieErasApp::new(data.clone(), EraSchemes::builtin(), Settings::default());
    {
        let s = app.settings_mut();
        s.tab = Tab::Train;
        s.train.epochs = Some(2);
        s.train.backend = movie_eras::model::backend::BackendChoice::Cpu;
        s.train.resume = false;
        s.train.network = movie_eras::app::train_tab::NetworkSize::Small;
    }
    let mut h = Harness::builder()
        .with_size(egui::vec2(1200.0, 900.0))
        .build_ui_state(|ui, app: &mut MovieErasApp| app.show(ui), app);
    h.step();
    h.get_by_label("Start training").click();
    h.step();
    wait_for(&mut h, "Backend: cpu");
    wait_for(&mut h, "Finished; model written to");
    h.get_by_label_contains("Epoch 2: validation decade top-1");
    assert!(data.trained_model_dir().join("model.json").is_file());
    assert!(
        data.trained_model_dir()
            .join("checkpoints/epoch-002")
            .is_dir()
    );
}

#[test]
fn train_tab_trains_a_head_on_the_pretrained_backbone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dark_and_red_catalog(tmp.path(), 24, 13, 5);
    let mut app = MovieErasApp::new(data.clone(), EraSchemes::builtin(), Settings::default());
    {
        let s = app.settings_mut();
        s.tab = Tab::Train;
        // 18 training posters in one batch: one optimiser step per epoch.
        s.train.epochs = Some(20);
        s.train.backend = movie_eras::model::backend::BackendChoice::Cpu;
        s.train.resume = false;
        // An ensemble of two heads.
        s.train.heads = 2;
    }
    assert_eq!(
        app.settings_mut().train.network,
        movie_eras::app::train_tab::NetworkSize::Pretrained,
        "the pretrained backbone is the default"
    );
    let mut h = Harness::builder()
        .with_size(egui::vec2(1200.0, 900.0))
        .build_ui_state(|ui, app: &mut MovieErasApp| app.show(ui), app);
    h.step();
    h.get_by_label("Fine-tune blocks");
    h.get_by_label("Heads (ensemble)");
    h.get_by_label("Start training").click();
    h.step();
    let mut saw_features = false;
    step_until(&mut h, "training never finished", |h| {
        saw_features |= h
            .query_all_by_label_contains("Backbone features:")
            .next()
            .is_some();
        assert!(
            h.query_all_by_label_contains("Training failed")
                .next()
                .is_none(),
            "training failed"
        );
        h.query_all_by_label_contains("Finished; model written to")
            .next()
            .is_some()
    });
    assert!(saw_features, "feature extraction progress was shown");
    h.get_by_label_contains("Epoch 20: validation decade top-1");
    let dir = data.trained_model_dir();
    let config = movie_eras::model::ModelConfig::load(&dir).unwrap();
    assert_eq!(
        config.network.arch,
        movie_eras::model::backbone::Arch::EfficientnetLite0
    );
    assert_eq!(config.network.heads, 2);
    // Only the heads are stored (two of 4,720 -> 512 -> 28 in half precision: 9.7 MB);
    // the backbone (19 MB in float32) comes from the pretrained weights.
    assert!(std::fs::metadata(dir.join("model.bpk")).unwrap().len() < 12_000_000);
    // Features are cached: 24 posters.
    assert!(data.root().join("features.sqlite").is_file());
    // The dark/bright split is easy: the trained head dates a fresh dark poster older.
    let model = movie_eras::model::inference::EraModel::load(&dir, &Device::flex()).unwrap();
    let scheme = EraSchemes::builtin();
    let scheme = scheme.get("hollywood").unwrap();
    let dark = image::RgbImage::from_pixel(60, 90, image::Rgb([50, 50, 50]));
    let red = image::RgbImage::from_pixel(60, 90, image::Rgb([210, 70, 40]));
    let yd = model.predict(&dark, scheme).unwrap().year;
    let yr = model.predict(&red, scheme).unwrap().year;
    assert!(yd < yr, "dark {yd} vs red {yr}");

    // The loop closes: "Use this model" sends Classify (and the Gallery) to it, and each
    // prediction says which model made it.
    h.get_by_label("Use this model").click();
    h.step();
    assert_eq!(h.state().settings().tab, Tab::Classify);
    assert_eq!(h.state().settings().model.as_deref(), Some(dir.as_path()));
    let poster = tmp.path().join("dark.png");
    dark.save(&poster).unwrap();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(poster.clone())));
    h.step();
    wait_for(&mut h, "Predicted by: era-model (20");
    // The picker lists the shipped model and this one; picking the shipped one again
    // answers with it, and the earlier result keeps its label.
    h.get_by_label("Model").click();
    h.step();
    h.step();
    h.get_by_label("Shipped model").click();
    h.step();
    assert_eq!(h.state().settings().model, None);
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(poster.clone())));
    h.step();
    wait_for(&mut h, "Predicted by: Shipped model");
    h.get_by_label_contains("Predicted by: era-model");
}

#[test]
fn a_scheme_switch_keeps_filters_results_and_explained_eras_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    gallery_catalog(&data);
    let mut h = harness(&data);
    h.step();
    wait_for(&mut h, "5 of 6 movies");
    // Gallery: "New Hollywood" keeps Jaws and Star Wars.
    h.state_mut().settings_mut().gallery.filter.era = Some("New Hollywood".into());
    h.step();
    wait_for(&mut h, "2 of 6 movies");
    // In decades there is no such era: the filter is cleared and says so (it used to
    // become whatever decade sat at the same position).
    h.state_mut().settings_mut().scheme = "decades".into();
    h.step();
    h.step();
    wait_for(&mut h, "Era filter \u{201c}New Hollywood\u{201d} cleared");
    wait_for(&mut h, "5 of 6 movies");
    assert_eq!(h.state().settings().gallery.filter.era, None);
    // A decade filter stays that decade when the scheme is switched back and forth.
    h.state_mut().settings_mut().gallery.filter.era = Some("1970s".into());
    h.step();
    wait_for(&mut h, "2 of 6 movies");

    // Classify: the results follow the scheme.
    h.state_mut().settings_mut().scheme = "hollywood".into();
    let poster = tmp.path().join("poster.png");
    common::poster(4, 154, 231).save(&poster).unwrap();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(poster.clone())));
    h.step();
    wait_for(&mut h, "Estimated year");
    h.get_by_label_contains("Show saliency").click();
    h.step();
    h.get_by_label("Golden Age").click();
    h.step();
    wait_for(&mut h, "Grad-CAM for Golden Age");
    h.state_mut().settings_mut().scheme = "decades".into();
    h.step();
    h.step();
    // The bars are decades now, and the explained era is the new best one (by name),
    // which is also the one highlighted.
    let device = movie_eras::model::backend::choose(movie_eras::model::backend::BackendChoice::Cpu)
        .unwrap()
        .device;
    let model = movie_eras::model::inference::EraModel::load(
        &movie_eras::model::default_model_dir().unwrap(),
        &device,
    )
    .unwrap();
    let schemes = EraSchemes::builtin();
    let decades = schemes.get("decades").unwrap();
    let img = image::open(&poster).unwrap().to_rgb8();
    let best = model.predict(&img, decades).unwrap();
    let best = best.best_era_name().to_owned();
    wait_for(&mut h, &format!("Grad-CAM for {best}"));
    assert!(
        h.query_by_label("Golden Age").is_none(),
        "the bars kept the old scheme"
    );
    h.get_by_label("1940s");
    // Picking an era by its bar explains that era.
    h.get_by_label("1950s").click();
    h.step();
    wait_for(&mut h, "Grad-CAM for 1950s");
    // And back: Hollywood again, and the 1950s are not one of its eras.
    h.state_mut().settings_mut().scheme = "hollywood".into();
    h.step();
    h.step();
    h.get_by_label("Golden Age");
    assert!(h.query_by_label("1950s").is_none());
}

/// Steps until `done` holds (within a minute), else fails naming `what`.
fn wait_until(
    h: &mut Harness<'_, MovieErasApp>,
    what: &str,
    done: impl Fn(&Harness<'_, MovieErasApp>) -> bool,
) {
    step_until(h, what, |h| done(h));
}

/// Steps until the Gallery's model pass has scored `n` posters.
fn wait_for_pass(h: &mut Harness<'_, MovieErasApp>, n: usize) {
    wait_until(h, "the model pass never finished", |h| {
        h.state().gallery().errors().len() >= n
    });
}

#[test]
fn the_gallery_model_pass_is_stored_once_per_model_and_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    gallery_catalog(&data);
    {
        let mut h = harness(&data);
        h.state_mut().settings_mut().gallery.sort = movie_eras::explore::SortKey::Error;
        h.step();
        wait_for_pass(&mut h, 5);
    }
    // Relaunch with the posters gone and no feature cache: the pass still scores all
    // five, from the predictions stored in the catalog (it used to rerun the model).
    std::fs::remove_dir_all(data.join("images")).unwrap();
    let _ = std::fs::remove_file(data.join("features.sqlite"));
    let conn = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM predictions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 5);
    conn.execute("DELETE FROM thumbnails", []).unwrap();
    drop(conn);
    let mut h = harness(&data);
    h.state_mut().settings_mut().gallery.sort = movie_eras::explore::SortKey::Error;
    h.step();
    wait_for_pass(&mut h, 5);
    // Export carries the model's answers.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_movie-eras"))
        .arg("--data-dir")
        .arg(&data)
        .args(["export", "--format", "json", "--scheme", "decades"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    let predicted: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["predicted_year"].is_number())
        .collect();
    assert_eq!(predicted.len(), 5, "{v}");
    assert!(
        predicted
            .iter()
            .all(|r| r["predicted_era"].as_str().unwrap().ends_with('s')),
        "{v}"
    );
    // Every ok poster (5 of the 6 movies) has one: export has nothing to warn about.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("have a stored prediction"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_empty_catalog_offers_three_ways_in_and_a_dropped_folder_is_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut h = harness(&data);
    h.step();
    wait_for(&mut h, "Welcome to Movie Eras");
    h.get_by_label("Classify a poster…");
    h.get_by_label("Import a folder of posters…");
    h.get_by_label("Harvest from TMDB…").click();
    h.step();
    assert_eq!(h.state().settings().tab, Tab::Harvest);
    h.state_mut().settings_mut().tab = Tab::Gallery;
    // A folder of posters with the year in each name; one without, one broken.
    let folder = tmp.path().join("my posters");
    std::fs::create_dir_all(&folder).unwrap();
    for (i, name) in [
        "Casablanca (1942).png",
        "jaws_1975.png",
        "The Avengers (2012).png",
        "untitled.png",
    ]
    .iter()
    .enumerate()
    {
        common::poster(i as u32 + 3, 154, 231)
            .save(folder.join(name))
            .unwrap();
    }
    std::fs::write(folder.join("Broken (1999).jpg"), b"not a jpeg").unwrap();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(folder.clone())));
    h.step();
    h.step();
    assert_eq!(
        h.state().settings().tab,
        Tab::Gallery,
        "a folder is not a poster to classify"
    );
    wait_for(&mut h, "4 posters understood, 1 not");
    h.get_by_label("Casablanca (1942).png");
    h.get_by_label("The Avengers");
    h.get_by_label_contains("not understood: untitled.png");
    h.get_by_label("Import").click();
    h.step();
    wait_for(&mut h, "Imported 3 posters (1 failed");
    h.get_by_label_contains("Broken (1999).jpg:");
    wait_for(&mut h, "3 of 4 movies");
    // Titles come from the names too.
    h.get_by_label("jaws (1975)");
}

#[test]
fn compare_adds_the_next_era_in_time_order_without_moving_the_button() {
    let tmp = tempfile::tempdir().unwrap();
    gallery_catalog(tmp.path());
    let hollywood = EraSchemes::builtin().get("hollywood").unwrap().clone();
    let (golden, new_hollywood) = (hollywood.era_index(1942), hollywood.era_index(1975));
    let mut h = harness_with(tmp.path(), 800.0, |s| {
        // Saved out of order: shown in time order.
        s.compare
            .columns
            .insert("hollywood".into(), vec![new_hollywood, golden]);
        s.tab = Tab::Compare;
    });
    wait_for(&mut h, "New Hollywood (1967–1982)");
    assert_eq!(
        h.state().settings().compare.columns["hollywood"],
        vec![golden, new_hollywood]
    );
    let before = h.get_by_label("Add column").rect();
    h.get_by_label("Add column").click();
    h.step();
    h.step();
    // The era after the last one shown, in its place in time; the button stayed put.
    assert_eq!(
        h.state().settings().compare.columns["hollywood"],
        vec![golden, new_hollywood, new_hollywood + 1]
    );
    wait_for(&mut h, "Blockbuster (1983–1994)");
    assert_eq!(h.get_by_label("Add column").rect().min, before.min);
    // Counts behind the yearly figures are plotted, and sparse years are called out.
    h.get_by_label("Statistics").click();
    wait_for(&mut h, "Posters per year");
    h.get_by_label_contains("years with fewer than 5 posters are dots");
}

#[test]
fn gallery_tiles_show_the_models_guess_and_details_link_out() {
    let tmp = tempfile::tempdir().unwrap();
    gallery_catalog(tmp.path());
    let mut h = harness_with(tmp.path(), 800.0, |s| s.gallery.predictions = true);
    // Every poster's tile gets the model's decade and error once the pass is done.
    wait_until(&mut h, "the tiles never showed the model's guess", |h| {
        h.query_all_by_label_contains("\u{2014} model \u{2248}")
            .count()
            >= 5
    });
    let tile = h
        .get_by_label_contains("Casablanca (1942) \u{2014} model \u{2248}")
        .accesskit_node();
    let tile = text_of(&tile);
    assert!(tile.ends_with(" y") || tile.ends_with("exact"), "{tile}");
    h.get_by_label_contains("Casablanca (1942)").click();
    h.step();
    // The TMDB page of the movie (tmdb id 100) and "Open in Classify".
    wait_for(&mut h, "movie 100 on TMDB");
    h.get_by_label("Open in Classify").click();
    h.step();
    h.step();
    assert_eq!(h.state().settings().tab, Tab::Classify);
    // Classify finds the poster in the catalog by its contents.
    wait_for(&mut h, "In the catalog: Casablanca (1942)");
    h.get_by_label_contains("the guess is off by");
}

#[test]
fn the_map_lasso_narrows_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    gallery_catalog(tmp.path());
    let mut h = harness_with(tmp.path(), 800.0, |s| s.gallery.map = true);
    wait_until(&mut h, "the map never appeared", |h| {
        h.state().gallery().map_rect().is_some()
    });
    h.step();
    h.get_by_label("Lasso").click();
    h.step();
    // A lasso around the left half of the map: the leftmost poster is inside, the
    // rightmost is not.
    let r = h.state().gallery().map_rect().unwrap().shrink(3.0);
    let mid = r.center().x;
    let path = [
        egui::pos2(r.left() + 8.0, r.top()),
        egui::pos2(mid, r.top()),
        egui::pos2(mid, r.bottom()),
        egui::pos2(r.left(), r.bottom()),
        r.left_top(),
    ];
    h.hover_at(r.left_top());
    h.step();
    h.drag_at(r.left_top());
    h.step();
    for p in path {
        h.hover_at(p);
        h.step();
    }
    h.drop_at(r.left_top());
    h.step();
    h.step();
    let label = h
        .get_by_label_contains("Lasso on the map:")
        .accesskit_node();
    let label = text_of(&label);
    let n: usize = label
        .trim_start_matches("Lasso on the map: ")
        .trim_end_matches(" posters")
        .parse()
        .unwrap();
    assert!((1..=4).contains(&n), "{label}");
    // The grid keeps only the lassoed posters, until the lasso is cleared.
    h.state_mut().settings_mut().gallery.map = false;
    h.step();
    wait_for(&mut h, &format!("{n} of 6 movies"));
    h.get_by_label("Clear lasso").click();
    h.step();
    wait_for(&mut h, "5 of 6 movies");
}

#[test]
fn hovering_a_compare_plot_shows_that_years_posters_until_the_pointer_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    gallery_catalog(tmp.path());
    let mut h = harness_with(tmp.path(), 1600.0, |s| {
        s.tab = Tab::Compare;
        s.compare.view = movie_eras::app::compare_tab::CompareView::Statistics;
    });
    wait_for(&mut h, "Brightness");
    // Posters and average images load on workers and may move the plots while they do,
    // so the pointer follows the plot's title until the strip shows.
    step_until(&mut h, "the hover strip never appeared", |h| {
        let title = h.get_by_label("Brightness").rect();
        h.hover_at(egui::pos2(title.left() + 200.0, title.bottom() + 60.0));
        h.query_all_by_label_contains("Posters from 19")
            .next()
            .is_some()
    });
    // Gone once the pointer leaves the plots.
    h.hover_at(egui::pos2(5.0, 5.0));
    for _ in 0..4 {
        h.step();
    }
    assert!(h.query_by_label_contains("Posters from 19").is_none());
    h.get_by_label("Posters from the year under the pointer appear here.");
}

/// Tile labels of the first wall column (left of `x_max`), top to bottom, left to right.
fn first_column(h: &Harness<'_, MovieErasApp>, x_max: f32) -> Vec<String> {
    let mut tiles: Vec<(i64, i64, String)> = h
        .query_all_by_label_contains("Poster ")
        .filter(|n| n.rect().left() < x_max)
        .map(|n| {
            let r = n.rect();
            (
                r.top() as i64,
                r.left() as i64,
                text_of(&n.accesskit_node()),
            )
        })
        .collect();
    tiles.sort();
    tiles.into_iter().map(|(_, _, t)| t).collect()
}

#[test]
fn compare_walls_follow_the_tile_size_the_shared_filter_and_the_sort() {
    let tmp = tempfile::tempdir().unwrap();
    let years = [1955, 1985, 2015];
    let data = common::catalog_of(tmp.path(), 90, |i| {
        (
            years[i as usize % 3] + (i as i32 / 3) % 5,
            common::poster(i + 5, 40, 60),
        )
    });
    let decades = EraSchemes::builtin().get("decades").unwrap().clone();
    let cols = vec![
        decades.era_index(1955),
        decades.era_index(1985),
        decades.era_index(2015),
    ];
    let mut h = harness_with(data.root(), 800.0, |s| {
        s.tab = Tab::Compare;
        s.scheme = "decades".into();
        s.compare.columns.insert("decades".into(), cols);
        s.compare.all_posters = true;
        s.compare.tile = 120.0;
    });
    wait_for(&mut h, "30 posters");
    assert_eq!(h.query_all_by_label("30 posters").count(), 3);
    // Only the tiles in view exist; smaller tiles, more of them in the same window.
    let big = h.query_all_by_label_contains("Poster ").count();
    h.state_mut().settings_mut().compare.tile = 40.0;
    h.step();
    h.step();
    let small = h.query_all_by_label_contains("Poster ").count();
    assert!(small > big, "{small} tiles at 40 points, {big} at 120");
    assert!(big < 90, "the wall is virtualised: {big} of 90 tiles drawn");
    // One filter narrows every column.
    h.state_mut().settings_mut().compare.filter.title = "Poster 1".into();
    h.step();
    h.step();
    assert_eq!(h.query_all_by_label("3 posters").count(), 2);
    h.get_by_label("5 posters");
    h.state_mut().settings_mut().compare.filter.title.clear();
    h.step();
    h.step();
    // The sort orders each wall: by year, then shuffled by the seed.
    let x_max = 1200.0 / 3.0;
    let by_year = first_column(&h, x_max);
    let years_shown: Vec<i32> = by_year
        .iter()
        .map(|t| t[t.len() - 5..t.len() - 1].parse().unwrap())
        .collect();
    assert!(years_shown.windows(2).all(|w| w[0] <= w[1]), "{by_year:?}");
    h.state_mut().settings_mut().compare.sort = movie_eras::explore::walls::WallSort::Random;
    h.step();
    h.step();
    let shuffled = first_column(&h, x_max);
    assert_eq!(shuffled.len(), by_year.len());
    assert_ne!(shuffled, by_year);
}

#[test]
fn the_map_switches_to_a_cached_t_sne_layout_and_era_colours() {
    let tmp = tempfile::tempdir().unwrap();
    gallery_catalog(tmp.path());
    let mut h = harness_with(tmp.path(), 800.0, |s| {
        s.gallery.map = true;
        s.gallery.map_layout = movie_eras::explore::layout::MapLayout::Tsne;
        s.gallery.map_colour = movie_eras::app::gallery_tab::MapColour::Era;
    });
    wait_for(&mut h, "placed by a t-SNE layout");
    h.get_by_label_contains("coloured by era");
    // The layout is cached per model and catalog in the data directory.
    let cached = std::fs::read_dir(tmp.path().join("cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("map-tsne-"))
        .count();
    assert_eq!(cached, 1);
}

/// Raises the output bins of the 1950s and the 2010s of a network's last layer and damps
/// its weights: a shipped-model copy whose year distributions have two separated modes,
/// by amounts that still vary with the poster.
struct TwoPeaks;

impl burn::module::ModuleMapper for TwoPeaks {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::prelude::Tensor<D>>,
    ) -> burn::module::Param<burn::prelude::Tensor<D>> {
        // The output layer is the only one with 28 (bins) outputs: weight [512, 28] and
        // bias [28]. Bins are five years from 1890: 1950–59 are 12–13, 2010–19 are 24–25.
        param.map(|t| {
            let dims = t.dims();
            if D == 1 && dims[0] == 28 {
                let device = t.device();
                let lift: Vec<f32> = (0..28)
                    .map(|b| match b {
                        12 | 13 => 4.6,
                        24 | 25 => 5.0,
                        _ => 0.0,
                    })
                    .collect();
                t.clone() * 0.0
                    + burn::prelude::Tensor::<1>::from_data(
                        burn::prelude::TensorData::new(lift, [28]),
                        &device,
                    )
                    .reshape(dims)
            } else if D == 2 && dims[1] == 28 {
                t * 0.1
            } else {
                t
            }
        })
    }
}

/// Writes the two-mode copy of the shipped model into `dir`.
fn two_peak_model(dir: &std::path::Path) {
    use burn::module::Module;
    use movie_eras::model::{ModelConfig, inference};
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("resources/model");
    // Its 160×240 network alone, with the last layer's weights replaced.
    let config = ModelConfig {
        members: Vec::new(),
        ..ModelConfig::load(&shipped).unwrap()
    };
    let net = inference::load_net(&shipped, &config, &Device::flex()).unwrap();
    let net = net.map(&mut TwoPeaks);
    std::fs::create_dir_all(dir).unwrap();
    inference::save_model(&net, &config, dir).unwrap();
}

#[test]
fn classify_says_when_a_poster_reads_two_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("two-peaks");
    two_peak_model(&model);
    let poster = tmp.path().join("poster.png");
    common::poster(3, 154, 231).save(&poster).unwrap();
    let mut h = harness(&tmp.path().join("data"));
    h.state_mut().use_model(Some(model.clone()));
    h.step();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(poster.clone())));
    h.step();
    wait_for(&mut h, "Estimated year");
    // The note names the art's decade and the other reading's, with its share.
    wait_for(&mut h, "Two readings");
    let note = h
        .get_by_label_contains("posters like this are often re-releases")
        .accesskit_node();
    let note = text_of(&note);
    assert!(
        note.starts_with("Looks like 2010s art;") && note.contains("of 1950s films ("),
        "{note}"
    );
    // The same model through the library says the same.
    let m = movie_eras::model::inference::EraModel::load(&model, &Device::flex()).unwrap();
    let scheme = EraSchemes::builtin().get("decades").unwrap().clone();
    let rgb = image::open(&poster).unwrap().to_rgb8();
    let two = m.predict(&rgb, &scheme).unwrap().two_readings.unwrap();
    assert_eq!(note, two.sentence());
    // The shipped model reads this poster one way: no note.
    let plain = tempfile::tempdir().unwrap();
    let mut h = harness(&plain.path().join("data"));
    h.step();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(poster.clone())));
    h.step();
    wait_for(&mut h, "Estimated year");
    let shipped = movie_eras::model::inference::EraModel::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("resources/model"),
        &Device::flex(),
    )
    .unwrap();
    let reading = shipped.predict(&rgb, &scheme).unwrap().two_readings;
    assert_eq!(
        h.query_by_label_contains("Two readings").is_some(),
        reading.is_some(),
        "{reading:?}"
    );
}

#[test]
fn the_gallery_sorts_by_the_second_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    gallery_catalog(&data);
    let model = tmp.path().join("two-peaks");
    two_peak_model(&model);
    let mut h = harness_with(&data, 800.0, |s| s.tab = Tab::Gallery);
    h.state_mut().use_model(Some(model.clone()));
    h.step();
    wait_for(&mut h, "5 of 6 movies");
    // Choosing the order in the Sort menu runs the model over the catalog.
    h.get_by_role_and_label(egui::Role::ComboBox, "Sort")
        .click();
    h.step();
    h.step();
    h.get_by_label("Looks like another era (two readings: re-release art?)")
        .click();
    h.step();
    assert_eq!(
        h.state().settings().gallery.sort,
        movie_eras::explore::SortKey::TwoReadings
    );
    wait_until(&mut h, "the model pass never finished", |h| {
        h.state().gallery().second_readings().len() >= 5
    });
    h.state_mut().settings_mut().gallery.descending = true;
    h.step();
    h.step();
    let shares = h.state().gallery().second_readings().clone();
    let shown = shown_ids(&h);
    assert_eq!(shown.len(), 5);
    assert!(
        shown.windows(2).all(|w| shares[&w[0]] >= shares[&w[1]]),
        "not strongest second reading first: {shown:?} {shares:?}"
    );
    // Every poster reads two ways under this model, by different amounts.
    let mut distinct: Vec<f32> = shown.iter().map(|id| shares[id]).collect();
    distinct.dedup();
    assert!(distinct.iter().all(|&s| s > 0.0), "{shares:?}");
    assert!(distinct.len() >= 2, "{shares:?}");
    // The first poster's details carry the note.
    let first = {
        let e = h.state().explorer().unwrap();
        let r = &e.rows[h.state().gallery().shown()[0]];
        format!("{} ({})", r.title, r.year.unwrap())
    };
    h.get_by_label_contains(&first).click();
    h.step();
    wait_for(&mut h, "Estimated year");
    wait_for(&mut h, "Two readings");
}
