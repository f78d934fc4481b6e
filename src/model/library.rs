//! The models a person can pick: the shipped one and every model trained into the data
//! directory, each with its date, recipe and validation figures.

use std::path::{Path, PathBuf};

use super::{CONFIG_FILE, ModelConfig, WEIGHTS_FILE};
use crate::paths::DataDir;

/// One model on offer.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    /// Its directory.
    pub dir: PathBuf,
    /// A short name: "Shipped model" or the directory's name.
    pub name: String,
    /// When it was written (UTC, to the minute), if known.
    pub date: Option<String>,
    /// The network and recipe in a few words ("EfficientNet-Lite0, MLP 512, 30 epochs").
    pub recipe: String,
    /// Its validation figures in a few words, if it has any.
    pub figures: Option<String>,
    /// Whether this is the shipped model.
    pub shipped: bool,
}

impl ModelEntry {
    /// Reads the entry for the model in `dir`; `None` if it is not a readable model.
    pub fn read(dir: &Path, shipped: bool) -> Option<Self> {
        if !dir.join(WEIGHTS_FILE).is_file() {
            return None;
        }
        let config = ModelConfig::load(dir).ok()?;
        let net = &config.network;
        let mut recipe = net.arch.label().replace(" (pretrained)", "");
        if net.arch != super::backbone::Arch::Scratch {
            recipe.push_str(&format!(", {:?} features", net.levels).to_lowercase());
            if net.finetune_blocks > 0 {
                recipe.push_str(&format!(", last {} blocks fine-tuned", net.finetune_blocks));
            }
        }
        recipe.push_str(&if net.hidden > 0 {
            format!(", MLP {}", net.hidden)
        } else {
            ", linear head".to_owned()
        });
        if net.heads > 1 {
            recipe.push_str(&format!(" × {} (ensemble)", net.heads));
        }
        if let Some(epochs) = config
            .recipe
            .get("epochs")
            .and_then(serde_json::Value::as_u64)
        {
            recipe.push_str(&format!(", {epochs} epochs"));
        }
        if !config.members.is_empty() {
            recipe.push_str(&format!(
                " at {}×{}, averaged with the {} network",
                net.input_width,
                net.input_height,
                config.members.join(" and ")
            ));
        }
        let figures = config.validation.as_ref().map(|v| {
            format!(
                "validation ({} posters): decade {:.1}%, balanced {:.1}%, within one decade {:.1}%, MAE {:.1} years",
                v.count,
                100.0 * v.decade_top1,
                100.0 * v.balanced_decade_accuracy,
                100.0 * v.within_one_decade,
                v.mae_years
            )
        });
        let date = std::fs::metadata(dir.join(CONFIG_FILE))
            .and_then(|m| m.modified())
            .ok()
            .map(utc_minute);
        let name = if shipped {
            "Shipped model".to_owned()
        } else {
            dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        };
        Some(Self {
            dir: dir.to_path_buf(),
            name,
            date,
            recipe,
            figures,
            shipped,
        })
    }

    /// One line for menus: name and date.
    pub fn label(&self) -> String {
        match &self.date {
            Some(d) if !self.shipped => format!("{} ({d})", self.name),
            _ => self.name.clone(),
        }
    }
}

/// The shipped model (if found) first, then the models under `<data dir>/models`, newest
/// first.
pub fn available_models(data_dir: &DataDir) -> Vec<ModelEntry> {
    let mut out: Vec<ModelEntry> = super::default_model_dir()
        .and_then(|d| ModelEntry::read(&d, true))
        .into_iter()
        .collect();
    let mut trained: Vec<(std::time::SystemTime, ModelEntry)> =
        std::fs::read_dir(data_dir.models_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let dir = e.path();
                let entry = ModelEntry::read(&dir, false)?;
                let when = std::fs::metadata(dir.join(CONFIG_FILE))
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                Some((when, entry))
            })
            .collect();
    trained.sort_by_key(|e| std::cmp::Reverse(e.0));
    out.extend(trained.into_iter().map(|(_, e)| e));
    out
}

/// `YYYY-MM-DD HH:MM UTC` of a file time.
fn utc_minute(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let full = crate::joblock::utc_string(secs);
    // "YYYY-MM-DD HH:MM:SS UTC" without the seconds.
    format!("{} UTC", &full[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_shipped_model_and_trained_ones_with_their_recipe() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path());
        let shipped = super::super::default_model_dir().unwrap();
        // A "trained" model: a copy of the shipped one under the data directory.
        let mine = data.models_dir().join("my-model");
        std::fs::create_dir_all(&mine).unwrap();
        for f in [CONFIG_FILE, WEIGHTS_FILE] {
            std::fs::copy(shipped.join(f), mine.join(f)).unwrap();
        }
        // Not a model: ignored.
        std::fs::create_dir_all(data.models_dir().join("empty")).unwrap();
        let list = available_models(&data);
        assert_eq!(list.len(), 2, "{list:?}");
        assert!(list[0].shipped && list[0].name == "Shipped model");
        assert_eq!(list[1].name, "my-model");
        assert!(
            list[1].label().starts_with("my-model (20"),
            "{}",
            list[1].label()
        );
        assert!(
            list[1].recipe.contains("EfficientNet-Lite0"),
            "{}",
            list[1].recipe
        );
        assert!(
            list[1]
                .figures
                .as_deref()
                .unwrap_or("")
                .contains("balanced"),
            "{:?}",
            list[1].figures
        );
    }
}
