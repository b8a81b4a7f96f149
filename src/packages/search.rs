//! Ranked search over the catalogs and the servers' manifests. Every word of the query
//! must match the package somewhere: its name (exact 100, prefix 60, inside 40), a module
//! it provides (exact 50, prefix 30, inside 20), a label (exact 30, inside 15), its
//! category (20), or a word of its description (15, inside 8). Packages that only a
//! server knows are matched on their names. Ties go to the higher catalog priority, then
//! to the name.

use super::catalog::{Catalog, PackageInfo};
use super::index::ServerIndex;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

struct Candidate<'a> {
    name: &'a str,
    info: Option<(&'a PackageInfo, &'a str)>,
    versions: Vec<String>,
    servers: Vec<&'a str>,
}

fn score_text(term: &str, text: &str, exact: u32, prefix: u32, inside: u32) -> u32 {
    let t = text.to_ascii_lowercase();
    if t == term {
        exact
    } else if prefix > 0 && t.starts_with(term) {
        prefix
    } else if t.contains(term) {
        inside
    } else {
        0
    }
}

/// The best score `term` gets on `c`, and which field gave it.
fn score_term(term: &str, c: &Candidate<'_>) -> (u32, &'static str) {
    let mut best = (score_text(term, c.name, 100, 60, 40), "name");
    let mut consider = |s: u32, field: &'static str| {
        if s > best.0 {
            best = (s, field);
        }
    };
    if let Some((info, _)) = c.info {
        for m in &info.modules {
            consider(score_text(term, m, 50, 30, 20), "module");
        }
        for l in &info.labels {
            consider(score_text(term, l, 30, 0, 15), "label");
        }
        if let Some(cat) = &info.category {
            consider(score_text(term, cat, 20, 0, 0), "category");
        }
        if let Some(d) = &info.description {
            let lower = d.to_ascii_lowercase();
            let word = lower
                .split(|ch: char| !ch.is_ascii_alphanumeric() && ch != '_' && ch != '-')
                .any(|w| w == term);
            consider(
                if word {
                    15
                } else if lower.contains(term) {
                    8
                } else {
                    0
                },
                "description",
            );
        }
    }
    best
}

/// Searches; `limit` results at most (0: all).
pub fn search(
    query: &str,
    catalogs: &[Arc<Catalog>],
    indexes: &[ServerIndex],
    limit: usize,
) -> Vec<Value> {
    let terms: Vec<String> = query
        .split_whitespace()
        .map(|t| t.to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut candidates: BTreeMap<String, Candidate<'_>> = BTreeMap::new();
    for c in catalogs {
        for (name, info) in &c.packages {
            let e = candidates
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| Candidate {
                    name,
                    info: None,
                    versions: Vec::new(),
                    servers: Vec::new(),
                });
            e.info = Some((info, c.source.as_str()));
        }
    }
    for i in indexes {
        let Some(rocks) = &i.rocks else { continue };
        for (name, versions) in rocks.iter() {
            let e = candidates.entry(name.clone()).or_insert_with(|| Candidate {
                name,
                info: None,
                versions: Vec::new(),
                servers: Vec::new(),
            });
            e.versions.extend(versions.keys().cloned());
            e.servers.push(i.server.as_str());
        }
    }
    let mut hits: Vec<(u32, i64, Value)> = Vec::new();
    for (key, c) in candidates {
        let mut total = 0;
        let mut matched = Vec::new();
        let mut all = true;
        for t in &terms {
            let (s, field) = score_term(t, &c);
            if s == 0 {
                all = false;
                break;
            }
            total += s;
            if !matched.contains(&field) {
                matched.push(field);
            }
        }
        if !all || terms.is_empty() {
            continue;
        }
        let versions = super::version::sorted_desc(c.versions);
        let (info, source) = match c.info {
            Some((i, s)) => (Some(i), Some(s)),
            None => (None, None),
        };
        let priority = info.and_then(|i| i.priority).unwrap_or(0);
        let mut sources: Vec<String> = source.map(|s| format!("catalog:{s}")).into_iter().collect();
        sources.extend(c.servers.iter().map(|s| format!("server:{s}")));
        let version = versions
            .first()
            .cloned()
            .or_else(|| info.and_then(|i| i.version.clone()));
        hits.push((
            total,
            priority,
            json!({
                "name": key,
                "score": total,
                "matched": matched,
                "version": version,
                "versions": versions,
                "summary": info.and_then(|i| i.description.clone()),
                "category": info.and_then(|i| i.category.clone()),
                "labels": info.map(|i| i.labels.clone()).unwrap_or_default(),
                "modules": info.map(|i| i.modules.clone()).unwrap_or_default(),
                "dependencies": info.map(|i| i.dependencies.clone()).unwrap_or_default(),
                "priority": info.and_then(|i| i.priority),
                "sources": sources,
            }),
        ));
    }
    hits.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then_with(|| a.2["name"].as_str().cmp(&b.2["name"].as_str()))
    });
    let n = if limit == 0 {
        hits.len()
    } else {
        limit.min(hits.len())
    };
    hits.into_iter().take(n).map(|(_, _, v)| v).collect()
}
