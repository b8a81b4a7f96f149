//! Lua data files (luarocks manifests, `rock_manifest`, rockspecs) as values: read by
//! running the file in an empty Lua state (no library at all, text chunks only, bounded in
//! memory and instructions, so a hostile file can neither touch anything nor hang), and
//! written back exactly as luarocks' `persist.save_from_table` writes them (sorted keys,
//! three-space indents, `%q` strings), so a manifest this layer updates is byte for byte
//! what luarocks would have written.

use super::error::{PResult, PkgError};
use mlua::chunk::ChunkMode;
use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Value as LV, VmState};
use std::collections::BTreeMap;

/// A key of a Lua table: numbers sort before strings (luarocks' `default_sort`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Int(i64),
    Str(String),
}

/// A Lua data value.
#[derive(Clone, Debug, PartialEq)]
pub enum LuaVal {
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Table(BTreeMap<Key, LuaVal>),
}

/// Largest data file read (a big server manifest is a few MiB).
pub const MAX_FILE: usize = 64 << 20;

impl LuaVal {
    pub fn table() -> LuaVal {
        LuaVal::Table(BTreeMap::new())
    }

    pub fn str(s: impl Into<String>) -> LuaVal {
        LuaVal::Str(s.into())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            LuaVal::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&BTreeMap<Key, LuaVal>> {
        match self {
            LuaVal::Table(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_table_mut(&mut self) -> Option<&mut BTreeMap<Key, LuaVal>> {
        match self {
            LuaVal::Table(t) => Some(t),
            _ => None,
        }
    }

    /// `self[k]` for a string key.
    pub fn get(&self, k: &str) -> Option<&LuaVal> {
        self.as_table()?.get(&Key::Str(k.to_string()))
    }

    /// `self[k]` for a string key, made a table when absent or not a table.
    pub fn entry(&mut self, k: &str) -> &mut LuaVal {
        if !matches!(self, LuaVal::Table(_)) {
            *self = LuaVal::table();
        }
        let LuaVal::Table(t) = self else {
            unreachable!("made a table above")
        };
        let slot = t
            .entry(Key::Str(k.to_string()))
            .or_insert_with(LuaVal::table);
        if !matches!(slot, LuaVal::Table(_)) {
            *slot = LuaVal::table();
        }
        slot
    }

    pub fn set(&mut self, k: &str, v: LuaVal) {
        if let Some(t) = self.as_table_mut() {
            t.insert(Key::Str(k.to_string()), v);
        }
    }

    pub fn remove(&mut self, k: &str) -> Option<LuaVal> {
        self.as_table_mut()?.remove(&Key::Str(k.to_string()))
    }

    /// The string-keyed entries.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &LuaVal)> {
        self.as_table().into_iter().flat_map(|t| {
            t.iter().filter_map(|(k, v)| match k {
                Key::Str(s) => Some((s.as_str(), v)),
                Key::Int(_) => None,
            })
        })
    }

    /// The array part `[1..n]`.
    pub fn array(&self) -> Vec<&LuaVal> {
        let mut out = Vec::new();
        if let Some(t) = self.as_table() {
            let mut i = 1;
            while let Some(v) = t.get(&Key::Int(i)) {
                out.push(v);
                i += 1;
            }
        }
        out
    }

    pub fn from_array(items: Vec<LuaVal>) -> LuaVal {
        LuaVal::Table(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Key::Int(i as i64 + 1), v))
                .collect(),
        )
    }
}

fn convert(v: &LV, depth: usize) -> PResult<Option<LuaVal>> {
    if depth > 64 {
        return Err(PkgError::invalid("a Lua data file nests tables too deeply"));
    }
    Ok(Some(match v {
        LV::Boolean(b) => LuaVal::Bool(*b),
        LV::Integer(i) => LuaVal::Int(*i),
        LV::Number(n) => LuaVal::Num(*n),
        LV::String(s) => LuaVal::Str(s.to_string_lossy()),
        LV::Table(t) => {
            let mut m = BTreeMap::new();
            for pair in t.pairs::<LV, LV>() {
                let (k, v) = pair.map_err(|e| PkgError::invalid(format!("bad Lua data: {e}")))?;
                let key = match k {
                    LV::Integer(i) => Key::Int(i),
                    LV::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => Key::Int(n as i64),
                    LV::String(s) => Key::Str(s.to_string_lossy()),
                    _ => continue,
                };
                if let Some(v) = convert(&v, depth + 1)? {
                    m.insert(key, v);
                }
            }
            LuaVal::Table(m)
        }
        _ => return Ok(None),
    }))
}

/// Runs `text` (a Lua data file called `name`) in an empty state and returns the globals
/// it set, as a table. `return {...}` files give their returned table instead.
pub fn load(text: &[u8], name: &str) -> PResult<LuaVal> {
    if text.len() > MAX_FILE {
        return Err(PkgError::invalid(format!(
            "{name} is larger than {MAX_FILE} bytes"
        )));
    }
    let bad =
        |e: mlua::Error| PkgError::invalid(format!("{name} is not a valid Lua data file: {e}"));
    let lua = Lua::new_with(StdLib::NONE, LuaOptions::new()).map_err(bad)?;
    lua.set_memory_limit(256 << 20).map_err(bad)?;
    // A data file is a few table constructors: 20 million instructions is far past any.
    let budget = std::cell::Cell::new(0u32);
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(100_000),
        move |_, _| {
            budget.set(budget.get() + 1);
            if budget.get() > 200 {
                Err(mlua::Error::runtime(
                    "the file runs too long for a data file",
                ))
            } else {
                Ok(VmState::Continue)
            }
        },
    )
    .map_err(bad)?;
    let env = lua.create_table().map_err(bad)?;
    let ret: LV = lua
        .load(text)
        .set_name(format!("={name}"))
        .set_mode(ChunkMode::Text)
        .set_environment(env.clone())
        .eval()
        .map_err(bad)?;
    let v = match ret {
        LV::Table(_) => ret,
        _ => LV::Table(env),
    };
    Ok(convert(&v, 0)?.unwrap_or_else(LuaVal::table))
}

/// Reads and loads the data file at `path`.
pub fn load_file(path: &std::path::Path) -> PResult<LuaVal> {
    let text = std::fs::read(path).map_err(|e| PkgError::io("cannot read", path, &e))?;
    load(&text, &path.display().to_string())
}

fn plain_key(k: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
        "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
    ];
    let b = k.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && !KEYWORDS.contains(&k)
}

/// `s` as a Lua string literal (`%q`), for generated Lua files.
pub fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quoted(&mut out, s);
    out
}

/// `string.format("%q", s)` as Lua 5.4 writes it.
fn quoted(out: &mut String, s: &str) {
    out.push('"');
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\\n"),
            b'\r' => out.push_str("\\r"),
            0 => {
                if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    out.push_str("\\000")
                } else {
                    out.push_str("\\0")
                }
            }
            c if c < 0x20 || c == 0x7f => {
                if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    out.push_str(&format!("\\{c:03}"))
                } else {
                    out.push_str(&format!("\\{c}"))
                }
            }
            _ => {
                // Copy a whole UTF-8 sequence (the input is a &str).
                let len = s[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&s[i..i + len]);
                i += len;
                continue;
            }
        }
        i += 1;
    }
    out.push('"');
}

fn write_value(out: &mut String, v: &LuaVal, level: usize) {
    match v {
        LuaVal::Table(t) => write_table(out, t, level + 1),
        LuaVal::Str(s) if s.contains(['\r', '\n']) => {
            let mut eq = 0;
            loop {
                let close = format!("]{}]", "=".repeat(eq));
                if !format!("{s}]").contains(&close) {
                    break;
                }
                eq += 1;
            }
            let e = "=".repeat(eq);
            out.push_str(&format!("[{e}[\n{s}]{e}]"));
        }
        LuaVal::Str(s) => quoted(out, s),
        LuaVal::Int(i) => out.push_str(&i.to_string()),
        LuaVal::Num(n) => out.push_str(&lua_number(*n)),
        LuaVal::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

/// `tostring(n)` of a Lua 5.4 float (`%.14g`, with `.0` added to integral values).
fn lua_number(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let mut s = format_g14(n);
    if !s.contains(['.', 'e', 'n', 'i']) {
        s.push_str(".0");
    }
    s
}

/// C's `%.14g`.
fn format_g14(n: f64) -> String {
    if n == 0.0 {
        return if n.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let exp = n.abs().log10().floor() as i32;
    if (-4..14).contains(&exp) {
        let decimals = (13 - exp).max(0) as usize;
        let s = format!("{n:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        s
    } else {
        let s = format!("{n:.13e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.')
        } else {
            m
        };
        let e: i32 = e.parse().unwrap_or(0);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    }
}

fn write_table(out: &mut String, t: &BTreeMap<Key, LuaVal>, level: usize) {
    out.push('{');
    let mut sep = "\n";
    let mut indent = true;
    let mut i = 1;
    for (k, v) in t {
        out.push_str(sep);
        if indent {
            for _ in 0..level {
                out.push_str("   ");
            }
        }
        match k {
            Key::Int(n) if *n == i => i += 1,
            Key::Int(n) => out.push_str(&format!("[{n}] = ")),
            Key::Str(s) if plain_key(s) => {
                out.push_str(s);
                out.push_str(" = ");
            }
            Key::Str(s) => {
                out.push('[');
                quoted(out, s);
                out.push_str("] = ");
            }
        }
        write_value(out, v, level);
        if matches!(v, LuaVal::Int(_) | LuaVal::Num(_)) {
            sep = ", ";
            indent = false;
        } else {
            sep = ",\n";
            indent = true;
        }
    }
    if sep != "\n" {
        out.push('\n');
        for _ in 0..level.saturating_sub(1) {
            out.push_str("   ");
        }
    }
    out.push('}');
}

/// The top-level table as assignments (`key = value` lines), as luarocks saves a manifest.
/// Keys that are not plain identifiers are skipped (luarocks refuses them).
pub fn save_assignments(v: &LuaVal) -> String {
    let mut out = String::new();
    for (k, v) in v.pairs() {
        if !plain_key(k) {
            continue;
        }
        out.push_str(k);
        out.push_str(" = ");
        write_value(&mut out, v, 0);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_format() {
        let text = "commands = {}\ndependencies = {\n   foo = {\n      [\"1.0-1\"] = {\n         {\n            constraints = {\n               {\n                  op = \">=\",\n                  version = {\n                     5, 1, string = \"5.1\"\n                  }\n               }\n            },\n            name = \"lua\"\n         }\n      }\n   }\n}\nmodules = {\n   foo = {\n      \"foo/1.0-1\"\n   }\n}\n";
        let v = load(text.as_bytes(), "m").unwrap();
        assert_eq!(save_assignments(&v), text);
    }

    #[test]
    fn hostile_files_are_bounded() {
        assert!(load(b"while true do end", "loop").is_err());
        assert!(load(b"x = io.open('/etc/passwd')", "io").is_err());
        assert!(load(b"x = require('os')", "req").is_err());
        assert!(load(b"\x1bLua", "binary").is_err());
        let s = load(b"local t = {} for i = 1, 10 do t[i] = i end x = t", "ok").unwrap();
        assert_eq!(s.get("x").unwrap().array().len(), 10);
    }

    #[test]
    fn numbers() {
        assert_eq!(lua_number(1.5), "1.5");
        assert_eq!(lua_number(2.0), "2.0");
        assert_eq!(lua_number(0.1), "0.1");
        assert_eq!(lua_number(1e20), "1e+20");
    }
}
