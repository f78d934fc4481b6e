//! `import`: adds a folder of posters with a CSV of labels to the catalog.
//!
//! Images are decoded once, validated and measured in parallel (rayon), and thumbnailed
//! only when larger than the thumbnail box (a smaller poster is shown from its file); one
//! writer commits them in batches, each batch one transaction, so an import killed at
//! any moment leaves a consistent catalog and a re-run completes it without duplicates.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use rayon::prelude::*;

use crate::catalog::{Catalog, CatalogError, NewMovie, PosterRecord, PosterStatus};
use crate::imaging::{self, ImageLimits};

/// Import errors (per-file problems are not errors: they are reported in the summary).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The labels file could not be read or has no usable header/rows.
    #[error("labels file {path}: {message}")]
    Labels {
        /// The CSV file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The image folder does not exist.
    #[error("image folder {0} does not exist or is not a folder")]
    NoDir(String),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A poster could not be copied into the data directory.
    #[error("cannot copy poster to {path}: {source}")]
    Copy {
        /// Destination.
        path: String,
        /// I/O error (disk full, permissions…).
        source: std::io::Error,
    },
    /// Cancelled by the user.
    #[error("import cancelled")]
    Cancelled,
}

/// One labelled row of the CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRow {
    /// Line number in the CSV (1-based).
    pub line: usize,
    /// File path relative to the image folder.
    pub file: String,
    /// Release year.
    pub year: i32,
    /// Title (may be empty).
    pub title: String,
    /// TMDB id, when the CSV has a `tmdb_id` column.
    pub tmdb_id: Option<i64>,
}

/// A row or file that was not imported, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The file (or `line N` for a bad CSV row).
    pub file: String,
    /// Why.
    pub reason: String,
}

/// Parses a labels CSV: columns `file,year[,title]`, with or without a header row. With a
/// header, columns are found by name (`file`, `year`, `title`, `tmdb_id`; others ignored).
pub fn read_labels(path: &Path) -> Result<(Vec<LabelRow>, Vec<Skipped>), ImportError> {
    let err = |message: String| ImportError::Labels {
        path: path.display().to_string(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| err(e.to_string()))?;
    let mut records = reader.records();
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let (mut file_col, mut year_col, mut title_col, mut tmdb_col) = (0, 1, Some(2), None);
    let mut pending_first = None;
    if let Some(first) = records.next() {
        let first = first.map_err(|e| err(e.to_string()))?;
        let lower: Vec<String> = first.iter().map(str::to_lowercase).collect();
        if lower.iter().any(|c| c == "file") && lower.iter().any(|c| c == "year") {
            let find = |n: &str| lower.iter().position(|c| c == n);
            file_col = find("file").unwrap_or(0);
            year_col = find("year").unwrap_or(1);
            title_col = find("title");
            tmdb_col = find("tmdb_id");
        } else {
            pending_first = Some(first);
        }
    } else {
        return Err(err("the file is empty".into()));
    }
    let mut line = 1;
    let iter = pending_first.into_iter().map(Ok).chain(records);
    for rec in iter {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                line += 1;
                skipped.push(Skipped {
                    file: format!("line {line}"),
                    reason: format!("unreadable CSV row: {e}"),
                });
                continue;
            }
        };
        line = rec.position().map_or(line + 1, |p| p.line() as usize);
        let file = rec.get(file_col).unwrap_or("").to_owned();
        let year_text = rec.get(year_col).unwrap_or("");
        if file.is_empty() {
            skipped.push(Skipped {
                file: format!("line {line}"),
                reason: "no file name".into(),
            });
            continue;
        }
        let year = match year_text.parse::<i32>() {
            Ok(y) if (1870..=2100).contains(&y) => y,
            _ => {
                skipped.push(Skipped {
                    file: file.clone(),
                    reason: format!("line {line}: bad year `{year_text}`"),
                });
                continue;
            }
        };
        rows.push(LabelRow {
            line,
            file,
            year,
            title: title_col.and_then(|c| rec.get(c)).unwrap_or("").to_owned(),
            tmdb_id: tmdb_col
                .and_then(|c| rec.get(c))
                .and_then(|s| s.parse().ok()),
        });
    }
    if rows.is_empty() && skipped.is_empty() {
        return Err(err("no rows".into()));
    }
    Ok((rows, skipped))
}

/// Image file extensions a folder import reads.
const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// Year and title read from a poster's file name: `Title (1977).jpg`, `title_1977.jpg`,
/// `Title - 1977.png` or `1977 Title.jpg` (years 1870–2100; underscores read as spaces).
pub fn year_from_name(name: &str) -> Option<(i32, String)> {
    let stem = Path::new(name).file_stem()?.to_str()?;
    let year_at = |i: usize| -> Option<i32> {
        let t = stem.get(i..i + 4)?;
        let y: i32 = t
            .parse()
            .ok()
            .filter(|_| t.bytes().all(|b| b.is_ascii_digit()))?;
        (1870..=2100).contains(&y).then_some(y)
    };
    let tidy = |t: &str| {
        t.replace('_', " ")
            .trim_matches(|c: char| c.is_whitespace() || c == '-' || c == '.')
            .to_owned()
    };
    // "Title (1977)", the year in brackets anywhere.
    if let Some(open) = stem.rfind('(')
        && stem.get(open + 5..open + 6) == Some(")")
        && let Some(y) = year_at(open + 1)
    {
        return Some((y, tidy(&stem[..open])));
    }
    // "title_1977", "title-1977", "title 1977": the year at the end.
    if stem.len() >= 4 {
        let i = stem.len() - 4;
        let before = stem[..i].chars().last();
        if stem.is_char_boundary(i)
            && before.is_none_or(|c| matches!(c, '_' | '-' | ' ' | '.'))
            && let Some(y) = year_at(i)
        {
            return Some((y, tidy(&stem[..i])));
        }
    }
    // "1977_title", "1977 - title": the year at the start.
    if let Some(y) = year_at(0)
        && stem[4..]
            .chars()
            .next()
            .is_none_or(|c| matches!(c, '_' | '-' | ' ' | '.'))
    {
        return Some((y, tidy(&stem[4..])));
    }
    None
}

/// Labels from the file names of the images in `dir` (not its subfolders), as
/// [`year_from_name`] reads them; images whose name has no year are skipped with the reason.
pub fn labels_from_names(dir: &Path) -> Result<(Vec<LabelRow>, Vec<Skipped>), ImportError> {
    let entries =
        std::fs::read_dir(dir).map_err(|_| ImportError::NoDir(dir.display().to_string()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| {
            Path::new(n)
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
        })
        .collect();
    names.sort();
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        match year_from_name(&name) {
            Some((year, title)) => rows.push(LabelRow {
                line: i + 1,
                file: name,
                year,
                title,
                tmdb_id: None,
            }),
            None => skipped.push(Skipped {
                file: name,
                reason:
                    "no year in the file name (name it like `Title (1977).jpg` or `title_1977.jpg`)"
                        .into(),
            }),
        }
    }
    if rows.is_empty() && skipped.is_empty() {
        return Err(ImportError::Labels {
            path: dir.display().to_string(),
            message: "no images (jpg, png, webp, gif, bmp) in this folder".into(),
        });
    }
    Ok((rows, skipped))
}

/// The labels an import with `opts` reads: the CSV, or years from file names.
pub fn labels_for(opts: &ImportOptions) -> Result<(Vec<LabelRow>, Vec<Skipped>), ImportError> {
    match &opts.labels {
        Some(csv) => read_labels(csv),
        None => labels_from_names(&opts.dir),
    }
}

/// Import settings.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Folder the CSV's file names are relative to.
    pub dir: PathBuf,
    /// The labels CSV; `None` reads years (and titles) from the file names.
    pub labels: Option<PathBuf>,
    /// Copy posters into the data directory instead of referencing them in place.
    pub copy_into: Option<PathBuf>,
    /// Image limits.
    pub limits: ImageLimits,
    /// Rows committed per transaction.
    pub batch: usize,
}

/// Progress of a running import.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportProgress {
    /// Rows processed so far (this run).
    pub done: u64,
    /// Rows to process this run.
    pub total: u64,
    /// Of those, failed images.
    pub failed: u64,
}

/// What an import did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportSummary {
    /// Rows in the labels file.
    pub rows: usize,
    /// Movies added to the catalog with a good poster.
    pub added_ok: usize,
    /// Movies added with a failed poster (reason stored in the catalog).
    pub added_failed: usize,
    /// Rows already in the catalog (left alone).
    pub already_present: usize,
    /// Rows or files not stored at all, with reasons.
    pub skipped: Vec<Skipped>,
    /// Failed posters, with reasons.
    pub failed: Vec<Skipped>,
}

/// The catalog key of an imported row.
pub fn import_key(file: &str) -> String {
    format!("import:{}", file.replace('\\', "/"))
}

enum Outcome {
    Movie(Box<NewMovie>),
    Skip(Skipped),
}

/// Imports one row. `canonical_dir` is the image folder as an absolute path without
/// links, resolved once per import: a poster referenced in place is stored under it.
fn process_row(
    row: &LabelRow,
    opts: &ImportOptions,
    canonical_dir: &Path,
) -> Result<Outcome, ImportError> {
    let path = opts.dir.join(&row.file);
    let rel_ok = !Path::new(&row.file)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir));
    if !rel_ok {
        return Ok(Outcome::Skip(Skipped {
            file: row.file.clone(),
            reason: "file name leaves the image folder (`..`)".into(),
        }));
    }
    if !path.exists() {
        return Ok(Outcome::Skip(Skipped {
            file: row.file.clone(),
            reason: "file not found".into(),
        }));
    }
    let stored_path: PathBuf = canonical_dir
        .components()
        .chain(
            Path::new(&row.file)
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir)),
        )
        .collect();
    let stored = stored_path.display().to_string();
    let poster = match imaging::read_image_file(&path, &opts.limits)
        .and_then(|bytes| imaging::decode_poster(&bytes, &opts.limits).map(|d| (bytes, d)))
    {
        Err(reason) => PosterRecord::failed(Some(stored), reason.to_string()),
        Ok((bytes, decoded)) => {
            let file = match &opts.copy_into {
                None => stored,
                Some(dir) => {
                    let ext = decoded
                        .format
                        .extensions_str()
                        .first()
                        .copied()
                        .unwrap_or("img");
                    let name = format!("{}.{ext}", decoded.sha256);
                    let dest = dir.join(&name);
                    if !dest.exists() {
                        crate::fsutil::write_atomic(&dest, &bytes).map_err(|source| {
                            ImportError::Copy {
                                path: dest.display().to_string(),
                                source,
                            }
                        })?;
                    }
                    format!("posters/{name}")
                }
            };
            match imaging::summarise(&decoded.rgb) {
                Ok(summary) => PosterRecord::ok(file, &decoded, summary),
                Err(e) => PosterRecord::failed(Some(file), format!("thumbnail failed: {e}")),
            }
        }
    };
    Ok(Outcome::Movie(Box::new(NewMovie {
        source_key: import_key(&row.file),
        source: "import".into(),
        tmdb_id: row.tmdb_id,
        title: row.title.clone(),
        year: Some(row.year),
        release_date: None,
        genres: Vec::new(),
        popularity: None,
        vote_average: None,
        vote_count: None,
        poster,
    })))
}

/// The import job, as the window and the CLI run it ([`crate::jobs::JobHandle`]): opens
/// the catalog at `catalog_path` and runs [`run_import`], reporting on `progress` and
/// stopping at `control`'s cancel.
pub fn import_into(
    catalog_path: &Path,
    opts: &ImportOptions,
    control: &crate::jobs::Control,
    progress: &crate::jobs::Progress<ImportProgress>,
) -> Result<ImportSummary, ImportError> {
    let mut catalog = Catalog::open(catalog_path)?;
    run_import(&mut catalog, opts, &control.cancel, &mut |p| {
        progress.report(p);
    })
}

/// Runs an import into `catalog`. `on_progress` is called from the writer as batches
/// commit; `cancel` stops it between batches (what was committed stays).
pub fn run_import(
    catalog: &mut Catalog,
    opts: &ImportOptions,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(ImportProgress),
) -> Result<ImportSummary, ImportError> {
    if !opts.dir.is_dir() {
        return Err(ImportError::NoDir(opts.dir.display().to_string()));
    }
    let (rows, bad_rows) = labels_for(opts)?;
    let mut summary = ImportSummary {
        rows: rows.len() + bad_rows.len(),
        skipped: bad_rows,
        ..ImportSummary::default()
    };
    let existing = catalog.source_keys("import:")?;
    // One row per file: the first label of a file wins.
    let mut seen = HashMap::new();
    let mut todo = Vec::new();
    for row in rows {
        let key = import_key(&row.file);
        if let Some(first_line) = seen.get(&key) {
            summary.skipped.push(Skipped {
                file: row.file.clone(),
                reason: format!("line {}: duplicate of line {first_line}", row.line),
            });
            continue;
        }
        seen.insert(key.clone(), row.line);
        if existing.contains(&key) {
            summary.already_present += 1;
        } else {
            todo.push(row);
        }
    }
    if let Some(dir) = &opts.copy_into {
        std::fs::create_dir_all(dir).map_err(|source| ImportError::Copy {
            path: dir.display().to_string(),
            source,
        })?;
        crate::fsutil::remove_stale_parts(dir);
    }
    let canonical_dir = std::fs::canonicalize(&opts.dir).unwrap_or_else(|_| opts.dir.clone());
    let canonical_dir = canonical_dir.as_path();
    let total = todo.len() as u64;
    let mut progress = ImportProgress {
        done: 0,
        total,
        failed: 0,
    };
    on_progress(progress);
    let batch = opts.batch.max(1);
    let (tx, rx) = mpsc::sync_channel::<Result<Outcome, ImportError>>(batch * 4);
    let mut write_result: Result<(), ImportError> = Ok(());
    // Copies wait on the disk (each is flushed before it counts): more threads than cores
    // keep the cores decoding meanwhile. In place, the work is all CPU.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let threads = if opts.copy_into.is_some() {
        cores * 4
    } else {
        cores
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("import-{i}"))
        .build()
        .ok();
    std::thread::scope(|s| {
        s.spawn(move || {
            let work = move || {
                todo.par_iter().for_each_with(tx, |tx, row| {
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    // The receiver only hangs up on error or cancel; then work stops.
                    let _ = tx.send(process_row(row, opts, canonical_dir));
                });
            };
            // Without a pool of its own (threads refused), the global one does the work.
            match &pool {
                Some(pool) => pool.install(work),
                None => work(),
            }
        });
        let mut pending: Vec<NewMovie> = Vec::with_capacity(batch);
        let mut flush = |pending: &mut Vec<NewMovie>,
                         summary: &mut ImportSummary,
                         progress: &mut ImportProgress|
         -> Result<(), ImportError> {
            if pending.is_empty() {
                return Ok(());
            }
            catalog.insert_movies(pending)?;
            log::debug!("import: committed a batch of {} posters", pending.len());
            for m in pending.iter() {
                if m.poster.status == PosterStatus::Ok {
                    summary.added_ok += 1;
                } else {
                    summary.added_failed += 1;
                    summary.failed.push(Skipped {
                        file: m.source_key.trim_start_matches("import:").to_owned(),
                        reason: m.poster.reason.clone().unwrap_or_default(),
                    });
                    progress.failed += 1;
                }
            }
            progress.done += pending.len() as u64;
            pending.clear();
            on_progress(*progress);
            Ok(())
        };
        for outcome in &rx {
            if cancel.load(Ordering::Relaxed) {
                write_result = Err(ImportError::Cancelled);
                break;
            }
            match outcome {
                Ok(Outcome::Movie(m)) => pending.push(*m),
                Ok(Outcome::Skip(s)) => {
                    summary.skipped.push(s);
                    progress.done += 1;
                }
                Err(e) => {
                    write_result = Err(e);
                    break;
                }
            }
            if pending.len() >= batch
                && let Err(e) = flush(&mut pending, &mut summary, &mut progress)
            {
                write_result = Err(e);
                break;
            }
        }
        if write_result.is_ok() {
            write_result = flush(&mut pending, &mut summary, &mut progress);
        }
        // Dropping the receiver makes the producers' sends fail, so they finish quickly.
        drop(rx);
    });
    write_result?;
    summary.skipped.sort_by(|a, b| a.file.cmp(&b.file));
    summary.failed.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_and_titles_come_from_common_file_namings() {
        let cases = [
            ("Casablanca (1942).jpg", Some((1942, "Casablanca"))),
            ("star_wars_1977.png", Some((1977, "star wars"))),
            ("Jaws - 1975.webp", Some((1975, "Jaws"))),
            ("2012 The Avengers.jpg", Some((2012, "The Avengers"))),
            ("1977.jpg", Some((1977, ""))),
            ("poster12345.jpg", None),
            (
                "blade_runner_2049_2017.jpg",
                Some((2017, "blade runner 2049")),
            ),
            ("Title (3001).jpg", None),
            ("notes.jpg", None),
        ];
        for (name, want) in cases {
            let got = year_from_name(name);
            assert_eq!(got.as_ref().map(|(y, t)| (*y, t.as_str())), want, "{name}");
        }
    }

    #[test]
    fn labels_with_and_without_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(
            &p,
            "x.jpg,1950,Title A\ny.jpg,notayear\n,1990\nz.jpg,2001\n",
        )
        .unwrap();
        let (rows, skipped) = read_labels(&p).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].title, "Title A");
        assert_eq!(rows[1].file, "z.jpg");
        assert_eq!(rows[1].title, "");
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].reason.contains("bad year"), "{skipped:?}");
        std::fs::write(
            &p,
            "file,year,title,imdb_id,tmdb_id\nimages/a.jpg,1902,\"Trip, The\",417,775\n",
        )
        .unwrap();
        let (rows, skipped) = read_labels(&p).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(rows[0].file, "images/a.jpg");
        assert_eq!(rows[0].title, "Trip, The");
        assert_eq!(rows[0].tmdb_id, Some(775));
        std::fs::write(&p, "").unwrap();
        assert!(read_labels(&p).is_err());
    }
}
