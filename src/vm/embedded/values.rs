//! Lua values to and from `serde_json::Value` (serde_json does all the JSON text work).
//!
//! Lua to JSON: nil is null; booleans, integers and finite floats are themselves;
//! strings are JSON strings (invalid UTF-8 is replaced with U+FFFD); a table whose keys are
//! exactly 1..n is an array, any other table an object with its keys as strings (an empty
//! table is `{}`); what JSON cannot hold (functions, userdata, threads, NaN and the
//! infinities, a table met again on its own path, tables nested deeper than
//! `MAX_DEPTH`) becomes its `tostring` text.

use mlua::{Lua, MultiValue, Table, Value};
use serde_json::{Map, Number, Value as Json};

/// Deepest nesting converted; deeper tables become their `tostring` text.
pub const MAX_DEPTH: usize = 64;

/// The returned values as a JSON array.
pub fn values_to_json(values: &MultiValue) -> Json {
    let mut path = Vec::new();
    Json::Array(values.iter().map(|v| to_json(v, &mut path)).collect())
}

fn to_json(v: &Value, path: &mut Vec<*const std::ffi::c_void>) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => Json::from(*i),
        Value::Number(n) => Number::from_f64(*n)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(float_text(*n))),
        Value::String(s) => Json::String(s.to_string_lossy()),
        Value::Table(t) => table_to_json(t, path),
        other => Json::String(tostring(other)),
    }
}

fn table_to_json(t: &Table, path: &mut Vec<*const std::ffi::c_void>) -> Json {
    let p = t.to_pointer();
    if path.len() >= MAX_DEPTH || path.contains(&p) {
        return Json::String(tostring(&Value::Table(t.clone())));
    }
    path.push(p);
    let n = t.raw_len();
    let mut pairs = 0usize;
    let mut is_array = true;
    for pair in t.pairs::<Value, Value>() {
        let Ok((k, _)) = pair else { continue };
        pairs += 1;
        if !matches!(k, Value::Integer(i) if i >= 1 && (i as usize) <= n) {
            is_array = false;
        }
    }
    let out = if is_array && pairs == n && n > 0 {
        Json::Array(
            (1..=n)
                .map(|i| to_json(&t.raw_get::<Value>(i).unwrap_or(Value::Nil), path))
                .collect(),
        )
    } else {
        let mut m = Map::new();
        for (k, v) in t.pairs::<Value, Value>().flatten() {
            m.insert(key_text(&k), to_json(&v, path));
        }
        Json::Object(m)
    };
    path.pop();
    out
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.to_string_lossy(),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => float_text(*n),
        other => tostring(other),
    }
}

/// `tostring` of a value other than a string (no metamethod is called).
fn tostring(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => float_text(*n),
        other => format!("{}: {:p}", other.type_name(), other.to_pointer()),
    }
}

/// A float as Lua 5.4 prints it (`%.14g`, with `.0` added to integral values).
pub fn float_text(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf" } else { "-inf" }.into();
    }
    let s = format_g14(n);
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        format!("{s}.0")
    } else {
        s
    }
}

/// C's `%.14g`.
fn format_g14(n: f64) -> String {
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let exp = n.abs().log10().floor() as i32;
    let sci = format!("{:.13e}", n);
    // Recompute the exponent from the rounded scientific form (rounding may carry).
    let (mant, e) = sci.split_once('e').unwrap_or((&sci, "0"));
    let e: i32 = e.parse().unwrap_or(exp);
    if !(-4..14).contains(&e) {
        let mant = trim_zeros(mant);
        let sign = if e < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", e.abs())
    } else {
        let decimals = (13 - e).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, n)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A JSON value as a Lua value (arrays and objects become tables, null becomes nil).
pub fn json_to_lua(lua: &Lua, v: &Json) -> mlua::Result<Value> {
    Ok(match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(a) => {
            let t = lua.create_table_with_capacity(a.len(), 0)?;
            for (i, x) in a.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua(lua, x)?)?;
            }
            Value::Table(t)
        }
        Json::Object(o) => {
            let t = lua.create_table_with_capacity(0, o.len())?;
            for (k, x) in o {
                t.raw_set(k.as_str(), json_to_lua(lua, x)?)?;
            }
            Value::Table(t)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::float_text;

    #[test]
    fn floats_print_as_lua_does() {
        for (n, s) in [
            (4.0, "4.0"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333333333333"),
            (1e15, "1e+15"),
            (123456789012345.0, "1.2345678901234e+14"),
            (1e-5, "1e-05"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(float_text(n), s, "{n}");
        }
    }
}
