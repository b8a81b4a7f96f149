//! What the servers of an environment have: their manifests (`manifest-5.x`, else
//! `manifest`), read directly for directory and `http://` servers, as
//! `{rock name -> versions with their architectures}`. Used to choose the version an
//! install asks luarocks for, to explain conflicts with the versions that exist, and by
//! `search`. Directory manifests are kept in memory while their size and mtime hold.

use super::error::PResult;
use super::luaval::{self, LuaVal};
use super::memo::Memo;
use super::servers::Server;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A server's rocks: name → version → architectures (`src`, `rockspec`, `all`, ...).
pub type Rocks = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// One server's manifest, or why it could not be read.
#[derive(Clone, Debug)]
pub struct ServerIndex {
    pub server: String,
    pub rocks: Option<Arc<Rocks>>,
    pub error: Option<String>,
}

fn parse(v: &LuaVal) -> Rocks {
    let mut out = Rocks::new();
    if let Some(repo) = v.get("repository") {
        for (name, versions) in repo.pairs() {
            let per = out.entry(name.to_ascii_lowercase()).or_default();
            for (ver, entries) in versions.pairs() {
                let arches = entries
                    .array()
                    .into_iter()
                    .filter_map(|e| e.get("arch").and_then(LuaVal::as_str).map(String::from))
                    .collect();
                per.insert(ver.to_string(), arches);
            }
        }
    }
    out
}

static DIR_MANIFESTS: Memo<Rocks> = Memo::new();

fn read_dir_server(dir: &std::path::Path, lua: &str) -> PResult<Option<Arc<Rocks>>> {
    for name in [format!("manifest-{lua}"), "manifest".to_string()] {
        let p = dir.join(&name);
        let shown = p.display().to_string();
        if let Some(r) = DIR_MANIFESTS.get(&p, |b| Ok(parse(&luaval::load(b, &shown)?)))? {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

fn read_http_server(url: &str, lua: &str, timeout: Duration) -> PResult<Option<Arc<Rocks>>> {
    for name in [format!("manifest-{lua}"), "manifest".to_string()] {
        if let Some(body) = super::http::get(&format!("{url}/{name}"), timeout)? {
            let v = luaval::load(&body, &format!("{url}/{name}"))?;
            return Ok(Some(Arc::new(parse(&v))));
        }
    }
    Ok(None)
}

/// Reads one server's manifest for Lua `lua`.
pub fn read(server: &Server, lua: &str, timeout: Duration) -> ServerIndex {
    let shown = server.luarocks_form();
    let r = match server {
        Server::Dir(d) => read_dir_server(d, lua),
        Server::Url(u) if u.starts_with("http://") => read_http_server(u, lua, timeout),
        Server::Url(_) => {
            return ServerIndex {
                server: shown,
                rocks: None,
                error: Some("https:// manifests are read by luarocks only".into()),
            }
        }
    };
    match r {
        Ok(Some(rocks)) => ServerIndex {
            server: shown,
            rocks: Some(rocks),
            error: None,
        },
        Ok(None) => ServerIndex {
            server: shown,
            rocks: None,
            error: Some(
                "no manifest found (is it a rocks server? run luarocks-admin make-manifest there)"
                    .into(),
            ),
        },
        Err(e) => ServerIndex {
            server: shown,
            rocks: None,
            error: Some(e.message),
        },
    }
}

/// Every server's index.
pub fn read_all(servers: &[Server], lua: &str, timeout: Duration) -> Vec<ServerIndex> {
    servers.iter().map(|s| read(s, lua, timeout)).collect()
}

/// The versions of `name` the servers have (highest first), and whether every server
/// could be read (when not, absence proves nothing).
pub fn versions_of(indexes: &[ServerIndex], name: &str) -> (Vec<String>, bool) {
    let mut all = Vec::new();
    let mut complete = true;
    for i in indexes {
        match &i.rocks {
            Some(r) => {
                if let Some(v) = r.get(&name.to_ascii_lowercase()) {
                    all.extend(v.keys().cloned());
                }
            }
            None => complete = false,
        }
    }
    (super::version::sorted_desc(all), complete)
}

/// Names on the servers close to `name` (for "did you mean").
pub fn similar(indexes: &[ServerIndex], name: &str) -> Vec<String> {
    let name = name.to_ascii_lowercase();
    let mut out: Vec<String> = indexes
        .iter()
        .filter_map(|i| i.rocks.as_ref())
        .flat_map(|r| r.keys())
        .filter(|k| k.contains(&name) || name.contains(k.as_str()) || edit_distance(k, &name) <= 2)
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out.truncate(5);
    out
}

/// Levenshtein distance (short names only).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
