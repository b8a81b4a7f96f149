//! Rock servers an environment installs from. Only these are ever used (the generated
//! luarocks configuration lists them as its only `rocks_servers`, and a single server is
//! also passed as `--only-server`): a local directory (absolute path), `file:///dir`, or
//! `http://` / `https://` URLs. Nothing falls back to a public server.

use super::error::{PResult, PkgError};
use std::path::PathBuf;

/// One validated server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Server {
    /// A directory on the machine that runs luarocks (given as a path or `file://`).
    Dir(PathBuf),
    /// An `http://` or `https://` URL (no trailing slash).
    Url(String),
}

impl Server {
    /// Validates `s`. Paths must be absolute; URLs may not hold whitespace, quotes,
    /// backslashes or control characters.
    pub fn parse(s: &str) -> PResult<Server> {
        let bad = |why: &str| {
            PkgError::invalid(format!("invalid rocks server {s:?}: {why}")).with("field", "servers")
        };
        if s.is_empty() || s.len() > 1024 {
            return Err(bad("it must be 1 to 1024 characters"));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(bad("it holds control characters"));
        }
        if let Some(p) = s.strip_prefix("file://") {
            if !p.starts_with('/') {
                return Err(bad("a file:// URL needs an absolute path (file:///dir)"));
            }
            let p = p.trim_end_matches('/');
            return Ok(Server::Dir(PathBuf::from(if p.is_empty() {
                "/"
            } else {
                p
            })));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            let rest = s.split_once("://").map_or("", |(_, r)| r);
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if host.is_empty() {
                return Err(bad("the URL has no host"));
            }
            if s.chars()
                .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\' | '`' | '<' | '>'))
            {
                return Err(bad(
                    "a URL may not hold whitespace, quotes, backslashes or angle brackets",
                ));
            }
            return Ok(Server::Url(s.trim_end_matches('/').to_string()));
        }
        if s.contains("://") {
            return Err(bad(
                "only local directories, file://, http:// and https:// servers are supported",
            ));
        }
        if !s.starts_with('/') {
            return Err(bad("a directory server must be an absolute path"));
        }
        Ok(Server::Dir(PathBuf::from(s)))
    }

    /// The form luarocks is given (a directory path or the URL).
    pub fn luarocks_form(&self) -> String {
        match self {
            Server::Dir(p) => p.display().to_string(),
            Server::Url(u) => u.clone(),
        }
    }
}

/// Validates a list of servers (at least one is needed to install anything).
pub fn parse_list(items: &[String]) -> PResult<Vec<Server>> {
    if items.len() > 32 {
        return Err(PkgError::invalid("at most 32 rocks servers").with("field", "servers"));
    }
    items.iter().map(|s| Server::parse(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            Server::parse("/srv/rocks").unwrap(),
            Server::Dir("/srv/rocks".into())
        );
        assert_eq!(
            Server::parse("file:///srv/rocks/").unwrap(),
            Server::Dir("/srv/rocks".into())
        );
        assert_eq!(
            Server::parse("http://127.0.0.1:8080/").unwrap(),
            Server::Url("http://127.0.0.1:8080".into())
        );
        for bad in [
            "rocks",
            "./rocks",
            "ftp://x/y",
            "file://rel",
            "http://",
            "http://h/a b",
            "http://h/'x'",
            "/a\nb",
            "",
        ] {
            assert!(Server::parse(bad).is_err(), "{bad:?}");
        }
    }
}
