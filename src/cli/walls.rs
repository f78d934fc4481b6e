//! `compare`: a poster wall per era written as one labelled PNG (what the Compare tab's
//! "Export wall…" writes), for scripts and tests.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::catalog::{Catalog, PosterStatus};
use crate::eras::EraSchemes;
use crate::explore::Explorer;
use crate::explore::walls::{
    Agreement, ModelAnswer, WallFilter, WallLayout, WallRequest, WallSort, WallStyle, eras_by_name,
    wall_blocks, wall_columns, write_wall,
};
use crate::paths::DataDir;

/// Options of `compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Era scheme (`decades`, `hollywood`, or one from your eras file).
    #[arg(long, default_value = "decades")]
    pub scheme: String,
    /// Eras to put side by side, comma separated, by name (e.g. 1950s,1980s,2010s).
    #[arg(long, value_delimiter = ',', required = true)]
    pub eras: Vec<String>,
    /// Posters per era (a reproducible sample); 0 for all of them.
    #[arg(long, default_value_t = 40)]
    pub per_era: usize,
    /// Order within an era.
    #[arg(long, value_enum, default_value_t = WallSort::Year)]
    pub sort: WallSort,
    /// Seed of the sample and of `--sort random`.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only movies of this genre.
    #[arg(long)]
    pub genre: Option<String>,
    /// Only titles containing this.
    #[arg(long, default_value = "")]
    pub title: String,
    /// Only posters the model dates to their own era (`agrees`) or to another
    /// (`disagrees`); needs its stored predictions (`movie-eras predict`).
    #[arg(long, value_parser = ["agrees", "disagrees"])]
    pub agreement: Option<String>,
    /// Model whose stored predictions `--sort confidence` and `--agreement` use (default:
    /// the shipped model).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Eras side by side (`columns`) or one under another (`rows`, a timeline).
    #[arg(long, value_enum, default_value_t = WallLayout::Columns)]
    pub layout: WallLayout,
    /// Image width in pixels.
    #[arg(long, default_value_t = 1600, value_parser = clap::value_parser!(u32).range(200..=8192))]
    pub width: u32,
    /// Poster width in pixels.
    #[arg(long, default_value_t = 96, value_parser = clap::value_parser!(u32).range(24..=400))]
    pub tile: u32,
    /// Title and year under each poster.
    #[arg(long)]
    pub captions: bool,
    /// The PNG to write (atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `compare`.
pub fn cmd_compare(data_dir: &DataDir, schemes: &EraSchemes, args: &CompareArgs) -> Result<()> {
    let scheme = schemes.get(&args.scheme)?;
    let eras = eras_by_name(scheme, &args.eras)?;
    let agreement = match args.agreement.as_deref() {
        Some("agrees") => Agreement::Agrees,
        Some(_) => Agreement::Disagrees,
        None => Agreement::Any,
    };
    let req = WallRequest {
        eras,
        per_era: (args.per_era > 0).then_some(args.per_era),
        sort: args.sort,
        seed: args.seed,
        filter: WallFilter {
            genre: args.genre.clone(),
            title: args.title.clone(),
            status: Some(PosterStatus::Ok),
            agreement,
        },
    };
    req.validate(scheme)?;
    let catalog = Catalog::open(&data_dir.catalog_path())
        .with_context(|| format!("opening the catalog in {}", data_dir.root().display()))?;
    let explorer = Explorer::new(catalog.movies()?);
    // The model's stored answers, when the sort or the filter needs them.
    let needs_model = args.sort == WallSort::Confidence || agreement != Agreement::Any;
    let answers: std::collections::HashMap<i64, ModelAnswer> = if needs_model {
        let dir = super::model_jobs::model_dir(data_dir, args.model.as_deref())?;
        let config = crate::model::ModelConfig::load(&dir)
            .with_context(|| format!("reading the model in {}", dir.display()))?;
        let stored = catalog.all_predictions(&crate::model::inference::fingerprint(&dir)?)?;
        anyhow::ensure!(
            !stored.is_empty(),
            "no stored predictions of the model in {}: run `movie-eras predict` first",
            dir.display()
        );
        explorer
            .rows
            .iter()
            .filter_map(|r| {
                let probs = stored.get(r.poster_sha256.as_deref()?)?;
                let p =
                    crate::model::inference::Prediction::new(config.bins, probs.clone(), scheme);
                Some((
                    r.id,
                    ModelAnswer {
                        era: p.best_era,
                        confidence: p.eras.get(p.best_era).map_or(0.0, |(_, c)| *c as f32),
                    },
                ))
            })
            .collect()
    } else {
        Default::default()
    };
    let lookup = |id: i64| answers.get(&id).copied();
    let columns = wall_columns(&explorer, scheme, &req, Some(&lookup));
    let shown: usize = columns.iter().map(|c| c.rows.len()).sum();
    anyhow::ensure!(
        shown > 0,
        "no posters match in {} ({} scheme){}",
        args.eras.join(", "),
        scheme.name,
        if req.filter.genre.is_some() || !req.filter.title.is_empty() || needs_model {
            " with these filters"
        } else {
            ""
        }
    );
    for c in columns.iter().filter(|c| c.rows.is_empty()) {
        eprintln!("note: no posters match in {}", scheme.eras[c.era].name);
    }
    let blocks = wall_blocks(&catalog, &explorer, scheme, &columns, data_dir);
    let style = WallStyle {
        width: args.width,
        layout: args.layout,
        tile: args.tile,
        captions: args.captions,
    };
    let (w, h) = write_wall(&blocks, &style, &args.out)?;
    eprintln!(
        "wrote {} ({w}x{h}): {} eras, {shown} posters",
        args.out.display(),
        columns.len()
    );
    Ok(())
}
