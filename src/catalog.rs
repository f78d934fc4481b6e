//! The SQLite catalog: movies, posters, thumbnails (of posters larger than the thumbnail
//! box), colour statistics, harvest jobs and stored predictions. Every multi-row write
//! runs in one transaction.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::imaging::{ColourStats, HUE_BINS};

/// Catalog errors.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite failed.
    #[error("catalog {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The directory for the catalog could not be created.
    #[error("cannot create catalog directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database was written by a newer version of the app.
    #[error(
        "catalog {path} has schema version {found}, newer than this app supports ({supported}); upgrade Movie Eras"
    )]
    TooNew {
        /// The database file.
        path: String,
        /// Version found.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
}

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: base schema.
    r"
    CREATE TABLE movies (
        id INTEGER PRIMARY KEY,
        source_key TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        tmdb_id INTEGER,
        title TEXT NOT NULL DEFAULT '',
        year INTEGER,
        release_date TEXT,
        popularity REAL,
        vote_average REAL,
        vote_count INTEGER,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now'))
    );
    CREATE TABLE genres (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL
    );
    CREATE TABLE movie_genres (
        movie_id INTEGER NOT NULL REFERENCES movies(id) ON DELETE CASCADE,
        genre_id INTEGER NOT NULL REFERENCES genres(id),
        PRIMARY KEY (movie_id, genre_id)
    );
    CREATE TABLE posters (
        id INTEGER PRIMARY KEY,
        movie_id INTEGER NOT NULL UNIQUE REFERENCES movies(id) ON DELETE CASCADE,
        remote_path TEXT,
        file TEXT,
        sha256 TEXT,
        bytes INTEGER,
        width INTEGER,
        height INTEGER,
        status TEXT NOT NULL CHECK (status IN ('pending', 'ok', 'failed')),
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now'))
    );
    CREATE TABLE poster_stats (
        poster_id INTEGER PRIMARY KEY REFERENCES posters(id) ON DELETE CASCADE,
        brightness REAL NOT NULL,
        dark_share REAL NOT NULL,
        saturation REAL NOT NULL,
        colourfulness REAL NOT NULL,
        hue_hist TEXT NOT NULL
    );
    CREATE TABLE thumbnails (
        poster_id INTEGER PRIMARY KEY REFERENCES posters(id) ON DELETE CASCADE,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        jpeg BLOB NOT NULL
    );
    CREATE TABLE harvest_jobs (
        id INTEGER PRIMARY KEY,
        params TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
        finished_at TEXT,
        ok INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE training_runs (
        id INTEGER PRIMARY KEY,
        params TEXT NOT NULL,
        status TEXT NOT NULL,
        model_dir TEXT,
        metrics TEXT,
        started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
        finished_at TEXT
    );
    ",
    // 2: indexes for the gallery filters and for harvest resume; chromatic share.
    r"
    CREATE INDEX movies_year ON movies(year);
    CREATE UNIQUE INDEX movies_tmdb ON movies(tmdb_id) WHERE tmdb_id IS NOT NULL;
    CREATE INDEX posters_status ON posters(status);
    ALTER TABLE poster_stats ADD COLUMN chromatic_share REAL NOT NULL DEFAULT 0;
    CREATE TABLE harvest_pages (
        query_key TEXT NOT NULL,
        page INTEGER NOT NULL,
        total_pages INTEGER NOT NULL,
        fetched_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
        PRIMARY KEY (query_key, page)
    );
    ",
    // 3: whether a failed poster may succeed later (retried by the next harvest).
    r"
    ALTER TABLE posters ADD COLUMN transient INTEGER NOT NULL DEFAULT 0;
    ",
    // 4: predictions per (model, poster), so a model's pass over the catalog runs once.
    r"
    CREATE TABLE predictions (
        model TEXT NOT NULL,
        poster_sha256 TEXT NOT NULL,
        probs BLOB NOT NULL,
        embedding BLOB NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
        PRIMARY KEY (model, poster_sha256)
    );
    ",
    // 5: posters by content, so a poster dropped on Classify is found in the catalog.
    r"
    CREATE INDEX posters_sha256 ON posters(sha256);
    ",
    // 6: no duplicate pixels: thumbnails of posters that fit the thumbnail box go. The
    // work is `drop_redundant_thumbnails` (it keeps those whose poster file is gone).
    "-- drop_redundant_thumbnails",
    // 7: training runs live with their models (model.json, checkpoints' state.json); the
    // table was never written.
    r"
    DROP TABLE IF EXISTS training_runs;
    ",
];

/// The migration after which [`drop_redundant_thumbnails`] runs.
const THUMBNAILS_DROPPED_AT: i64 = 6;

/// Drops the stored thumbnails of `ok` posters that fit the thumbnail box and whose file
/// is there with its recorded size (the viewer shows the file itself); a thumbnail whose
/// poster file is missing, or of another size, stays: it may be the only copy left.
/// Relative poster files are resolved against `root` (the catalog's folder). Returns how
/// many were dropped.
fn drop_redundant_thumbnails(
    tx: &rusqlite::Transaction<'_>,
    root: &Path,
) -> rusqlite::Result<usize> {
    let rows: Vec<(i64, Option<String>, Option<i64>)> = {
        let mut stmt = tx.prepare(
            "SELECT p.id, p.file, p.bytes FROM thumbnails t JOIN posters p ON p.id = t.poster_id
             WHERE p.status = 'ok' AND p.width <= ?1 AND p.height <= ?2",
        )?;
        stmt.query_map(
            params![crate::imaging::THUMB_WIDTH, crate::imaging::THUMB_HEIGHT],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<rusqlite::Result<_>>()?
    };
    let mut dropped = 0;
    let mut del = tx.prepare("DELETE FROM thumbnails WHERE poster_id = ?1")?;
    for (id, file, bytes) in rows {
        let Some(file) = file else { continue };
        let path = root.join(&file); // an absolute `file` replaces `root`
        let there = std::fs::metadata(&path)
            .is_ok_and(|m| m.is_file() && bytes.is_none_or(|b| m.len() == b as u64));
        if there {
            dropped += del.execute([id])?;
        }
    }
    Ok(dropped)
}

/// A model's output for one poster: year-bin probabilities and its embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPrediction {
    /// Probability per year bin.
    pub probs: Vec<f32>,
    /// The poster's embedding (what the model's head reads), stored in 8 bits per value.
    pub embedding: Vec<f32>,
}

fn f32_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// An embedding in 8 bits per value: a float32 scale, then each value as a signed byte
/// of `value / scale` (enough for similarities and maps, a quarter of the size).
fn i8_blob(v: &[f32]) -> Vec<u8> {
    let scale = v
        .iter()
        .fold(0f32, |m, x| m.max(x.abs()))
        .max(f32::MIN_POSITIVE)
        / 127.0;
    let mut out = scale.to_le_bytes().to_vec();
    out.extend(
        v.iter()
            .map(|x| ((x / scale).round().clamp(-127.0, 127.0) as i8) as u8),
    );
    out
}

fn i8_from_blob(b: &[u8]) -> Vec<f32> {
    let Some((head, rest)) = b.split_first_chunk::<4>() else {
        return Vec::new();
    };
    let scale = f32::from_le_bytes(*head);
    rest.iter().map(|&x| f32::from(x as i8) * scale).collect()
}

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// State of a poster in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PosterStatus {
    /// Known but not yet downloaded.
    Pending,
    /// Downloaded, decoded and measured.
    Ok,
    /// Given up on, with a reason.
    Failed,
}

impl PosterStatus {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "ok" => Self::Ok,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// A poster's outcome, as stored.
#[derive(Debug, Clone)]
pub struct PosterRecord {
    /// TMDB poster path (e.g. `/abc.jpg`), when harvested.
    pub remote_path: Option<String>,
    /// Local file (absolute, or relative to the data dir).
    pub file: Option<String>,
    /// SHA-256 of the file.
    pub sha256: Option<String>,
    /// File size.
    pub bytes: Option<u64>,
    /// Pixel width.
    pub width: Option<u32>,
    /// Pixel height.
    pub height: Option<u32>,
    /// Outcome.
    pub status: PosterStatus,
    /// Why it failed.
    pub reason: Option<String>,
    /// A failure that may go away (server errors, timeouts, damaged downloads): the next
    /// harvest retries it by itself. Permanent failures (404, a file that decodes to
    /// garbage every time) wait for `--retry-failed`.
    pub transient: bool,
    /// Colour statistics of an `ok` poster.
    pub stats: Option<ColourStats>,
    /// JPEG thumbnail with its size: only for a poster larger than the thumbnail box
    /// (a smaller one is shown from its file).
    pub thumbnail: Option<crate::imaging::Thumbnail>,
}

impl PosterRecord {
    /// A failed poster with a reason.
    pub fn failed(file: Option<String>, reason: String) -> Self {
        Self {
            remote_path: None,
            file,
            sha256: None,
            bytes: None,
            width: None,
            height: None,
            status: PosterStatus::Failed,
            reason: Some(reason),
            transient: false,
            stats: None,
            thumbnail: None,
        }
    }

    /// A good poster stored as `file`: its size and hash from the decode, its thumbnail
    /// (only for a poster larger than the thumbnail box) and statistics from the summary.
    pub fn ok(
        file: String,
        decoded: &crate::imaging::DecodedPoster,
        summary: crate::imaging::PosterSummary,
    ) -> Self {
        Self {
            remote_path: None,
            file: Some(file),
            sha256: Some(decoded.sha256.clone()),
            bytes: Some(decoded.bytes),
            width: Some(decoded.rgb.width()),
            height: Some(decoded.rgb.height()),
            status: PosterStatus::Ok,
            reason: None,
            transient: false,
            stats: Some(summary.stats),
            thumbnail: summary.thumbnail,
        }
    }

    /// A failure that may go away on a later try.
    pub fn failed_transient(reason: String) -> Self {
        Self {
            transient: true,
            ..Self::failed(None, reason)
        }
    }
}

/// A movie to add, with its poster.
#[derive(Debug, Clone)]
pub struct NewMovie {
    /// Unique identity used to make imports and harvests idempotent
    /// (`import:<file>` or `tmdb:<id>`).
    pub source_key: String,
    /// Where it came from (`import`, `tmdb-api`, `tmdb-site`).
    pub source: String,
    /// TMDB id, if known.
    pub tmdb_id: Option<i64>,
    /// Title.
    pub title: String,
    /// Release year.
    pub year: Option<i32>,
    /// Release date (ISO).
    pub release_date: Option<String>,
    /// TMDB genres (id, name).
    pub genres: Vec<(i64, String)>,
    /// TMDB popularity.
    pub popularity: Option<f64>,
    /// TMDB vote average.
    pub vote_average: Option<f64>,
    /// TMDB vote count.
    pub vote_count: Option<i64>,
    /// The poster.
    pub poster: PosterRecord,
}

/// One row of the export / the in-memory view of the catalog.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MovieRow {
    /// Catalog id.
    pub id: i64,
    /// TMDB id.
    pub tmdb_id: Option<i64>,
    /// Title.
    pub title: String,
    /// Release year.
    pub year: Option<i32>,
    /// Genre names, comma separated.
    pub genres: String,
    /// TMDB popularity.
    pub popularity: Option<f64>,
    /// Poster id.
    pub poster_id: Option<i64>,
    /// Poster file.
    pub poster_file: Option<String>,
    /// Poster SHA-256.
    pub poster_sha256: Option<String>,
    /// Poster status.
    pub status: Option<PosterStatus>,
    /// Failure reason.
    pub reason: Option<String>,
    /// Colour statistics.
    pub stats: Option<ColourStats>,
}

/// Counts by poster status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CatalogCounts {
    /// Movies.
    pub movies: u64,
    /// Posters downloaded/imported fine.
    pub ok: u64,
    /// Posters that failed.
    pub failed: u64,
    /// Posters not fetched yet.
    pub pending: u64,
}

/// The catalog database.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("path", &self.path).finish()
    }
}

impl Catalog {
    /// Opens (creating and migrating as needed) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CatalogError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| CatalogError::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        Self::init(conn, path.to_path_buf(), SCHEMA_VERSION)
    }

    /// An in-memory catalog (tests, previews).
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|source| CatalogError::Sqlite {
            path: ":memory:".into(),
            source,
        })?;
        Self::init(conn, PathBuf::from(":memory:"), SCHEMA_VERSION)
    }

    /// Opens `path` migrating only up to `version` (for migration tests).
    #[doc(hidden)]
    pub fn open_at_version(path: &Path, version: i64) -> Result<Self> {
        let conn = Connection::open(path).map_err(|source| CatalogError::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        Self::init(conn, path.to_path_buf(), version)
    }

    fn init(conn: Connection, path: PathBuf, target: i64) -> Result<Self> {
        let mut cat = Self { conn, path };
        cat.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| cat.err(e))?;
        if cat.path.as_os_str() != ":memory:" {
            // Switching the journal mode can answer SQLITE_BUSY at once (without the busy
            // handler) while another connection sets up the same new file: retry a while.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match cat.conn.pragma_update(None, "journal_mode", "WAL") {
                    Ok(()) => break,
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::DatabaseBusy
                            && std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(e) => return Err(cat.err(e)),
                }
            }
        }
        cat.conn
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(|e| cat.err(e))?;
        cat.migrate(target)?;
        Ok(cat)
    }

    fn err(&self, source: rusqlite::Error) -> CatalogError {
        CatalogError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// A write transaction that takes the write lock at `BEGIN` (`BEGIN IMMEDIATE`), so
    /// the busy timeout applies while another process writes; a deferred transaction in
    /// WAL mode fails at once ("database is locked") when it upgrades to a write.
    fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>> {
        let path = self.path.display().to_string();
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| CatalogError::Sqlite { path, source })
    }

    fn migrate(&mut self, target: i64) -> Result<()> {
        let path = self.path.display().to_string();
        let wrap = |source| CatalogError::Sqlite {
            path: path.clone(),
            source,
        };
        // An immediate transaction takes the write lock before reading the version, so
        // two processes or threads opening a new catalog at once cannot both migrate it.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(wrap)?;
        let current: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(wrap)?;
        if current > SCHEMA_VERSION {
            return Err(CatalogError::TooNew {
                path: path.clone(),
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        let mut applied = current;
        let mut dropped = 0;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let version = i as i64 + 1;
            if version > target {
                break;
            }
            tx.execute_batch(sql).map_err(wrap)?;
            if version == THUMBNAILS_DROPPED_AT && current > 0 {
                let root = self
                    .path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                dropped = drop_redundant_thumbnails(&tx, root).map_err(wrap)?;
            }
            tx.pragma_update(None, "user_version", version)
                .map_err(wrap)?;
            applied = version;
        }
        tx.commit().map_err(wrap)?;
        if applied != current {
            log::info!("catalog migrated from schema version {current} to {applied}");
        }
        if dropped > 0 {
            log::info!(
                "catalog: dropped {dropped} thumbnails of posters shown from their own files"
            );
            // Give the freed pages back to the file system (best effort: another
            // connection reading at this moment makes it wait or fail, which is harmless).
            if let Err(e) = self.conn.execute_batch("VACUUM") {
                log::warn!("catalog: could not compact {path} after the migration: {e}");
            }
        }
        Ok(())
    }

    /// `PRAGMA integrity_check`: `"ok"` when the database is sound.
    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Source keys already present that start with `prefix`.
    pub fn source_keys(&self, prefix: &str) -> Result<HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT source_key FROM movies WHERE substr(source_key, 1, ?1) = ?2")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![prefix.len() as i64, prefix], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Adds movies with their posters in one transaction; rows whose `source_key`
    /// exists already are left alone. Returns how many were added.
    pub fn insert_movies(&mut self, movies: &[NewMovie]) -> Result<usize> {
        let path = self.path.display().to_string();
        let wrap = |source| CatalogError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.write_tx()?;
        let mut added = 0;
        for m in movies {
            if insert_movie(&tx, m).map_err(wrap)? {
                added += 1;
            }
        }
        tx.commit().map_err(wrap)?;
        Ok(added)
    }

    /// Replaces the poster outcome of an existing movie (by source key) in one transaction.
    pub fn update_poster(&mut self, source_key: &str, poster: &PosterRecord) -> Result<bool> {
        Ok(self.update_posters(&[(source_key, poster)])?.first() == Some(&true))
    }

    /// Replaces the poster outcomes of existing movies (by source key), all in one
    /// transaction: all are stored or none. Returns, per item, whether its movie exists.
    pub fn update_posters(&mut self, posters: &[(&str, &PosterRecord)]) -> Result<Vec<bool>> {
        let path = self.path.display().to_string();
        let wrap = |source| CatalogError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.write_tx()?;
        let mut found = Vec::with_capacity(posters.len());
        for (source_key, poster) in posters {
            let movie_id: Option<i64> = query_one(
                &tx,
                "SELECT id FROM movies WHERE source_key = ?1",
                [source_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(wrap)?;
            if let Some(movie_id) = movie_id {
                write_poster(&tx, movie_id, poster, true).map_err(wrap)?;
            }
            found.push(movie_id.is_some());
        }
        tx.commit().map_err(wrap)?;
        Ok(found)
    }

    /// Counts of movies and posters by status.
    pub fn counts(&self) -> Result<CatalogCounts> {
        let movies: i64 = self
            .conn
            .query_row("SELECT count(*) FROM movies", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let mut c = CatalogCounts {
            movies: movies as u64,
            ..CatalogCounts::default()
        };
        let mut stmt = self
            .conn
            .prepare("SELECT status, count(*) FROM posters GROUP BY status")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (status, n) = row.map_err(|e| self.err(e))?;
            match PosterStatus::parse(&status) {
                PosterStatus::Ok => c.ok = n as u64,
                PosterStatus::Failed => c.failed = n as u64,
                PosterStatus::Pending => c.pending = n as u64,
            }
        }
        Ok(c)
    }

    /// Every movie with its poster and statistics, ordered by year then title.
    pub fn movies(&self) -> Result<Vec<MovieRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.id, m.tmdb_id, m.title, m.year, m.popularity,
                        p.id, p.file, p.sha256, p.status, p.reason,
                        s.brightness, s.dark_share, s.saturation, s.colourfulness, s.hue_hist,
                        s.chromatic_share,
                        (SELECT group_concat(g.name, ', ') FROM movie_genres mg
                           JOIN genres g ON g.id = mg.genre_id WHERE mg.movie_id = m.id)
                 FROM movies m
                 LEFT JOIN posters p ON p.movie_id = m.id
                 LEFT JOIN poster_stats s ON s.poster_id = p.id
                 ORDER BY m.year, m.title, m.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let stats = match r.get::<_, Option<f64>>(10)? {
                    Some(brightness) => {
                        let hue_text: String = r.get(14)?;
                        Some(ColourStats {
                            brightness: brightness as f32,
                            dark_share: r.get::<_, f64>(11)? as f32,
                            saturation: r.get::<_, f64>(12)? as f32,
                            colourfulness: r.get::<_, f64>(13)? as f32,
                            hue_hist: parse_hue(&hue_text),
                            chromatic_share: r.get::<_, f64>(15)? as f32,
                        })
                    }
                    None => None,
                };
                Ok(MovieRow {
                    id: r.get(0)?,
                    tmdb_id: r.get(1)?,
                    title: r.get(2)?,
                    year: r.get(3)?,
                    popularity: r.get(4)?,
                    poster_id: r.get(5)?,
                    poster_file: r.get(6)?,
                    poster_sha256: r.get(7)?,
                    status: r
                        .get::<_, Option<String>>(8)?
                        .map(|s| PosterStatus::parse(&s)),
                    reason: r.get(9)?,
                    stats,
                    genres: r.get::<_, Option<String>>(16)?.unwrap_or_default(),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// The title and release year of the movie whose poster has this SHA-256 (the
    /// lowest movie id when several share the art), if the catalog holds it.
    pub fn movie_by_poster_sha256(&self, sha256: &str) -> Result<Option<(String, Option<i32>)>> {
        self.conn
            .query_row(
                "SELECT m.title, m.year FROM posters p JOIN movies m ON m.id = p.movie_id
                 WHERE p.sha256 = ?1 ORDER BY m.id LIMIT 1",
                [sha256],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The JPEG thumbnail of a poster.
    pub fn thumbnail(&self, poster_id: i64) -> Result<Option<Vec<u8>>> {
        self.conn
            .query_row(
                "SELECT jpeg FROM thumbnails WHERE poster_id = ?1",
                [poster_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Stored predictions of `model` (a model fingerprint) for the posters in `sha256s`.
    pub fn predictions(
        &self,
        model: &str,
        sha256s: &[&str],
    ) -> Result<HashMap<String, StoredPrediction>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT probs, embedding FROM predictions WHERE model = ?1 AND poster_sha256 = ?2",
            )
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        for sha in sha256s {
            let row = stmt
                .query_row(params![model, sha], |r| {
                    Ok(StoredPrediction {
                        probs: f32_from_blob(&r.get::<_, Vec<u8>>(0)?),
                        embedding: i8_from_blob(&r.get::<_, Vec<u8>>(1)?),
                    })
                })
                .optional()
                .map_err(|e| self.err(e))?;
            if let Some(p) = row {
                out.insert((*sha).to_owned(), p);
            }
        }
        Ok(out)
    }

    /// Every stored prediction of `model`, by poster SHA-256 (for export).
    pub fn all_predictions(&self, model: &str) -> Result<HashMap<String, Vec<f32>>> {
        let mut stmt = self
            .conn
            .prepare("SELECT poster_sha256, probs FROM predictions WHERE model = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([model], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    f32_from_blob(&r.get::<_, Vec<u8>>(1)?),
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Stores predictions of `model`, in one transaction.
    pub fn store_predictions(
        &mut self,
        model: &str,
        items: &[(String, StoredPrediction)],
    ) -> Result<()> {
        let path = self.path.display().to_string();
        let wrap = |source| CatalogError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.write_tx()?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO predictions (model, poster_sha256, probs, embedding)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(wrap)?;
            for (sha, p) in items {
                stmt.execute(params![
                    model,
                    sha,
                    f32_blob(&p.probs),
                    i8_blob(&p.embedding)
                ])
                .map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    /// Records the start of a harvest job; returns its id.
    pub fn start_harvest_job(&self, params_json: &str) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO harvest_jobs (params, status) VALUES (?1, 'running')",
                [params_json],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records the end of a harvest job.
    pub fn finish_harvest_job(&self, id: i64, status: &str, ok: u64, failed: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE harvest_jobs SET status = ?2, ok = ?3, failed = ?4,
                 finished_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE id = ?1",
                params![id, status, ok as i64, failed as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Harvest jobs, newest first: (id, params, status, ok, failed, started, finished).
    pub fn harvest_jobs(&self) -> Result<Vec<HarvestJobRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, params, status, ok, failed, started_at, finished_at
                 FROM harvest_jobs ORDER BY id DESC",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(HarvestJobRow {
                    id: r.get(0)?,
                    params: r.get(1)?,
                    status: r.get(2)?,
                    ok: r.get::<_, i64>(3)? as u64,
                    failed: r.get::<_, i64>(4)? as u64,
                    started_at: r.get(5)?,
                    finished_at: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Whether a listing page of `query_key` was fully stored already; its total pages.
    pub fn harvested_page(&self, query_key: &str, page: u32) -> Result<Option<u32>> {
        self.conn
            .query_row(
                "SELECT total_pages FROM harvest_pages WHERE query_key = ?1 AND page = ?2",
                params![query_key, page],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every recorded listing page: `(query key, page) -> total pages`.
    pub fn harvest_pages(&self) -> Result<HashMap<(String, u32), u32>> {
        let mut stmt = self
            .conn
            .prepare("SELECT query_key, page, total_pages FROM harvest_pages")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Stores the movies of one listing page and marks the page done, in one transaction.
    pub fn store_listing_page(
        &mut self,
        query_key: &str,
        page: u32,
        total_pages: u32,
        movies: &[NewMovie],
    ) -> Result<usize> {
        let path = self.path.display().to_string();
        let wrap = |source| CatalogError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.write_tx()?;
        let mut added = 0;
        for m in movies {
            if insert_movie(&tx, m).map_err(wrap)? {
                added += 1;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO harvest_pages (query_key, page, total_pages) VALUES (?1, ?2, ?3)",
            params![query_key, page, total_pages],
        )
        .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        Ok(added)
    }

    /// Posters still to fetch (status `pending`, `failed` with a transient cause, or any
    /// `failed` when `retry_failed`) for
    /// movies whose year lies in `from..=to`: (source key, remote path, year).
    pub fn posters_to_fetch(
        &self,
        from: i32,
        to: i32,
        retry_failed: bool,
    ) -> Result<Vec<PendingPoster>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.source_key, m.tmdb_id, p.remote_path, m.year FROM movies m
                 JOIN posters p ON p.movie_id = m.id
                 WHERE (p.status = 'pending' OR (p.status = 'failed' AND (?3 OR p.transient)))
                   AND p.remote_path IS NOT NULL AND m.year BETWEEN ?1 AND ?2
                 ORDER BY m.year, m.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![from, to, retry_failed], |r| {
                Ok(PendingPoster {
                    source_key: r.get(0)?,
                    tmdb_id: r.get(1)?,
                    remote_path: r.get(2)?,
                    year: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Number of movies (any poster status) per year in `from..=to` from `source` prefix.
    pub fn movies_per_year(&self, from: i32, to: i32) -> Result<Vec<(i32, u64)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT year, count(*) FROM movies WHERE year BETWEEN ?1 AND ?2
                 GROUP BY year ORDER BY year",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![from, to], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }
}

/// A harvest job as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HarvestJobRow {
    /// Job id.
    pub id: i64,
    /// Parameters (JSON, no secrets).
    pub params: String,
    /// `running`, `done`, `cancelled` or `failed`.
    pub status: String,
    /// Posters stored.
    pub ok: u64,
    /// Posters failed.
    pub failed: u64,
    /// Start time (UTC).
    pub started_at: String,
    /// End time (UTC).
    pub finished_at: Option<String>,
}

/// A poster waiting to be downloaded.
#[derive(Debug, Clone)]
pub struct PendingPoster {
    /// Movie key.
    pub source_key: String,
    /// TMDB id.
    pub tmdb_id: Option<i64>,
    /// TMDB poster path.
    pub remote_path: String,
    /// Release year.
    pub year: Option<i32>,
}

fn parse_hue(text: &str) -> [f32; HUE_BINS] {
    let v: Vec<f32> = serde_json::from_str(text).unwrap_or_default();
    let mut out = [0.0; HUE_BINS];
    for (o, x) in out.iter_mut().zip(v) {
        *o = x;
    }
    out
}

/// Runs a statement through the connection's statement cache: the catalog writes the
/// same few statements for every poster, and preparing each anew costs more than running it.
fn exec(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// [`exec`] for a query of one row.
fn query_one<T>(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    tx.prepare_cached(sql)?.query_row(params, f)
}

fn insert_movie(tx: &rusqlite::Transaction<'_>, m: &NewMovie) -> rusqlite::Result<bool> {
    // A TMDB id already held by another row (two files labelled with the same id, say)
    // must not drop this movie: it is stored under its own source key without the id.
    let tmdb_id = match m.tmdb_id {
        Some(id) => {
            let taken: Option<String> = query_one(
                tx,
                "SELECT source_key FROM movies WHERE tmdb_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
            match taken {
                Some(key) if key != m.source_key => {
                    log::warn!(
                        "TMDB id {id} of {} already belongs to {key}; stored without it",
                        m.source_key
                    );
                    None
                }
                _ => Some(id),
            }
        }
        None => None,
    };
    let changed = exec(
        tx,
        "INSERT INTO movies (source_key, source, tmdb_id, title, year, release_date,
                             popularity, vote_average, vote_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT(source_key) DO NOTHING",
        params![
            m.source_key,
            m.source,
            tmdb_id,
            m.title,
            m.year,
            m.release_date,
            m.popularity,
            m.vote_average,
            m.vote_count
        ],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    let movie_id = tx.last_insert_rowid();
    for (gid, name) in &m.genres {
        exec(
            tx,
            "INSERT INTO genres (id, name) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name",
            params![gid, name],
        )?;
        exec(
            tx,
            "INSERT OR IGNORE INTO movie_genres (movie_id, genre_id) VALUES (?1, ?2)",
            params![movie_id, gid],
        )?;
    }
    write_poster(tx, movie_id, &m.poster, false)?;
    Ok(true)
}

fn write_poster(
    tx: &rusqlite::Transaction<'_>,
    movie_id: i64,
    p: &PosterRecord,
    replace: bool,
) -> rusqlite::Result<()> {
    if replace {
        exec(
            tx,
            "UPDATE posters SET file = ?2, sha256 = ?3, bytes = ?4, width = ?5, height = ?6,
                 status = ?7, reason = ?8, attempts = attempts + 1,
                 remote_path = coalesce(?9, remote_path), transient = ?10,
                 updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now')
             WHERE movie_id = ?1",
            params![
                movie_id,
                p.file,
                p.sha256,
                p.bytes.map(|b| b as i64),
                p.width,
                p.height,
                p.status.as_str(),
                p.reason,
                p.remote_path,
                p.transient
            ],
        )?;
    } else {
        exec(
            tx,
            "INSERT INTO posters (movie_id, remote_path, file, sha256, bytes, width, height, status, reason, transient)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                movie_id,
                p.remote_path,
                p.file,
                p.sha256,
                p.bytes.map(|b| b as i64),
                p.width,
                p.height,
                p.status.as_str(),
                p.reason,
                p.transient
            ],
        )?;
    }
    let poster_id: i64 = query_one(
        tx,
        "SELECT id FROM posters WHERE movie_id = ?1",
        [movie_id],
        |r| r.get(0),
    )?;
    exec(
        tx,
        "DELETE FROM poster_stats WHERE poster_id = ?1",
        [poster_id],
    )?;
    exec(
        tx,
        "DELETE FROM thumbnails WHERE poster_id = ?1",
        [poster_id],
    )?;
    if let Some(s) = &p.stats {
        let hue = serde_json::to_string(&s.hue_hist.to_vec()).unwrap_or_else(|_| "[]".into());
        exec(
            tx,
            "INSERT INTO poster_stats (poster_id, brightness, dark_share, saturation,
                                       colourfulness, hue_hist, chromatic_share)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                poster_id,
                f64::from(s.brightness),
                f64::from(s.dark_share),
                f64::from(s.saturation),
                f64::from(s.colourfulness),
                hue,
                f64::from(s.chromatic_share)
            ],
        )?;
    }
    if let Some((jpeg, w, h)) = &p.thumbnail {
        exec(
            tx,
            "INSERT INTO thumbnails (poster_id, width, height, jpeg) VALUES (?1, ?2, ?3, ?4)",
            params![poster_id, w, h, jpeg],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movie(key: &str, year: i32, status: PosterStatus) -> NewMovie {
        NewMovie {
            source_key: key.into(),
            source: "test".into(),
            tmdb_id: None,
            title: format!("Movie {key}"),
            year: Some(year),
            release_date: None,
            genres: vec![(18, "Drama".into()), (27, "Horror".into())],
            popularity: Some(1.5),
            vote_average: None,
            vote_count: None,
            poster: PosterRecord {
                remote_path: Some("/x.jpg".into()),
                file: Some(format!("{key}.jpg")),
                sha256: Some("ab".repeat(32)),
                bytes: Some(1234),
                width: Some(154),
                height: Some(231),
                status,
                reason: None,
                transient: false,
                stats: Some(ColourStats {
                    brightness: 0.5,
                    dark_share: 0.25,
                    saturation: 0.125,
                    colourfulness: 42.0,
                    hue_hist: [1.0 / 12.0; HUE_BINS],
                    chromatic_share: 0.75,
                }),
                thumbnail: Some((vec![1, 2, 3], 96, 144)),
            },
        }
    }

    #[test]
    fn round_trip_and_idempotent_insert() {
        let mut c = Catalog::open_in_memory().unwrap();
        assert_eq!(c.schema_version().unwrap(), SCHEMA_VERSION);
        let batch = vec![
            movie("a", 1950, PosterStatus::Ok),
            movie("b", 1990, PosterStatus::Ok),
        ];
        assert_eq!(c.insert_movies(&batch).unwrap(), 2);
        assert_eq!(c.insert_movies(&batch).unwrap(), 0);
        let rows = c.movies().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].title, "Movie a");
        assert_eq!(rows[0].year, Some(1950));
        assert_eq!(rows[0].genres, "Drama, Horror");
        assert_eq!(rows[0].status, Some(PosterStatus::Ok));
        let stats = rows[0].stats.clone().unwrap();
        assert_eq!(stats.colourfulness, 42.0);
        assert_eq!(stats.chromatic_share, 0.75);
        assert!((stats.hue_hist[3] - 1.0 / 12.0).abs() < 1e-6);
        let thumb = c.thumbnail(rows[0].poster_id.unwrap()).unwrap();
        assert_eq!(thumb, Some(vec![1, 2, 3]));
        assert_eq!(
            c.counts().unwrap(),
            CatalogCounts {
                movies: 2,
                ok: 2,
                failed: 0,
                pending: 0
            }
        );
        let keys = c.source_keys("a").unwrap();
        assert_eq!(keys.len(), 1);
        // Both test posters share one SHA-256: the first movie answers.
        assert_eq!(
            c.movie_by_poster_sha256(&"ab".repeat(32)).unwrap(),
            Some(("Movie a".to_owned(), Some(1950)))
        );
        assert_eq!(c.movie_by_poster_sha256(&"cd".repeat(32)).unwrap(), None);
    }

    #[test]
    fn concurrent_first_opens_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| Catalog::open(&path))).collect();
            for h in handles {
                let c = h.join().unwrap().unwrap();
                assert_eq!(c.schema_version().unwrap(), SCHEMA_VERSION);
            }
        });
    }

    #[test]
    fn shared_tmdb_id_does_not_drop_a_movie() {
        let mut c = Catalog::open_in_memory().unwrap();
        let mut a = movie("import:a.jpg", 1932, PosterStatus::Ok);
        a.tmdb_id = Some(22649);
        let mut b = movie("import:b.jpg", 1957, PosterStatus::Ok);
        b.tmdb_id = Some(22649);
        assert_eq!(c.insert_movies(&[a.clone(), b.clone()]).unwrap(), 2);
        let rows = c.movies().unwrap();
        assert_eq!(rows.len(), 2);
        let ids: Vec<Option<i64>> = rows.iter().map(|r| r.tmdb_id).collect();
        assert!(ids.contains(&Some(22649)) && ids.contains(&None));
        // Still idempotent.
        assert_eq!(c.insert_movies(&[a, b]).unwrap(), 0);
        assert_eq!(c.movies().unwrap().len(), 2);
    }

    #[test]
    fn update_poster_replaces_outcome() {
        let mut c = Catalog::open_in_memory().unwrap();
        c.insert_movies(&[movie("k", 2001, PosterStatus::Pending)])
            .unwrap();
        assert_eq!(c.posters_to_fetch(2000, 2002, false).unwrap().len(), 1);
        let failed = PosterRecord::failed(None, "HTTP 404".into());
        assert!(c.update_poster("k", &failed).unwrap());
        assert!(!c.update_poster("missing", &failed).unwrap());
        let rows = c.movies().unwrap();
        assert_eq!(rows[0].status, Some(PosterStatus::Failed));
        assert_eq!(rows[0].reason.as_deref(), Some("HTTP 404"));
        assert!(rows[0].stats.is_none());
        assert!(c.posters_to_fetch(2000, 2002, false).unwrap().is_empty());
        assert_eq!(c.posters_to_fetch(2000, 2002, true).unwrap().len(), 1);
    }

    #[test]
    fn predictions_round_trip_per_model() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let p = StoredPrediction {
            probs: vec![0.25, 0.75],
            embedding: vec![0.5, -1.0, 0.0, 0.125],
        };
        c.store_predictions("m1", &[("aa".into(), p.clone())])
            .unwrap();
        let got = c.predictions("m1", &["aa", "bb"]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got["aa"].probs, p.probs);
        for (a, b) in got["aa"].embedding.iter().zip(&p.embedding) {
            assert!((a - b).abs() < 0.01, "{a} vs {b}");
        }
        assert!(c.predictions("m2", &["aa"]).unwrap().is_empty());
        assert_eq!(c.all_predictions("m1").unwrap()["aa"], p.probs);
    }

    #[test]
    fn migrates_old_database_keeping_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        {
            let c = Catalog::open_at_version(&path, 1).unwrap();
            assert_eq!(c.schema_version().unwrap(), 1);
            c.conn
                .execute(
                    "INSERT INTO movies (source_key, source, title, year) VALUES ('old', 'import', 'Old', 1960)",
                    [],
                )
                .unwrap();
            c.conn
                .execute(
                    "INSERT INTO posters (movie_id, status) VALUES (1, 'ok')",
                    [],
                )
                .unwrap();
            c.conn
                .execute(
                    "INSERT INTO poster_stats (poster_id, brightness, dark_share, saturation, colourfulness, hue_hist)
                     VALUES (1, 0.1, 0.2, 0.3, 4.0, '[]')",
                    [],
                )
                .unwrap();
        }
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.schema_version().unwrap(), SCHEMA_VERSION);
        let rows = c.movies().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].title, "Old");
        assert_eq!(rows[0].stats.as_ref().unwrap().chromatic_share, 0.0);
        assert_eq!(c.integrity_check().unwrap(), "ok");
        // The never-written training_runs table is gone (schema 7).
        let tables: i64 = c
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'training_runs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
        drop(c);
        // A newer schema than this build knows is refused with a clear message.
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 5)
                .unwrap();
        }
        let err = Catalog::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
    }

    #[test]
    fn migration_drops_only_thumbnails_whose_poster_file_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("posters")).unwrap();
        // (key, file, file bytes on disk, width, height)
        let abs = outside.path().join("abs.jpg");
        let cases: Vec<(&str, String, Option<usize>, u32, u32)> = vec![
            (
                "present",
                "posters/present.jpg".into(),
                Some(1234),
                154,
                231,
            ),
            ("absolute", abs.display().to_string(), Some(1234), 154, 231),
            ("missing", "posters/missing.jpg".into(), None, 154, 231),
            ("resized", "posters/resized.jpg".into(), Some(99), 154, 231),
            ("large", "posters/large.jpg".into(), Some(1234), 1000, 1500),
        ];
        {
            let mut c = Catalog::open_at_version(&path, 5).unwrap();
            for (key, file, on_disk, w, h) in &cases {
                let mut m = movie(key, 1970, PosterStatus::Ok);
                m.poster.file = Some(file.clone());
                (m.poster.width, m.poster.height) = (Some(*w), Some(*h));
                // A thumbnail big enough to show in the file size.
                m.poster.thumbnail = Some((vec![7; 200_000], 154, 231));
                c.insert_movies(&[m]).unwrap();
                if let Some(n) = on_disk {
                    let p = Path::new(file);
                    let p = if p.is_absolute() {
                        p.to_path_buf()
                    } else {
                        dir.path().join(p)
                    };
                    std::fs::write(p, vec![0u8; *n]).unwrap();
                }
            }
        }
        let before = std::fs::metadata(&path).unwrap().len();
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.schema_version().unwrap(), SCHEMA_VERSION);
        let kept: HashMap<String, bool> = c
            .movies()
            .unwrap()
            .into_iter()
            .map(|r| {
                let has = c.thumbnail(r.poster_id.unwrap()).unwrap().is_some();
                (r.title.trim_start_matches("Movie ").to_owned(), has)
            })
            .collect();
        // Dropped where the file shows the same poster; kept where it may be the only copy
        // (file gone or changed) or where the poster is larger than the thumbnail box.
        assert!(!kept["present"]);
        assert!(!kept["absolute"]);
        assert!(kept["missing"]);
        assert!(kept["resized"]);
        assert!(kept["large"]);
        assert_eq!(c.movies().unwrap().len(), cases.len());
        assert_eq!(c.integrity_check().unwrap(), "ok");
        drop(c);
        // The freed pages went back to the file system.
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after + 300_000 < before, "{before} -> {after} bytes");
        // Opening again changes nothing.
        let c = Catalog::open(&path).unwrap();
        let still = c
            .movies()
            .unwrap()
            .into_iter()
            .filter(|r| c.thumbnail(r.poster_id.unwrap()).unwrap().is_some())
            .count();
        assert_eq!(still, 3);
    }

    #[test]
    fn poster_outcomes_commit_together() {
        let mut c = Catalog::open_in_memory().unwrap();
        c.insert_movies(&[
            movie("a", 1950, PosterStatus::Pending),
            movie("b", 1960, PosterStatus::Pending),
        ])
        .unwrap();
        let ok = movie("x", 1950, PosterStatus::Ok).poster;
        let failed = PosterRecord::failed(None, "404".into());
        let found = c
            .update_posters(&[("a", &ok), ("nope", &ok), ("b", &failed)])
            .unwrap();
        assert_eq!(found, vec![true, false, true]);
        let counts = c.counts().unwrap();
        assert_eq!((counts.ok, counts.failed, counts.movies), (1, 1, 2));
    }

    #[test]
    fn listing_pages_are_recorded_with_their_movies() {
        let mut c = Catalog::open_in_memory().unwrap();
        assert_eq!(c.harvested_page("q", 1).unwrap(), None);
        let added = c
            .store_listing_page("q", 1, 7, &[movie("tmdb:1", 1999, PosterStatus::Pending)])
            .unwrap();
        assert_eq!(added, 1);
        assert_eq!(c.harvested_page("q", 1).unwrap(), Some(7));
        assert_eq!(c.movies_per_year(1990, 2000).unwrap(), vec![(1999, 1)]);
        let job = c.start_harvest_job("{}").unwrap();
        c.finish_harvest_job(job, "done", 3, 1).unwrap();
        let jobs = c.harvest_jobs().unwrap();
        assert_eq!(jobs[0].status, "done");
        assert_eq!(jobs[0].ok, 3);
    }
}
