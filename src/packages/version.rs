//! Versions and constraints with luarocks' own rules (`luarocks/core/vers.lua` and
//! `queries.lua` of 3.8): `1.2.3-4` is the numbers 1, 2, 3 and revision 4; words weigh as
//! luarocks weighs them (`dev` and `scm` above every number, `rc` < `pre` < `beta` <
//! `alpha` below); a revision only counts when both sides have one. Constraints are
//! `op version` items separated by commas (`>= 1.0, < 2.0`), with the operators `==`
//! (also `=` or none), `~=` (also `!=`), `<`, `<=`, `>`, `>=` and `~>` (same leading
//! components).

use super::error::{PResult, PkgError};
use std::cmp::Ordering;

/// A parsed version; compares as luarocks compares.
#[derive(Clone, Debug)]
pub struct Version {
    pub text: String,
    parts: Vec<f64>,
    revision: Option<u64>,
}

fn delta(word: &str) -> f64 {
    match word {
        "dev" => 120000000.0,
        "scm" => 110000000.0,
        "cvs" => 100000000.0,
        "rc" => -1000.0,
        "pre" => -10000.0,
        "beta" => -100000.0,
        "alpha" => -1000000.0,
        w => w.as_bytes()[0] as f64 / 1000.0,
    }
}

impl Version {
    /// Parses as luarocks does; `None` for text it could not parse either.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let (mut v, revision) = match text.rsplit_once('-') {
            Some((m, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => {
                (m, Some(r.parse().ok()?))
            }
            _ => (text, None),
        };
        // luarocks' loop: a number goes to slot i (added, scaled down, to a word already
        // there) and moves on; a word sets slot i and stays; separators do not count.
        let mut parts: Vec<f64> = Vec::new();
        let mut i = 0;
        while !v.is_empty() {
            let digits = v.bytes().take_while(u8::is_ascii_digit).count();
            let token_len = if digits > 0 {
                let n: f64 = v[..digits].parse().ok()?;
                match parts.get_mut(i) {
                    Some(slot) => *slot += n / 100000.0,
                    None => parts.push(n),
                }
                i += 1;
                digits
            } else {
                let letters = v.bytes().take_while(u8::is_ascii_alphabetic).count();
                if letters == 0 {
                    return None;
                }
                let d = delta(&v[..letters]);
                match parts.get_mut(i) {
                    Some(slot) => *slot = d,
                    None => parts.push(d),
                }
                letters
            };
            let rest = &v[token_len..];
            let sep = rest
                .bytes()
                .take_while(|b| matches!(b, b'.' | b'-' | b'_'))
                .count();
            v = &rest[sep..];
        }
        Some(Version {
            text: text.to_string(),
            parts,
            revision,
        })
    }

    fn cmp_parts(&self, other: &Version) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        for i in 0..n {
            let a = self.parts.get(i).copied().unwrap_or(0.0);
            let b = other.parts.get(i).copied().unwrap_or(0.0);
            match a.partial_cmp(&b) {
                Some(Ordering::Equal) | None => {}
                Some(o) => return o,
            }
        }
        match (self.revision, other.revision) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => Ordering::Equal,
        }
    }

    /// `~>`: every component the constraint gives matches.
    fn partial_match(&self, requested: &Version) -> bool {
        for (i, r) in requested.parts.iter().enumerate() {
            if self.parts.get(i).copied().unwrap_or(0.0) != *r {
                return false;
            }
        }
        match requested.revision {
            Some(r) => self.revision == Some(r),
            None => true,
        }
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.parts.len() == other.parts.len() && self.cmp_parts(other) == Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp_parts(other))
    }
}

/// One `op version` item.
#[derive(Clone, Debug)]
pub struct Constraint {
    pub op: &'static str,
    pub version: Version,
}

/// A list of constraints (all must hold); empty means any version.
#[derive(Clone, Debug, Default)]
pub struct Constraints {
    pub items: Vec<Constraint>,
    /// The text as given (normalised whitespace), for messages.
    pub text: String,
}

impl Constraints {
    /// Parses `>= 1.0, < 2.0`. A bare version (`1.2`) means `== 1.2`.
    pub fn parse(text: &str) -> PResult<Constraints> {
        let bad = |why: &str| {
            PkgError::invalid(format!("invalid version constraint {text:?}: {why}"))
                .with("field", "constraint")
        };
        let mut items = Vec::new();
        if text.len() > 200 {
            return Err(bad("too long"));
        }
        if text.chars().any(|c| c.is_control()) {
            return Err(bad("it holds control characters"));
        }
        let mut rest = text.trim();
        while !rest.is_empty() {
            let op_len = rest
                .bytes()
                .take_while(|b| matches!(b, b'<' | b'>' | b'=' | b'~' | b'!'))
                .count();
            let op = match &rest[..op_len] {
                "" | "=" | "==" => "==",
                "~=" | "!=" => "~=",
                ">" => ">",
                "<" => "<",
                ">=" => ">=",
                "<=" => "<=",
                "~>" => "~>",
                other => return Err(bad(&format!("unknown operator '{other}'"))),
            };
            let after = rest[op_len..].trim_start();
            let vlen = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                .count();
            if vlen == 0 {
                return Err(bad("a version is missing after an operator"));
            }
            let vtext =
                super::names::version(&after[..vlen]).map_err(|_| bad("a version is not valid"))?;
            let version = Version::parse(vtext).ok_or_else(|| bad("a version is not valid"))?;
            items.push(Constraint { op, version });
            let tail = after[vlen..].trim_start();
            rest = match tail.strip_prefix(',') {
                Some(t) => t.trim_start(),
                None if tail.is_empty() => tail,
                None => return Err(bad("constraints are separated by commas")),
            };
        }
        let text = items
            .iter()
            .map(|c| format!("{} {}", c.op, c.version.text))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Constraints { items, text })
    }

    pub fn is_any(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether `v` meets every item.
    pub fn matches(&self, v: &Version) -> bool {
        self.items.iter().all(|c| match c.op {
            "==" => v == &c.version,
            "~=" => v != &c.version,
            ">" => v > &c.version,
            "<" => v < &c.version,
            ">=" => v >= &c.version,
            "<=" => v <= &c.version,
            "~>" => v.partial_match(&c.version),
            _ => false,
        })
    }

    /// When the constraint is one `==` item: its version.
    pub fn exact(&self) -> Option<&Version> {
        match self.items.as_slice() {
            [c] if c.op == "==" => Some(&c.version),
            _ => None,
        }
    }
}

/// A dependency as rockspecs write it: `name [constraints]`.
#[derive(Clone, Debug)]
pub struct Dependency {
    pub name: String,
    pub constraints: Constraints,
}

impl Dependency {
    pub fn parse(text: &str) -> PResult<Dependency> {
        let text = text.trim();
        let n = text
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            .count();
        let name = super::names::rock_name(&text[..n])?.to_ascii_lowercase();
        let constraints = Constraints::parse(&text[n..])?;
        Ok(Dependency { name, constraints })
    }

    /// `name op version, ...` (or just the name).
    pub fn text(&self) -> String {
        if self.constraints.is_any() {
            self.name.clone()
        } else {
            format!("{} {}", self.name, self.constraints.text)
        }
    }
}

/// The highest of `versions` that meets `c` (luarocks picks the highest match).
pub fn best<'a>(versions: impl IntoIterator<Item = &'a str>, c: &Constraints) -> Option<&'a str> {
    let mut best: Option<(&str, Version)> = None;
    for v in versions {
        let Some(p) = Version::parse(v) else { continue };
        if !c.matches(&p) {
            continue;
        }
        if best.as_ref().is_none_or(|(_, b)| p > *b) {
            best = Some((v, p));
        }
    }
    best.map(|(v, _)| v)
}

/// `versions` sorted from the highest down (as messages list them).
pub fn sorted_desc(mut versions: Vec<String>) -> Vec<String> {
    versions.sort_by(|a, b| match (Version::parse(a), Version::parse(b)) {
        (Some(x), Some(y)) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
        _ => b.cmp(a),
    });
    versions.dedup();
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn ordering_as_luarocks() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("2.0-1") > v("1.99-9"));
        assert!(v("1.0-2") > v("1.0-1"));
        assert!(v("1.0") == v("1.0-3"));
        assert!(v("scm-1") > v("99.0-1"));
        assert!(v("dev-1") > v("scm-1"));
        assert!(v("1.0rc1") < v("1.0"));
        assert!(v("1.0beta") < v("1.0rc1"));
        assert!(v("1.0.0") != v("1.0"));
        assert!(v("1.0.0") >= v("1.0") && v("1.0.0") <= v("1.0"));
    }

    #[test]
    fn constraints() {
        let c = Constraints::parse(">= 1.0, < 2.0").unwrap();
        assert!(c.matches(&v("1.5-1")));
        assert!(!c.matches(&v("2.0-1")));
        assert!(Constraints::parse("~> 1.2").unwrap().matches(&v("1.2.9-1")));
        assert!(!Constraints::parse("~> 1.2").unwrap().matches(&v("1.3-1")));
        assert!(Constraints::parse("1.0").unwrap().matches(&v("1.0-1")));
        assert!(Constraints::parse("== 1.0-2").unwrap().exact().is_some());
        assert!(Constraints::parse(">= 1.0; rm -rf ~").is_err());
        assert!(Constraints::parse("=> 1").is_err());
        assert_eq!(
            best(
                ["1.0-1", "2.0-1", "1.5-1"],
                &Constraints::parse("< 2").unwrap()
            ),
            Some("1.5-1")
        );
        let d = Dependency::parse("base >= 1.0, < 2.0").unwrap();
        assert_eq!(d.name, "base");
        assert_eq!(d.text(), "base >= 1.0, < 2.0");
    }
}
