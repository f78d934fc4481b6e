//! Era schemes: named, contiguous partitions of release years into eras.
//!
//! The built-in schemes live in `resources/eras.toml` (compiled into the binary);
//! users may add or replace schemes with a file in the same format.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The built-in scheme file, compiled in.
pub const BUILTIN_ERAS_TOML: &str = include_str!("../resources/eras.toml");

/// Errors in an era scheme file.
#[derive(Debug, thiserror::Error)]
pub enum ErasError {
    /// The file is not valid TOML of the expected shape.
    #[error("era file {origin}: {message}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// What was wrong.
        message: String,
    },
    /// A scheme breaks a rule (gaps, overlaps, empty, bad decade bounds).
    #[error("era scheme `{scheme}` in {origin}: {message}")]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// The scheme's name.
        scheme: String,
        /// What was wrong.
        message: String,
    },
    /// The era file could not be read.
    #[error("cannot read era file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No scheme of that name.
    #[error("unknown era scheme `{0}` (known: {1})")]
    Unknown(String, String),
}

/// One era: a name and an inclusive year range, open at either end when `None`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Era {
    /// Display name, e.g. "New Hollywood" or "1950s".
    pub name: String,
    /// First year (inclusive); `None` means open towards the past.
    pub from: Option<i32>,
    /// Last year (inclusive); `None` means open towards the future.
    pub to: Option<i32>,
}

impl Era {
    /// Whether `year` falls in this era.
    pub fn contains(&self, year: i32) -> bool {
        self.from.is_none_or(|f| year >= f) && self.to.is_none_or(|t| year <= t)
    }

    /// A short "1939–1954" style range label.
    pub fn range_label(&self) -> String {
        match (self.from, self.to) {
            (Some(f), Some(t)) => format!("{f}–{t}"),
            (None, Some(t)) => format!("–{t}"),
            (Some(f), None) => format!("{f}–"),
            (None, None) => "all years".to_owned(),
        }
    }
}

/// A named scheme: eras in chronological order covering every year exactly once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EraScheme {
    /// Identifier used on the command line, e.g. `hollywood`.
    pub name: String,
    /// Human label, e.g. "Hollywood eras".
    pub label: String,
    /// The eras, oldest first.
    pub eras: Vec<Era>,
}

impl EraScheme {
    /// Index of the era containing `year`. Every year has one (schemes are validated).
    pub fn era_index(&self, year: i32) -> usize {
        // Eras are sorted and contiguous: the first whose end is not before `year`.
        self.eras
            .iter()
            .position(|e| e.to.is_none_or(|t| year <= t))
            .unwrap_or(self.eras.len().saturating_sub(1))
    }

    /// The era containing `year`.
    pub fn era_of(&self, year: i32) -> &Era {
        &self.eras[self.era_index(year)]
    }

    /// Era names, oldest first.
    pub fn era_names(&self) -> Vec<&str> {
        self.eras.iter().map(|e| e.name.as_str()).collect()
    }

    fn validate(&self, origin: &str) -> Result<(), ErasError> {
        let invalid = |message: String| ErasError::Invalid {
            origin: origin.to_owned(),
            scheme: self.name.clone(),
            message,
        };
        if self.eras.is_empty() {
            return Err(invalid("has no eras".into()));
        }
        let last = self.eras.len() - 1;
        for (i, era) in self.eras.iter().enumerate() {
            if era.name.trim().is_empty() {
                return Err(invalid(format!("era #{} has an empty name", i + 1)));
            }
            if era.from.is_none() && i != 0 {
                return Err(invalid(format!(
                    "only the first era may omit `from` (`{}` does)",
                    era.name
                )));
            }
            if era.to.is_none() && i != last {
                return Err(invalid(format!(
                    "only the last era may omit `to` (`{}` does)",
                    era.name
                )));
            }
            if let (Some(f), Some(t)) = (era.from, era.to)
                && f > t
            {
                return Err(invalid(format!(
                    "era `{}` ends ({t}) before it starts ({f})",
                    era.name
                )));
            }
            if i > 0 {
                let prev = &self.eras[i - 1];
                let (Some(prev_to), Some(from)) = (prev.to, era.from) else {
                    return Err(invalid(format!("era `{}` has no start year", era.name)));
                };
                if from != prev_to + 1 {
                    return Err(invalid(format!(
                        "`{}` ends in {prev_to} but `{}` starts in {from}: eras must be contiguous",
                        prev.name, era.name
                    )));
                }
            }
        }
        let mut names: Vec<&str> = self.era_names();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("two eras share a name".into()));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEra {
    name: String,
    from: Option<i32>,
    to: Option<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScheme {
    label: Option<String>,
    kind: Option<String>,
    first: Option<i32>,
    last: Option<i32>,
    #[serde(default)]
    eras: Vec<FileEra>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraFile {
    #[serde(default)]
    schemes: BTreeMap<String, FileScheme>,
}

/// All known schemes, by name.
#[derive(Debug, Clone)]
pub struct EraSchemes {
    schemes: BTreeMap<String, EraScheme>,
}

impl EraSchemes {
    /// The built-in schemes (`decades`, `hollywood`).
    pub fn builtin() -> Self {
        // The built-in file is part of the binary and covered by tests.
        #[allow(clippy::expect_used)]
        Self::parse(BUILTIN_ERAS_TOML, "built-in eras.toml").expect("built-in eras.toml is valid")
    }

    /// Parses schemes from TOML text; `origin` names the text in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ErasError> {
        let file: EraFile = toml::from_str(text).map_err(|e| ErasError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let mut schemes = BTreeMap::new();
        for (name, fs) in file.schemes {
            let scheme = build_scheme(&name, fs, origin)?;
            scheme.validate(origin)?;
            schemes.insert(name, scheme);
        }
        Ok(Self { schemes })
    }

    /// Built-in schemes plus those of `path`, which add to or replace built-in ones.
    pub fn with_user_file(path: &Path) -> Result<Self, ErasError> {
        let text = std::fs::read_to_string(path).map_err(|source| ErasError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let user = Self::parse(&text, &path.display().to_string())?;
        let mut all = Self::builtin();
        all.schemes.extend(user.schemes);
        Ok(all)
    }

    /// The scheme called `name`.
    pub fn get(&self, name: &str) -> Result<&EraScheme, ErasError> {
        self.schemes.get(name).ok_or_else(|| {
            ErasError::Unknown(
                name.to_owned(),
                self.schemes.keys().cloned().collect::<Vec<_>>().join(", "),
            )
        })
    }

    /// All schemes, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &EraScheme> {
        self.schemes.values()
    }

    /// Scheme names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.schemes.keys().cloned().collect()
    }
}

fn build_scheme(name: &str, fs: FileScheme, origin: &str) -> Result<EraScheme, ErasError> {
    let invalid = |message: String| ErasError::Invalid {
        origin: origin.to_owned(),
        scheme: name.to_owned(),
        message,
    };
    let label = fs.label.unwrap_or_else(|| name.to_owned());
    let eras = match fs.kind.as_deref() {
        None | Some("explicit") => fs
            .eras
            .into_iter()
            .map(|e| Era {
                name: e.name,
                from: e.from,
                to: e.to,
            })
            .collect(),
        Some("decades") => {
            if !fs.eras.is_empty() {
                return Err(invalid("a `decades` scheme lists no eras".into()));
            }
            let (Some(first), Some(last)) = (fs.first, fs.last) else {
                return Err(invalid(
                    "a `decades` scheme needs `first` and `last`".into(),
                ));
            };
            let first = first.div_euclid(10) * 10;
            if last < first || last - first > 2000 {
                return Err(invalid(format!("bad decade range {first}..{last}")));
            }
            let mut eras = Vec::new();
            let mut start = first;
            while start <= last {
                eras.push(Era {
                    name: format!("{start}s"),
                    from: Some(start),
                    to: Some(start + 9),
                });
                start += 10;
            }
            if let Some(e) = eras.first_mut() {
                e.from = None;
            }
            if let Some(e) = eras.last_mut() {
                e.to = None;
            }
            eras
        }
        Some(other) => return Err(invalid(format!("unknown kind `{other}`"))),
    };
    Ok(EraScheme {
        name: name.to_owned(),
        label,
        eras,
    })
}

/// The decade (e.g. 1950) of a year.
pub fn decade_of(year: i32) -> i32 {
    year.div_euclid(10) * 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_hollywood_maps_boundaries() {
        let s = EraSchemes::builtin();
        let h = s.get("hollywood").unwrap();
        let cases = [
            (1895, "Before 1939"),
            (1938, "Before 1939"),
            (1939, "Golden Age"),
            (1954, "Golden Age"),
            (1955, "Transition"),
            (1966, "Transition"),
            (1967, "New Hollywood"),
            (1982, "New Hollywood"),
            (1983, "Blockbuster"),
            (1994, "Blockbuster"),
            (1995, "Digital"),
            (2006, "Digital"),
            (2007, "Franchise & Streaming"),
            (2019, "Franchise & Streaming"),
            (2020, "Post-Covid"),
            (2031, "Post-Covid"),
        ];
        for (year, era) in cases {
            assert_eq!(h.era_of(year).name, era, "year {year}");
        }
    }

    #[test]
    fn builtin_decades_are_open_ended() {
        let s = EraSchemes::builtin();
        let d = s.get("decades").unwrap();
        assert_eq!(d.era_of(1955).name, "1950s");
        assert_eq!(d.era_of(1950).name, "1950s");
        assert_eq!(d.era_of(1949).name, "1940s");
        assert_eq!(d.era_of(1870).name, "1890s");
        assert_eq!(d.era_of(2045).name, "2020s");
        assert_eq!(d.eras.len(), 14);
    }

    #[test]
    fn every_year_maps_to_the_era_that_contains_it() {
        let s = EraSchemes::builtin();
        for scheme in s.iter() {
            for year in 1850..2100 {
                let hits = scheme.eras.iter().filter(|e| e.contains(year)).count();
                assert_eq!(hits, 1, "{} year {year}", scheme.name);
                assert!(scheme.era_of(year).contains(year));
            }
        }
    }

    #[test]
    fn user_scheme_gaps_and_overlaps_are_rejected() {
        let gap = r#"[schemes.x]
eras = [{ name = "a", to = 1950 }, { name = "b", from = 1952 }]"#;
        let err = EraSchemes::parse(gap, "t").unwrap_err().to_string();
        assert!(err.contains("contiguous"), "{err}");
        let overlap = r#"[schemes.x]
eras = [{ name = "a", to = 1950 }, { name = "b", from = 1950 }]"#;
        assert!(EraSchemes::parse(overlap, "t").is_err());
        let middle_open = r#"[schemes.x]
eras = [{ name = "a", to = 1950 }, { name = "b", from = 1951 }, { name = "c", from = 1960 }]"#;
        assert!(EraSchemes::parse(middle_open, "t").is_err());
        let bad_toml = "[schemes.x\n";
        assert!(matches!(
            EraSchemes::parse(bad_toml, "t"),
            Err(ErasError::Parse { .. })
        ));
    }

    #[test]
    fn user_file_adds_and_replaces_schemes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eras.toml");
        std::fs::write(
            &path,
            r#"[schemes.silent]
label = "Silent vs sound"
eras = [{ name = "Silent", to = 1928 }, { name = "Sound", from = 1929 }]
"#,
        )
        .unwrap();
        let s = EraSchemes::with_user_file(&path).unwrap();
        assert_eq!(s.names(), vec!["decades", "hollywood", "silent"]);
        let silent = s.get("silent").unwrap();
        assert_eq!(silent.era_of(1927).name, "Silent");
        assert_eq!(silent.era_of(1929).name, "Sound");
        assert!(s.get("nope").unwrap_err().to_string().contains("hollywood"));
    }
}
