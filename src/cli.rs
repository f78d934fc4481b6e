//! The headless command line: every job of the app, for scripts, tests and benchmarks.

mod model_jobs;
mod walls;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::catalog::Catalog;
use crate::eras::EraSchemes;
use crate::export::{ExportFormat, export_rows, write_export};
use crate::imaging::ImageLimits;
use crate::import::{ImportOptions, Skipped};
use crate::joblock::JobLock;
use crate::paths::DataDir;

/// Movie Eras: does a movie poster show its era? With no command, opens the app window.
#[derive(Debug, Parser)]
#[command(
    name = "movie-eras",
    version = crate::version::VERSION,
    long_version = LONG_VERSION
)]
pub struct Cli {
    /// Data directory (catalog, posters, models). Default: the OS data directory.
    #[arg(long, global = true, env = crate::paths::DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Extra era schemes (TOML, same format as resources/eras.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub eras_file: Option<PathBuf>,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The job to run; none opens the window.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Posters to open in the Classify tab of the window (with no command).
    #[arg(value_name = "POSTER")]
    pub open: Vec<PathBuf>,
}

const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MOVIE_ERAS_COMMIT"),
    ", ",
    env!("MOVIE_ERAS_BUILD_DATE"),
    ")"
);

/// Headless jobs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import a folder of posters labelled by a CSV (`file,year[,title]`), or with the
    /// year in each file name (`Title (1977).jpg`, `title_1977.jpg`).
    Import {
        /// Folder the CSV's file names are relative to.
        dir: PathBuf,
        /// The labels CSV (without it, years and titles come from the file names).
        #[arg(long, value_name = "CSV")]
        labels: Option<PathBuf>,
        /// Copy posters into the data directory instead of referencing them in place.
        #[arg(long)]
        copy: bool,
        /// Rows committed per transaction.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Largest accepted image file in MiB.
        #[arg(long, default_value_t = 64)]
        max_mib: u64,
        /// Write the full summary (every skipped file and reason) as JSON here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Export one row per movie (id, title, year, era, poster file, sha256, status).
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Era scheme for the `era` column.
        #[arg(long, default_value = "hollywood")]
        scheme: String,
        /// Output file (default: standard output). Written atomically.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Model whose stored predictions fill `predicted_year` and `predicted_era`
        /// (default: the shipped model). `predict` stores them (so does the Gallery when
        /// it runs the model over the catalog).
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
    },
    /// Harvest movie metadata and posters from TMDB by release year (resumable).
    Harvest(HarvestArgs),
    /// Show the catalog's location and counts.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List era schemes and their eras.
    Eras,
    /// Add Movie Eras to the desktop's application menu (a `.desktop` entry and the icon,
    /// under `~/.local/share` or `--share DIR`), for a `cargo install` or a copied binary.
    InstallDesktop {
        /// The `share` directory to install into (default: `$XDG_DATA_HOME` or
        /// `~/.local/share`).
        #[arg(long, value_name = "DIR")]
        share: Option<PathBuf>,
    },
    /// Remove what `install-desktop` added.
    UninstallDesktop {
        /// The `share` directory it was installed into.
        #[arg(long, value_name = "DIR")]
        share: Option<PathBuf>,
    },
    /// Train the era model on the catalog's posters.
    Train(model_jobs::TrainArgs),
    /// Evaluate a model on a labelled folder or the catalog's validation split.
    Evaluate(model_jobs::EvaluateArgs),
    /// Predict the era and year of poster images.
    Classify(model_jobs::ClassifyArgs),
    /// Join trained models into one whose answer is the mean of theirs (the same recipe
    /// at two input sizes, say), scored on the catalog's held-out split.
    Combine(model_jobs::CombineArgs),
    /// Write poster walls of chosen eras side by side as one labelled PNG (what the
    /// Compare tab's "Export wall…" writes).
    Compare(walls::CompareArgs),
    /// Run the model over every poster of the catalog and store its predictions (what the
    /// Gallery's Map and error sort use; `export` then carries them). Predictions already
    /// stored for the model are kept: a second run does nothing.
    Predict(model_jobs::PredictArgs),
}

/// Options of `harvest`.
#[derive(Debug, clap::Args)]
pub struct HarvestArgs {
    /// First release year.
    #[arg(long, default_value_t = 1939)]
    pub from: i32,
    /// Last release year.
    #[arg(long, default_value_t = 2025)]
    pub to: i32,
    /// Movies per year.
    #[arg(long, default_value_t = 80)]
    pub per_year: u32,
    /// TMDB sort order (revenue.desc, popularity.desc, vote_count.desc, …).
    #[arg(long, default_value = "revenue.desc")]
    pub sort: String,
    /// Poster size on the image CDN (w92, w154, w185, w342, w500, w780, original).
    #[arg(long, default_value = "w154")]
    pub size: String,
    /// Most simultaneous HTTP connections (TMDB allows about 20 per IP).
    #[arg(long, default_value_t = 20)]
    pub connections: usize,
    /// Only movies with at least this many votes.
    #[arg(long)]
    pub min_votes: Option<u32>,
    /// TMDB v3 API key (else TMDB_API_KEY, else the key saved in the app's config).
    #[arg(long, env = "TMDB_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// TMDB v4 read access token, sent as a bearer token.
    #[arg(long, env = "TMDB_BEARER_TOKEN", hide_env_values = true)]
    pub bearer_token: Option<String>,
    /// Scrape the website even if a key is configured.
    #[arg(long)]
    pub no_key: bool,
    /// API base URL.
    #[arg(long, env = "MOVIE_ERAS_TMDB_API_URL", default_value = crate::harvest::tmdb::DEFAULT_API_URL)]
    pub api_url: String,
    /// Image CDN base URL (the size and file follow it).
    #[arg(long, env = "MOVIE_ERAS_TMDB_IMAGE_URL", default_value = crate::harvest::tmdb::DEFAULT_IMAGE_URL)]
    pub image_url: String,
    /// Website base URL (used without a key).
    #[arg(long, env = "MOVIE_ERAS_TMDB_SITE_URL", default_value = crate::harvest::tmdb::DEFAULT_SITE_URL)]
    pub site_url: String,
    /// API requests per second (default 40 with a key, 2 for the website).
    #[arg(long)]
    pub api_rate: Option<f64>,
    /// Image requests per second (0: bounded by --connections only).
    #[arg(long, default_value_t = 0.0)]
    pub image_rate: f64,
    /// Attempts per request.
    #[arg(long, default_value_t = 5)]
    pub attempts: u32,
    /// First retry delay in milliseconds (doubles each retry, jittered).
    #[arg(long, default_value_t = 500)]
    pub backoff_ms: u64,
    /// Fetch again posters that failed in earlier runs.
    #[arg(long)]
    pub retry_failed: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Loads built-in schemes, then `<data dir>/eras.toml`, then `--eras-file`.
pub fn load_schemes(data_dir: &DataDir, eras_file: Option<&Path>) -> Result<EraSchemes> {
    let user = data_dir.eras_file();
    let mut schemes = if user.exists() {
        EraSchemes::with_user_file(&user)?
    } else {
        EraSchemes::builtin()
    };
    if let Some(f) = eras_file {
        let extra = EraSchemes::with_user_file(f)?;
        // `with_user_file` starts from the built-ins; keep earlier user schemes too.
        let mut merged: BTreeMap<String, crate::eras::EraScheme> = schemes
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        for s in extra.iter() {
            merged.insert(s.name.clone(), s.clone());
        }
        let text = toml_of(&merged);
        schemes = EraSchemes::parse(&text, &f.display().to_string())?;
    }
    Ok(schemes)
}

fn toml_of(schemes: &BTreeMap<String, crate::eras::EraScheme>) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    for (name, s) in schemes {
        let _ = writeln!(
            t,
            "[schemes.{}]\nlabel = {:?}\neras = [",
            toml_key(name),
            s.label
        );
        for e in &s.eras {
            let _ = write!(t, "  {{ name = {:?}", e.name);
            if let Some(f) = e.from {
                let _ = write!(t, ", from = {f}");
            }
            if let Some(to) = e.to {
                let _ = write!(t, ", to = {to}");
            }
            let _ = writeln!(t, " }},");
        }
        let _ = writeln!(t, "]");
    }
    t
}

fn toml_key(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// Runs a headless command.
pub fn run(cli: Cli) -> Result<()> {
    let data_dir = DataDir::resolve(cli.data_dir.as_deref());
    let Some(command) = cli.command else {
        anyhow::bail!("no command given");
    };
    match command {
        Command::Import {
            dir,
            labels,
            copy,
            batch,
            max_mib,
            report,
        } => {
            let _lock = JobLock::acquire(&data_dir, "import")?;
            cmd_import(
                &data_dir,
                dir,
                labels,
                copy,
                batch,
                max_mib,
                report.as_deref(),
            )
        }
        Command::Export {
            format,
            scheme,
            out,
            model,
        } => {
            let schemes = load_schemes(&data_dir, cli.eras_file.as_deref())?;
            let scheme = schemes.get(&scheme)?;
            let catalog = open_catalog(&data_dir)?;
            let model_dir = model_jobs::model_dir(&data_dir, model.as_deref()).ok();
            let (stored, bins) = match &model_dir {
                Some(dir) => {
                    let config = crate::model::ModelConfig::load(dir)
                        .with_context(|| format!("reading the model in {}", dir.display()))?;
                    let key = crate::model::inference::fingerprint(dir)?;
                    (catalog.all_predictions(&key)?, config.bins)
                }
                None => (Default::default(), crate::model::YearBins::default()),
            };
            let movies = catalog.movies()?;
            let lookup = |sha: &str| {
                stored.get(sha).map(|probs| {
                    let p = crate::model::inference::Prediction::new(bins, probs.clone(), scheme);
                    (p.year, p.best_era_name().to_owned())
                })
            };
            let rows = export_rows(&movies, scheme, &lookup);
            let with = rows.iter().filter(|r| r.predicted_year.is_some()).count();
            let ok = rows.iter().filter(|r| r.status == "ok").count();
            if with < ok {
                eprintln!(
                    "{with} of {ok} posters have a stored prediction of this model: run \
                     `movie-eras predict` first to fill predicted_year and predicted_era"
                );
            }
            let mut buf = Vec::new();
            write_export(&rows, format, &mut buf).context("formatting the export")?;
            match out {
                Some(path) => crate::fsutil::write_atomic(&path, &buf)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout()
                    .write_all(&buf)
                    .context("writing to standard output")?,
            }
            Ok(())
        }
        Command::Harvest(args) => {
            let _lock = JobLock::acquire(&data_dir, "harvest")?;
            cmd_harvest(&data_dir, &args)
        }
        Command::Status { json } => {
            let catalog = open_catalog(&data_dir)?;
            let counts = catalog.counts()?;
            if json {
                let v = serde_json::json!({
                    "data_dir": data_dir.root(),
                    "catalog": catalog.path(),
                    "schema_version": catalog.schema_version()?,
                    "counts": counts,
                });
                println!("{v}");
            } else {
                println!("data dir:  {}", data_dir.root().display());
                println!("catalog:   {}", catalog.path().display());
                println!(
                    "movies:    {} (posters ok {}, failed {}, pending {})",
                    counts.movies, counts.ok, counts.failed, counts.pending
                );
            }
            Ok(())
        }
        Command::Train(args) => {
            let schemes = load_schemes(&data_dir, cli.eras_file.as_deref())?;
            // The training job takes the data directory's "train" lock itself.
            model_jobs::cmd_train(&data_dir, &schemes, &args)
        }
        Command::Evaluate(args) => {
            let schemes = load_schemes(&data_dir, cli.eras_file.as_deref())?;
            model_jobs::cmd_evaluate(&data_dir, &schemes, &args)
        }
        Command::Classify(args) => {
            let schemes = load_schemes(&data_dir, cli.eras_file.as_deref())?;
            model_jobs::cmd_classify(&data_dir, &schemes, &args)
        }
        Command::Predict(args) => model_jobs::cmd_predict(&data_dir, &args),
        Command::Combine(args) => {
            let schemes = load_schemes(&data_dir, cli.eras_file.as_deref())?;
            model_jobs::cmd_combine(&data_dir, &schemes, &args)
        }
        Command::Compare(args) => {
            let schemes = load_schemes(&data_dir, cli.eras_file.as_deref())?;
            walls::cmd_compare(&data_dir, &schemes, &args)
        }
        Command::InstallDesktop { share } => {
            let share = share
                .or_else(crate::desktop::user_share_dir)
                .context("no home directory: give --share DIR")?;
            let exe = std::env::current_exe().context("cannot find this program's path")?;
            let files = crate::desktop::install(&share, &exe.display().to_string())?;
            for f in &files {
                println!("wrote {}", f.display());
            }
            println!("Movie Eras is in the application menu (it may take a moment to appear).");
            Ok(())
        }
        Command::UninstallDesktop { share } => {
            let share = share
                .or_else(crate::desktop::user_share_dir)
                .context("no home directory: give --share DIR")?;
            let removed = crate::desktop::uninstall(&share)?;
            if removed.is_empty() {
                println!("nothing to remove under {}", share.display());
            }
            for f in &removed {
                println!("removed {}", f.display());
            }
            Ok(())
        }
        Command::Eras => {
            let schemes = load_schemes(&data_dir, cli.eras_file.as_deref())?;
            for s in schemes.iter() {
                println!("{} — {}", s.name, s.label);
                for e in &s.eras {
                    println!("  {:<24} {}", e.name, e.range_label());
                }
            }
            Ok(())
        }
    }
}

fn open_catalog(data_dir: &DataDir) -> Result<Catalog> {
    Catalog::open(&data_dir.catalog_path())
        .with_context(|| format!("opening the catalog in {}", data_dir.root().display()))
}

/// A progress bar on stderr for a long CLI job. On a terminal it redraws in place; when
/// stderr is a log file or a pipe (where a bar would be hidden), it prints a plain line
/// at most every [`LOG_EVERY`] and at least that often, even while the job is stalled.
pub fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    let pb = indicatif::ProgressBar::new(total);
    let terminal = std::io::stderr().is_terminal();
    let template = if terminal {
        "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})"
    } else {
        "{msg}: {pos}/{len} ({percent}%, {per_sec}, {elapsed} elapsed, ETA {eta})"
    };
    let style = indicatif::ProgressStyle::with_template(template).map_or_else(
        |_| indicatif::ProgressStyle::default_bar(),
        |s| s.progress_chars("=> "),
    );
    pb.set_style(style);
    pb.set_message(what.to_owned());
    if !terminal {
        pb.set_draw_target(indicatif::ProgressDrawTarget::term_like_with_hz(
            Box::new(LogLines::new(LOG_EVERY, Box::new(std::io::stderr()))),
            1,
        ));
        // Redraw every second whether or not the job moves, so a stalled job still logs.
        pb.enable_steady_tick(Duration::from_secs(1));
    }
    pb
}

/// How often a long job logs its progress when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// An `indicatif` draw target that turns redraws into log lines: the first one at
/// once, then the latest state at most once per `every` (cursor moves are ignored).
pub struct LogLines {
    every: Duration,
    out: std::sync::Mutex<LogState>,
}

struct LogState {
    sink: Box<dyn Write + Send>,
    line: String,
    last: Option<Instant>,
}

impl std::fmt::Debug for LogLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLines")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl LogLines {
    /// Logs to `sink` at most once per `every`.
    pub fn new(every: Duration, sink: Box<dyn Write + Send>) -> Self {
        Self {
            every,
            out: std::sync::Mutex::new(LogState {
                sink,
                line: String::new(),
                last: None,
            }),
        }
    }

    fn with(&self, f: impl FnOnce(&mut LogState) -> std::io::Result<()>) -> std::io::Result<()> {
        match self.out.lock() {
            Ok(mut s) => f(&mut s),
            Err(_) => Ok(()),
        }
    }
}

impl indicatif::TermLike for LogLines {
    fn width(&self) -> u16 {
        200
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.with(|st| {
            if !s.trim().is_empty() {
                st.line = s.trim_end().to_owned();
            }
            Ok(())
        })
    }

    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        let every = self.every;
        self.with(|st| {
            let due = st.last.is_none_or(|t| t.elapsed() >= every);
            if due && !st.line.is_empty() {
                let line = std::mem::take(&mut st.line);
                writeln!(st.sink, "{line}")?;
                st.sink.flush()?;
                st.last = Some(Instant::now());
            }
            Ok(())
        })
    }
}

fn cmd_import(
    data_dir: &DataDir,
    dir: PathBuf,
    labels: Option<PathBuf>,
    copy: bool,
    batch: usize,
    max_mib: u64,
    report: Option<&Path>,
) -> Result<()> {
    // Opened here first for the clear "cannot open the catalog" message.
    drop(open_catalog(data_dir)?);
    let opts = ImportOptions {
        dir,
        labels,
        copy_into: copy.then(|| data_dir.posters_dir()),
        limits: ImageLimits {
            max_bytes: max_mib.saturating_mul(1024 * 1024),
            ..ImageLimits::default()
        },
        batch,
    };
    let start = Instant::now();
    let pb = progress_bar(0, "importing");
    let what = format!("importing {}", opts.dir.display());
    let catalog_path = data_dir.catalog_path();
    let summary = crate::jobs::JobHandle::spawn(
        "import",
        crate::jobs::no_waker(),
        move |control, progress| {
            crate::import::import_into(&catalog_path, &opts, control, progress)
        },
    )?
    .join_with(|p: crate::import::ImportProgress| {
        pb.set_length(p.total);
        pb.set_position(p.done);
    })
    .context(what)?;
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "imported {} posters ({} failed, {} already in the catalog, {} skipped) from {} rows in {secs:.1} s",
        summary.added_ok,
        summary.added_failed,
        summary.already_present,
        summary.skipped.len(),
        summary.rows
    );
    print_reasons("failed posters (stored with their reason)", &summary.failed);
    print_reasons("skipped (not stored)", &summary.skipped);
    if let Some(path) = report {
        let json = serde_json::to_vec_pretty(&summary).context("formatting the report")?;
        crate::fsutil::write_atomic(path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn print_reasons(title: &str, items: &[Skipped]) {
    if items.is_empty() {
        return;
    }
    let mut by_reason: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for s in items {
        // Group by the reason without line numbers.
        let key = s
            .reason
            .split_once(": ")
            .map_or(s.reason.as_str(), |(a, b)| {
                if a.starts_with("line ") {
                    b
                } else {
                    s.reason.as_str()
                }
            });
        by_reason.entry(key.to_owned()).or_default().push(&s.file);
    }
    eprintln!("{title}:");
    for (reason, files) in by_reason {
        let shown: Vec<&str> = files.iter().take(3).copied().collect();
        let more = files.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        eprintln!(
            "  {:>6} × {reason}: {}{more}",
            files.len(),
            shown.join(", ")
        );
    }
}

fn cmd_harvest(data_dir: &DataDir, args: &HarvestArgs) -> Result<()> {
    use crate::harvest::tmdb::Auth;
    use crate::harvest::{HarvestEvent, HarvestOptions};
    use crate::jobs::JobHandle;

    // A config file that cannot be read is not taken for "no key" (which would quietly
    // switch to the website): it matters only when no key was given here.
    let explicit = args.no_key || args.api_key.is_some() || args.bearer_token.is_some();
    let saved = match crate::config::UserConfig::load(&crate::config::default_path()) {
        Ok(c) => c,
        Err(e) if explicit => {
            eprintln!("warning: {e} (not needed: a key or --no-key was given)");
            crate::config::UserConfig::default()
        }
        Err(e) => anyhow::bail!(
            "{e}: fix or delete it, or give --api-key / TMDB_API_KEY, or --no-key for the website"
        ),
    };
    let auth = crate::harvest::resolve_auth(
        args.no_key,
        args.api_key.as_deref(),
        args.bearer_token.as_deref(),
        &saved,
    );
    let website = matches!(auth, Auth::None);
    if website {
        eprintln!("no TMDB key: reading the website's listing pages (slower, politely paced)");
    }
    let mut opts = HarvestOptions::new(args.from, args.to, data_dir.posters_dir());
    opts.per_year = args.per_year;
    opts.sort_by.clone_from(&args.sort);
    opts.size.clone_from(&args.size);
    opts.connections = args.connections;
    opts.min_votes = args.min_votes;
    opts.auth = auth;
    opts.api_url.clone_from(&args.api_url);
    opts.image_url.clone_from(&args.image_url);
    opts.site_url.clone_from(&args.site_url);
    opts.api_rate = args
        .api_rate
        .unwrap_or_else(|| crate::harvest::default_api_rate(&opts.auth));
    opts.image_rate = args.image_rate;
    opts.retry.max_attempts = args.attempts.max(1);
    opts.retry.base_delay = Duration::from_millis(args.backoff_ms);
    opts.retry_failed = args.retry_failed;

    opts.validate()?;
    let catalog_path = data_dir.catalog_path();
    let job = JobHandle::spawn(
        "harvest",
        crate::jobs::no_waker(),
        move |control, progress| {
            crate::harvest::run_harvest(&catalog_path, &opts, control, progress)
        },
    )?;
    let pb = progress_bar(0, "harvesting");
    let mut notes = 0usize;
    let outcome = job.join_with(|ev| match ev {
        HarvestEvent::Progress(p) => {
            pb.set_length(p.total);
            pb.set_position(p.ok + p.failed);
            let msg = match (p.rate_limited_for, &p.problem) {
                (Some(d), _) => {
                    format!("waiting on TMDB rate limit ({:.1} s)", d.as_secs_f64())
                }
                (None, Some(problem)) => format!(
                    "{} ok, {} failed, {} pages; trouble: {problem}",
                    p.ok, p.failed, p.pages
                ),
                (None, None) => format!("{} ok, {} failed, {} pages", p.ok, p.failed, p.pages),
            };
            pb.set_message(msg);
        }
        HarvestEvent::Note(n) => {
            notes += 1;
            if notes <= 20 {
                pb.println(n);
            } else if notes == 21 {
                pb.println("(more notes hidden; see the catalog's failed posters)");
            }
        }
    });
    pb.finish_and_clear();
    let summary = outcome.context("harvest failed")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary).context("formatting the summary")?
        );
    } else {
        eprintln!(
            "harvested {} posters ({} failed), {} new movies from {} pages, {} requests ({} retries, {} rate-limited) in {:.1} s",
            summary.ok,
            summary.failed,
            summary.listed,
            summary.pages,
            summary.requests,
            summary.retries,
            summary.rate_limited,
            summary.seconds
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::TermLike as _;

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_or(Ok(0), |mut v| {
                v.extend_from_slice(b);
                Ok(b.len())
            })
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    fn redraw(log: &LogLines, line: &str) {
        log.clear_line().unwrap();
        log.move_cursor_up(1).unwrap();
        log.write_str(line).unwrap();
        log.flush().unwrap();
    }

    #[test]
    fn progress_logs_plain_lines_at_most_once_per_period() {
        // A long period: the first state is logged at once, later redraws wait for it.
        let sink = Shared::default();
        let log = LogLines::new(Duration::from_secs(3600), Box::new(sink.clone()));
        redraw(&log, "features: 1/100");
        redraw(&log, "features: 2/100");
        redraw(&log, "features: 3/100");
        assert_eq!(sink.text(), "features: 1/100\n");
        // A period that has always passed: every redraw with something to say is a line,
        // with no cursor movement or escape codes in it.
        let sink = Shared::default();
        let log = LogLines::new(Duration::ZERO, Box::new(sink.clone()));
        redraw(&log, "features: 1/100");
        log.flush().unwrap(); // nothing new: no repeated line
        redraw(&log, "features: 2/100 ");
        assert_eq!(sink.text(), "features: 1/100\nfeatures: 2/100\n");
        assert!(!sink.text().contains('\u{1b}'));
    }

    #[test]
    fn subcommands_and_posters_to_open_parse_apart() {
        let c = Cli::try_parse_from(["movie-eras", "--data-dir", "d", "classify", "x.jpg"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(c.command, Some(Command::Classify(_))));
        assert!(c.open.is_empty());
        let c = Cli::try_parse_from(["movie-eras", "--data-dir", "d", "a.jpg", "b.png"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.command.is_none());
        assert_eq!(c.open, vec![PathBuf::from("a.jpg"), PathBuf::from("b.png")]);
    }
}
