//! What a rock name, a version, a version constraint, an environment name and a module
//! name may be. Everything a caller names is checked here before it reaches luarocks, a
//! file name or a remote command line, so a name can never be read as an option, a path,
//! a URL or shell syntax (luarocks itself treats `x.rockspec`, `x.rock`, `a/b` and
//! `http://...` as files or URLs).

use super::error::{PResult, PkgError};

/// Longest rock, environment and module name accepted.
pub const MAX_NAME: usize = 100;

fn hostile(what: &str, value: &str, rule: &str) -> PkgError {
    PkgError::invalid(format!("invalid {what} {value:?}: {rule}"))
        .with("field", what.replace(' ', "_"))
}

/// A rock name: a letter or digit, then letters, digits, `_`, `-` and `.`; at most 100
/// characters; not ending in `.rock` or `.rockspec`; no `..`.
pub fn rock_name(name: &str) -> PResult<&str> {
    let rule = "a rock name is a letter or digit followed by letters, digits, '_', '-' or '.' (at most 100)";
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.contains("..");
    if !ok {
        return Err(hostile("rock name", name, rule));
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".rock") || lower.ends_with(".rockspec") || lower.ends_with(".lua") {
        return Err(hostile(
            "rock name",
            name,
            "a name ending in .rock, .rockspec or .lua would be read as a file",
        ));
    }
    Ok(name)
}

/// A version as luarocks writes it: `1.2.3`, `1.2.3-1`, `scm-1`, `dev-1`, `2.0rc1-2`:
/// letters, digits and `.`, then optionally `-` and a revision number.
pub fn version(v: &str) -> PResult<&str> {
    let (main, rev) = match v.rsplit_once('-') {
        Some((m, r)) => (m, Some(r)),
        None => (v, None),
    };
    let ok = !main.is_empty()
        && v.len() <= 64
        && main.as_bytes()[0].is_ascii_alphanumeric()
        && main
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !main.ends_with('-')
        && rev
            .is_none_or(|r| !r.is_empty() && r.len() <= 9 && r.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(v)
    } else {
        Err(hostile(
            "version",
            v,
            "a version is letters, digits and '.', optionally followed by '-' and a revision number (e.g. 1.2.0-1)",
        ))
    }
}

/// An environment name (a directory under the data directory's `envs/`).
pub fn env_name(name: &str) -> PResult<&str> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.contains("..");
    if ok {
        Ok(name)
    } else {
        Err(hostile(
            "environment name",
            name,
            "a name is a letter or digit followed by letters, digits, '_', '-' or '.' (at most 64); give a path (with a '/') for a directory elsewhere",
        ))
    }
}

/// A Lua module name as `require` takes it: identifiers (letters, digits, `_`, `-`)
/// separated by single dots.
pub fn module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME * 2
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        })
}

/// A Lua version an environment may be for.
pub fn lua_version(v: &str) -> PResult<&str> {
    match v {
        "5.1" | "5.2" | "5.3" | "5.4" => Ok(v),
        other => Err(hostile(
            "Lua version",
            other,
            "supported: 5.1, 5.2, 5.3, 5.4",
        )),
    }
}

/// Text that is safe inside a generated luarocks configuration or lockfile: no control
/// characters and no NUL.
pub fn plain_text<'a>(what: &str, s: &'a str) -> PResult<&'a str> {
    if s.is_empty() || s.chars().any(|c| c.is_control()) {
        return Err(hostile(
            what,
            s,
            "it must be non-empty and hold no control characters",
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "inspect",
            "lua-cjson",
            "bio_compute",
            "LuaSocket",
            "lua5.1-compat",
            "a",
        ] {
            assert!(rock_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "x; rm -rf ~",
            "foo'); os.exit(1) --",
            "../x",
            "a/b",
            "/etc/passwd",
            "http://h/x",
            "-x",
            "--server=x",
            ".hidden",
            "x.rockspec",
            "x.src.rock",
            "a..b",
            "a b",
            "ä",
            &"x".repeat(101),
        ] {
            assert!(rock_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions() {
        for good in [
            "1.0",
            "1.0-1",
            "scm-1",
            "dev-1",
            "2.0rc1-2",
            "3.1.1-1",
            "1_0-1",
            "0.9-beta-1",
        ] {
            assert!(version(good).is_ok(), "{good}");
        }
        for bad in [
            "", "-1", "1.0-", "1.0-x", ">=1.0", "1 0", "1.0;x", "$(id)", "1.0-1-2x", "1.0--1",
        ] {
            assert!(version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modules() {
        assert!(module_name("pl.path"));
        assert!(module_name("socket.core"));
        assert!(!module_name("../x"));
        assert!(!module_name("a..b"));
        assert!(!module_name("a/b"));
        assert!(!module_name(""));
    }
}
