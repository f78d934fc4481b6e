//! UI tests with egui_kittest: the window's tabs, the About panel and the catalog summary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use movie_eras::app::{MovieErasApp, Settings, Tab};
use movie_eras::catalog::{Catalog, NewMovie, PosterRecord, PosterStatus};
use movie_eras::eras::EraSchemes;
use movie_eras::paths::DataDir;

fn harness(data: &std::path::Path) -> Harness<'static, MovieErasApp> {
    let app = MovieErasApp::new(
        DataDir::new(data),
        EraSchemes::builtin(),
        Settings::default(),
    );
    Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .build_ui_state(|ui, app: &mut MovieErasApp| app.show(ui), app)
}

/// Steps until `label` is on screen (workers report asynchronously).
fn wait_for(h: &mut Harness<'_, MovieErasApp>, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.query_by_label_contains(label).is_none() {
        assert!(Instant::now() < deadline, "`{label}` never appeared");
        std::thread::sleep(Duration::from_millis(10));
        h.step();
    }
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
    h.get_by_label_contains(movie_eras::version::VERSION);
}

#[test]
fn gallery_summary_counts_movies_per_era() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut c = Catalog::open(&tmp.path().join("catalog.sqlite")).unwrap();
        let movies: Vec<NewMovie> = [1950, 1951, 1977]
            .iter()
            .enumerate()
            .map(|(i, &year)| NewMovie {
                source_key: format!("t:{i}"),
                source: "test".into(),
                tmdb_id: None,
                title: format!("M{i}"),
                year: Some(year),
                release_date: None,
                genres: vec![],
                popularity: None,
                vote_average: None,
                vote_count: None,
                poster: PosterRecord::failed(None, "x".into()),
            })
            .collect();
        c.insert_movies(&movies).unwrap();
        assert_eq!(c.counts().unwrap().failed, 3);
        let _ = PosterStatus::Ok;
    }
    let mut h = harness(tmp.path());
    wait_for(&mut h, "3 movies");
    h.get_by_label("Gallery").click();
    h.step();
    // Hollywood scheme: 2 in the Golden Age, 1 in New Hollywood.
    h.get_by_label("Golden Age");
    h.get_by_label("New Hollywood");
    assert!(h.query_all_by_label("2").count() >= 1);
}
