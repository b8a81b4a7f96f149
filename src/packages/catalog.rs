//! Catalogs: JSON files that describe packages (category, description, priority,
//! dependencies, labels, modules) and profiles (named package lists). None is built into
//! the code: the original's six profiles are the data file `profiles.json` shipped with
//! the library, which catalogs extend (a profile of the same name replaces it) or replace
//! altogether (`"replace_profiles": true`).
//!
//! ```json
//! {"format": "bioxen-catalog-1",
//!  "packages": {"inspect": {"category": "debugging", "description": "Human-readable tables",
//!               "priority": 7, "labels": ["pretty"], "modules": ["inspect"],
//!               "dependencies": [], "version": "3.1.1-1"}},
//!  "profiles": {"science": {"description": "…", "packages": ["bio_compute >= 1.0"]}},
//!  "replace_profiles": false}
//! ```
//!
//! Without explicit catalogs, the JSON files in `<data dir>/catalogs/` are read.

use super::datadir;
use super::error::{PResult, PkgError};
use super::memo::Memo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The original's profiles, as data.
pub const BUILTIN_PROFILES: &str = include_str!("profiles.json");

pub const FORMAT: &str = "bioxen-catalog-1";

/// What a catalog says of one package.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageInfo {
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub modules: Vec<String>,
    #[serde(default)]
    pub version: Option<String>,
}

/// A profile: a named list of packages (`name` or `name constraint`) and flags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub luarocks_required: bool,
    #[serde(default)]
    pub development_tools: bool,
    #[serde(default)]
    pub networking: bool,
}

/// One catalog file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub packages: BTreeMap<String, PackageInfo>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    #[serde(default)]
    pub replace_profiles: bool,
    /// Where it was read from (not part of the file).
    #[serde(skip)]
    pub source: String,
}

impl Catalog {
    pub fn parse(text: &str, source: &str) -> PResult<Catalog> {
        let mut c: Catalog = super::env::from_json(text, &format!("catalog {source}"))?;
        if let Some(f) = &c.format {
            if f != FORMAT {
                return Err(PkgError::invalid(format!(
                    "catalog {source}: unknown format {f:?} (expected {FORMAT})"
                )));
            }
        }
        for name in c.packages.keys() {
            super::names::rock_name(name)
                .map_err(|e| PkgError::invalid(format!("catalog {source}: {}", e.message)))?;
        }
        for (name, p) in &c.profiles {
            super::names::env_name(name).map_err(|_| {
                PkgError::invalid(format!("catalog {source}: invalid profile name {name:?}"))
            })?;
            for item in &p.packages {
                super::version::Dependency::parse(item).map_err(|e| {
                    PkgError::invalid(format!("catalog {source}: profile {name}: {}", e.message))
                })?;
            }
        }
        c.source = source.to_string();
        Ok(c)
    }
}

static FILES: Memo<Catalog> = Memo::new();

/// Reads a catalog file (kept in memory while its size and mtime hold).
pub fn load(path: &Path) -> PResult<Arc<Catalog>> {
    let shown = path.display().to_string();
    FILES
        .get(path, |b| {
            Catalog::parse(&String::from_utf8_lossy(b), &shown)
        })?
        .ok_or_else(|| {
            PkgError::invalid(format!("no catalog file {shown}")).with("path", shown.clone())
        })
}

/// The catalogs to use: `paths`, or when none are given the JSON files in
/// `<data dir>/catalogs/`.
pub fn load_all(paths: &[String]) -> PResult<Vec<Arc<Catalog>>> {
    if !paths.is_empty() {
        return paths.iter().map(|p| load(Path::new(p))).collect();
    }
    let Ok(dir) = datadir::data_dir().map(|d| d.join("catalogs")) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(e) => e
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    files.sort();
    files.iter().map(|p| load(p)).collect()
}

/// The built-in profiles file, parsed.
pub fn builtin() -> Catalog {
    Catalog::parse(BUILTIN_PROFILES, "profiles.json").unwrap_or_default()
}

/// The profiles in effect: the built-in six, extended or replaced by the catalogs.
pub fn profiles(catalogs: &[Arc<Catalog>]) -> BTreeMap<String, Profile> {
    let mut out = if catalogs.iter().any(|c| c.replace_profiles) {
        BTreeMap::new()
    } else {
        builtin().profiles
    };
    for c in catalogs {
        if c.replace_profiles {
            out.clear();
        }
        for (k, v) in &c.profiles {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Every package the catalogs describe (a later catalog wins), with the catalog's name.
pub fn packages(catalogs: &[Arc<Catalog>]) -> BTreeMap<String, (PackageInfo, String)> {
    let mut out = BTreeMap::new();
    for c in catalogs {
        for (k, v) in &c.packages {
            out.insert(k.to_ascii_lowercase(), (v.clone(), c.source.clone()));
        }
    }
    out
}
