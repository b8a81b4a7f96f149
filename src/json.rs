//! Strict parsing of the JSON callers hand the library (VM and manager options, arguments,
//! network and template options, job maps): one parser for every entry point. It builds
//! the same `serde_json::Value` as `serde_json::from_str`, but refuses an object that
//! names a key twice, at any depth (serde_json keeps the last one, so
//! `{"sandbox":"default","sandbox":"trusted"}` would quietly mean "trusted"). Keys are
//! compared after unescaping: `"a"` and `"\u0061"` are the same key.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// `text` as one JSON value; an error for invalid JSON, trailing text or a duplicate key.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Builds a `Value`, failing on a duplicate object key.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(Strict)? {
            v.push(item);
        }
        Ok(Value::Array(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if m.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {key:?} (a key may appear once in an object)"
                )));
            }
            let value = map.next_value_seed(Strict)?;
            m.insert(key, value);
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use serde_json::json;

    #[test]
    fn values_are_those_of_serde_json() {
        for text in [
            r#"{"a": [1, -2, 3.5, 18446744073709551615, -9223372036854775808], "b": null}"#,
            r#"[true, false, "x\u0000y", {"": {}}, [], 1e300, -0.0]"#,
            "  42 ",
        ] {
            let want: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for text in [
            r#"{"sandbox":"default","sandbox":"trusted"}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"[{"x":{"y":[{"k":1,"k":1}]}}]"#,
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{text}: {e}");
        }
        assert_eq!(
            parse(r#"{"a":{"a":1},"b":{"a":2}}"#).unwrap(),
            json!({"a":{"a":1},"b":{"a":2}})
        );
    }

    #[test]
    fn trailing_text_and_deep_nesting_are_errors_not_crashes() {
        assert!(parse("{} x").is_err());
        assert!(parse(&"[".repeat(100_000)).is_err());
    }
}
