//! A small XML-RPC codec: enough of XML for XAPI's compact XML-RPC (the fallback
//! transport) and for `task.result`, which XAPI hands out as an XML-RPC `<value>` text
//! even over JSON-RPC.
//!
//! Values map onto JSON: `string` and bare text to strings, `int`/`i4`/`i8` to integers,
//! `double` to numbers (non-finite ones to the strings `Infinity`, `-Infinity`, `NaN`),
//! `boolean` to booleans, `dateTime.iso8601` to its text, `array` to arrays, `struct` to
//! objects, `nil` to null.

use serde_json::{Map, Number, Value};

/// One piece of an XML text.
#[derive(Debug, PartialEq)]
enum Tok {
    Open(String),
    Close(String),
    /// `<x/>`.
    Empty(String),
    Text(String),
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find(';')
            .ok_or_else(|| "an unterminated entity".to_string())?;
        let ent = &rest[i + 1..i + end];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x").or(ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("an unknown entity &{ent};"))?
            }
        };
        out.push(c);
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Escapes text for an XML element.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn tokens(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('<') {
            Some(0) => {
                if let Some(r) = rest.strip_prefix("<?") {
                    let end = r.find("?>").ok_or("an unterminated declaration")?;
                    rest = &r[end + 2..];
                    continue;
                }
                if let Some(r) = rest.strip_prefix("<!--") {
                    let end = r.find("-->").ok_or("an unterminated comment")?;
                    rest = &r[end + 3..];
                    continue;
                }
                let end = rest.find('>').ok_or("an unterminated tag")?;
                let inner = &rest[1..end];
                rest = &rest[end + 1..];
                if let Some(name) = inner.strip_prefix('/') {
                    out.push(Tok::Close(name.trim().to_string()));
                } else if let Some(name) = inner.strip_suffix('/') {
                    let name = name.split_whitespace().next().unwrap_or("");
                    out.push(Tok::Empty(name.to_string()));
                } else {
                    let name = inner.split_whitespace().next().unwrap_or("");
                    out.push(Tok::Open(name.to_string()));
                }
            }
            Some(i) => {
                out.push(Tok::Text(unescape(&rest[..i])?));
                rest = &rest[i..];
            }
            None => {
                out.push(Tok::Text(unescape(rest)?));
                rest = "";
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn skip_space(&mut self) {
        while let Some(Tok::Text(t)) = self.toks.get(self.pos) {
            if !t.trim().is_empty() {
                break;
            }
            self.pos += 1;
        }
    }

    fn open(&mut self, name: &str) -> Result<bool, String> {
        self.skip_space();
        match self.toks.get(self.pos) {
            Some(Tok::Open(n)) if n == name => {
                self.pos += 1;
                Ok(true)
            }
            Some(Tok::Empty(n)) if n == name => {
                self.pos += 1;
                Ok(false)
            }
            other => Err(format!("expected <{name}>, found {other:?}")),
        }
    }

    fn close(&mut self, name: &str) -> Result<(), String> {
        self.skip_space();
        match self.toks.get(self.pos) {
            Some(Tok::Close(n)) if n == name => {
                self.pos += 1;
                Ok(())
            }
            other => Err(format!("expected </{name}>, found {other:?}")),
        }
    }

    fn peek_open(&mut self) -> Option<String> {
        self.skip_space();
        match self.toks.get(self.pos) {
            Some(Tok::Open(n)) | Some(Tok::Empty(n)) => Some(n.clone()),
            _ => None,
        }
    }

    /// Text up to `</name>` (which is consumed).
    fn text_until(&mut self, name: &str) -> Result<String, String> {
        let mut s = String::new();
        while let Some(Tok::Text(t)) = self.toks.get(self.pos) {
            s.push_str(t);
            self.pos += 1;
        }
        self.close(name)?;
        Ok(s)
    }

    /// One `<value>...</value>`.
    fn value(&mut self) -> Result<Value, String> {
        if !self.open("value")? {
            return Ok(Value::String(String::new()));
        }
        // Bare text is a string.
        let mut bare = String::new();
        while let Some(Tok::Text(t)) = self.toks.get(self.pos) {
            bare.push_str(t);
            self.pos += 1;
        }
        let kind = match self.toks.get(self.pos) {
            Some(Tok::Close(n)) if n == "value" => {
                self.pos += 1;
                return Ok(Value::String(bare));
            }
            Some(Tok::Open(n)) | Some(Tok::Empty(n)) => n.clone(),
            other => return Err(format!("unexpected {other:?} in <value>")),
        };
        let has_body = self.open(&kind)?;
        let v = match kind.as_str() {
            "string" | "dateTime.iso8601" | "base64" => {
                if has_body {
                    Value::String(self.text_until(&kind)?)
                } else {
                    Value::String(String::new())
                }
            }
            "int" | "i4" | "i8" => {
                let t = if has_body {
                    self.text_until(&kind)?
                } else {
                    String::new()
                };
                let t = t.trim();
                match t.parse::<i64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => t
                        .parse::<u64>()
                        .map(Value::from)
                        .map_err(|_| format!("bad integer '{t}'"))?,
                }
            }
            "double" => {
                let t = if has_body {
                    self.text_until(&kind)?
                } else {
                    String::new()
                };
                number_or_token(t.trim())?
            }
            "boolean" => {
                let t = if has_body {
                    self.text_until(&kind)?
                } else {
                    String::new()
                };
                match t.trim() {
                    "1" | "true" => Value::Bool(true),
                    "0" | "false" => Value::Bool(false),
                    other => return Err(format!("bad boolean '{other}'")),
                }
            }
            "nil" => {
                if has_body {
                    self.close("nil")?;
                }
                Value::Null
            }
            "array" => {
                let mut items = Vec::new();
                if has_body {
                    if self.open("data")? {
                        while self.peek_open().as_deref() == Some("value") {
                            items.push(self.value()?);
                        }
                        self.close("data")?;
                    }
                    self.close("array")?;
                }
                Value::Array(items)
            }
            "struct" => {
                let mut m = Map::new();
                if has_body {
                    while self.peek_open().as_deref() == Some("member") {
                        self.open("member")?;
                        self.open("name")?;
                        let name = self.text_until("name")?;
                        let v = self.value()?;
                        self.close("member")?;
                        m.insert(name, v);
                    }
                    self.close("struct")?;
                }
                Value::Object(m)
            }
            other => return Err(format!("unknown XML-RPC type <{other}>")),
        };
        self.close("value")?;
        Ok(v)
    }
}

fn number_or_token(t: &str) -> Result<Value, String> {
    match t {
        "inf" | "Infinity" | "+Infinity" => return Ok(Value::String("Infinity".into())),
        "-inf" | "-Infinity" => return Ok(Value::String("-Infinity".into())),
        "nan" | "NaN" => return Ok(Value::String("NaN".into())),
        _ => {}
    }
    let f: f64 = t.parse().map_err(|_| format!("bad double '{t}'"))?;
    Ok(Number::from_f64(f).map_or(Value::Null, Value::Number))
}

/// Parses one XML-RPC `<value>` (as `task.result` holds it). An empty text is `""`.
pub fn parse_value(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::String(String::new()));
    }
    let mut p = Parser {
        toks: tokens(text)?,
        pos: 0,
    };
    let v = p.value()?;
    p.skip_space();
    if p.pos != p.toks.len() {
        return Err("text after the value".into());
    }
    Ok(v)
}

/// Parses a `<methodResponse>`: the one value of `<params>`, or the `<fault>` value.
pub fn parse_response(text: &str) -> Result<Result<Value, Value>, String> {
    let mut p = Parser {
        toks: tokens(text)?,
        pos: 0,
    };
    p.open("methodResponse")?;
    let out = match p.peek_open().as_deref() {
        Some("params") => {
            p.open("params")?;
            p.open("param")?;
            let v = p.value()?;
            p.close("param")?;
            p.close("params")?;
            Ok(v)
        }
        Some("fault") => {
            p.open("fault")?;
            let v = p.value()?;
            p.close("fault")?;
            Err(v)
        }
        other => return Err(format!("unexpected {other:?} in <methodResponse>")),
    };
    p.close("methodResponse")?;
    Ok(out)
}

/// Writes `v` as a compact XML-RPC `<value>`. Floats keep a decimal point.
pub fn write_value(v: &Value, out: &mut String) {
    out.push_str("<value>");
    match v {
        Value::Null => out.push_str("<nil/>"),
        Value::Bool(b) => out.push_str(if *b {
            "<boolean>1</boolean>"
        } else {
            "<boolean>0</boolean>"
        }),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            out.push_str(&format!("<double>{f:?}</double>"));
        }
        Value::Number(n) => {
            out.push_str("<int>");
            out.push_str(&n.to_string());
            out.push_str("</int>");
        }
        Value::String(s) => {
            out.push_str("<string>");
            out.push_str(&escape(s));
            out.push_str("</string>");
        }
        Value::Array(a) => {
            out.push_str("<array><data>");
            for x in a {
                write_value(x, out);
            }
            out.push_str("</data></array>");
        }
        Value::Object(m) => {
            out.push_str("<struct>");
            for (k, x) in m {
                out.push_str("<member><name>");
                out.push_str(&escape(k));
                out.push_str("</name>");
                write_value(x, out);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
    }
    out.push_str("</value>");
}

/// A compact `<methodCall>`.
pub fn method_call(method: &str, params: &[Value]) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?><methodCall><methodName>");
    out.push_str(&escape(method));
    out.push_str("</methodName><params>");
    for p in params {
        out.push_str("<param>");
        write_value(p, &mut out);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_results() {
        assert_eq!(
            parse_value("<value>OpaqueRef:abc</value>").unwrap(),
            json!("OpaqueRef:abc")
        );
        assert_eq!(parse_value("").unwrap(), json!(""));
        assert_eq!(
            parse_value("<value><array><data><value>a</value><value><int>7</int></value></data></array></value>").unwrap(),
            json!(["a", 7])
        );
        assert_eq!(
            parse_value("<value><struct><member><name>x&amp;y</name><value><double>inf</double></value></member></struct></value>").unwrap(),
            json!({"x&y": "Infinity"})
        );
        assert_eq!(parse_value("<value/>").unwrap(), json!(""));
        assert!(parse_value("<value><int>x</int></value>").is_err());
    }

    #[test]
    fn round_trip() {
        let v = json!({"a": [1, -2, 1.5, "x<y", true, null, {}], "b": ""});
        let mut s = String::new();
        write_value(&v, &mut s);
        assert_eq!(parse_value(&s).unwrap(), v);
        let call = method_call("VM.start", &[json!("s"), json!(false)]);
        assert!(call.contains("<methodName>VM.start</methodName>"));
    }

    #[test]
    fn responses() {
        let ok = "<?xml version='1.0'?>\n<methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value>OpaqueRef:1</value></member></struct></value></param></params></methodResponse>";
        let v = parse_response(ok).unwrap().unwrap();
        assert_eq!(v["Value"], json!("OpaqueRef:1"));
    }
}
