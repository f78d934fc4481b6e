//! `export`: one row per movie as CSV or JSON, with its era in a chosen scheme.

use std::io::Write;

use crate::catalog::MovieRow;
use crate::eras::EraScheme;

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// One exported movie.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportRow {
    /// Catalog id.
    pub id: i64,
    /// TMDB id (empty when unknown).
    pub tmdb_id: Option<i64>,
    /// Title.
    pub title: String,
    /// Release year.
    pub year: Option<i32>,
    /// Era in the chosen scheme (empty without a year).
    pub era: String,
    /// Genre names.
    pub genres: String,
    /// Poster file.
    pub poster_file: String,
    /// Poster SHA-256.
    pub poster_sha256: String,
    /// `ok`, `failed` or `pending`.
    pub status: String,
    /// Why the poster failed.
    pub reason: String,
    /// The model's estimated year (one decimal), where a prediction is stored.
    pub predicted_year: Option<f64>,
    /// The model's most likely era in the chosen scheme, where a prediction is stored.
    pub predicted_era: String,
}

/// A model's stored answer for a poster (by SHA-256): estimated year and era name.
pub type PredictionLookup<'a> = &'a dyn Fn(&str) -> Option<(f64, String)>;

/// Builds export rows from catalog rows; `predicted` gives the model's answer per poster
/// SHA-256, where there is one.
pub fn export_rows(
    movies: &[MovieRow],
    scheme: &EraScheme,
    predicted: PredictionLookup<'_>,
) -> Vec<ExportRow> {
    movies
        .iter()
        .map(|m| {
            let answer = m.poster_sha256.as_deref().and_then(predicted);
            ExportRow {
                id: m.id,
                tmdb_id: m.tmdb_id,
                title: m.title.clone(),
                year: m.year,
                era: m
                    .year
                    .map(|y| scheme.era_of(y).name.clone())
                    .unwrap_or_default(),
                genres: m.genres.clone(),
                poster_file: m.poster_file.clone().unwrap_or_default(),
                poster_sha256: m.poster_sha256.clone().unwrap_or_default(),
                status: m.status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                reason: m.reason.clone().unwrap_or_default(),
                predicted_year: answer.as_ref().map(|(y, _)| (y * 10.0).round() / 10.0),
                predicted_era: answer.map(|(_, e)| e).unwrap_or_default(),
            }
        })
        .collect()
}

/// Writes rows in `format` to `out`.
pub fn write_export(
    rows: &[ExportRow],
    format: ExportFormat,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        ExportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, rows).map_err(std::io::Error::other)?;
            writeln!(out)
        }
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for r in rows {
                w.serialize(r).map_err(std::io::Error::other)?;
            }
            w.flush()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PosterStatus;
    use crate::eras::EraSchemes;

    #[test]
    fn csv_and_json_carry_era() {
        let schemes = EraSchemes::builtin();
        let movies = vec![MovieRow {
            id: 1,
            tmdb_id: Some(11),
            title: "Star, Wars".into(),
            year: Some(1977),
            genres: "Adventure".into(),
            popularity: None,
            poster_id: Some(1),
            poster_file: Some("a.jpg".into()),
            poster_sha256: Some("ff".into()),
            status: Some(PosterStatus::Ok),
            reason: None,
            stats: None,
        }];
        let rows = export_rows(&movies, schemes.get("hollywood").unwrap(), &|_| None);
        let mut csv = Vec::new();
        write_export(&rows, ExportFormat::Csv, &mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert!(text.starts_with(
            "id,tmdb_id,title,year,era,genres,poster_file,poster_sha256,status,reason,predicted_year,predicted_era\n"
        ));
        assert!(text.contains("1,11,\"Star, Wars\",1977,New Hollywood,Adventure,a.jpg,ff,ok,,,\n"));
        let mut json = Vec::new();
        write_export(&rows, ExportFormat::Json, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v[0]["era"], "New Hollywood");
        let decades = export_rows(&movies, schemes.get("decades").unwrap(), &|_| None);
        assert_eq!(decades[0].era, "1970s");
        // A stored prediction fills the two model columns.
        let predicted = export_rows(&movies, schemes.get("decades").unwrap(), &|sha| {
            (sha == "ff").then(|| (1968.26, "1960s".to_owned()))
        });
        assert_eq!(predicted[0].predicted_year, Some(1968.3));
        assert_eq!(predicted[0].predicted_era, "1960s");
    }
}
