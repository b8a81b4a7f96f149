//! The two envelopes XAPI speaks: JSON-RPC (v2 requests; v1 and v2 replies) on `/jsonrpc`,
//! and XML-RPC with XAPI's `Status`/`Value`/`ErrorDescription` struct on `/`.
//!
//! XAPI's JSON is not always JSON: non-finite floats arrive as bare `Infinity`,
//! `-Infinity` and `NaN`. [`tolerant_json`] turns those tokens (outside strings) into the
//! strings `"Infinity"`, `"-Infinity"` and `"NaN"` before parsing.

use super::error::XapiError;
use serde_json::{json, Value};

/// `text` with bare `Infinity`, `-Infinity` and `NaN` outside strings quoted.
pub fn tolerant_json(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("Infinity") && !text.contains("NaN") {
        return std::borrow::Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let (mut i, mut start) = (0, 0);
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
            i += 1;
            continue;
        }
        for tok in ["-Infinity", "Infinity", "NaN"] {
            if b[i..].starts_with(tok.as_bytes()) {
                out.push_str(&text[start..i]);
                out.push('"');
                out.push_str(tok);
                out.push('"');
                i += tok.len();
                start = i;
                break;
            }
        }
        i += 1;
    }
    out.push_str(&text[start.min(text.len())..]);
    std::borrow::Cow::Owned(out)
}

/// A JSON-RPC 2.0 request.
pub fn jsonrpc_request(method: &str, params: &[Value], id: u64) -> Vec<u8> {
    let v = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
    v.to_string().into_bytes()
}

/// The error params as strings (XAPI's are strings; other values are shown as JSON).
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    }
}

/// A fault from an error array `[code, params...]`.
pub fn fault_of_array(v: &Value) -> XapiError {
    let all = strings(v);
    let mut it = all.into_iter();
    let code = it.next().unwrap_or_else(|| "INTERNAL_ERROR".into());
    XapiError::Fault {
        code,
        params: it.collect(),
    }
}

/// The result of a JSON-RPC reply (v1 or v2), or its error as a fault.
pub fn jsonrpc_response(text: &str) -> Result<Value, XapiError> {
    let fixed = tolerant_json(text);
    let v: Value = serde_json::from_str(&fixed).map_err(|e| {
        XapiError::Protocol(format!(
            "the JSON-RPC reply is not JSON ({e}): {}",
            excerpt(text)
        ))
    })?;
    let Value::Object(mut m) = v else {
        return Err(XapiError::Protocol(format!(
            "the JSON-RPC reply is not an object: {}",
            excerpt(text)
        )));
    };
    match m.remove("error") {
        None | Some(Value::Null) => {}
        // v2: {"code": 1, "message": CODE, "data": [params]}
        Some(Value::Object(e)) => {
            let code = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("INTERNAL_ERROR")
                .to_string();
            return Err(XapiError::Fault {
                code,
                params: strings(e.get("data").unwrap_or(&Value::Null)),
            });
        }
        // v1: ["CODE", params...]
        Some(a @ Value::Array(_)) => return Err(fault_of_array(&a)),
        Some(other) => {
            return Err(XapiError::Protocol(format!(
                "a JSON-RPC error of an unknown form: {other}"
            )))
        }
    }
    m.remove("result").ok_or_else(|| {
        XapiError::Protocol(format!(
            "a JSON-RPC reply without result: {}",
            excerpt(text)
        ))
    })
}

/// The `Value` of an XML-RPC reply, or its `ErrorDescription` as a fault.
pub fn xmlrpc_response(text: &str) -> Result<Value, XapiError> {
    let parsed = super::xml::parse_response(text).map_err(|e| {
        XapiError::Protocol(format!(
            "the XML-RPC reply is malformed ({e}): {}",
            excerpt(text)
        ))
    })?;
    let v = match parsed {
        Ok(v) => v,
        Err(fault) => return Err(XapiError::Protocol(format!("an XML-RPC fault: {fault}"))),
    };
    match v.get("Status").and_then(Value::as_str) {
        Some("Success") => Ok(v
            .get("Value")
            .cloned()
            .unwrap_or(Value::String(String::new()))),
        Some(_) => Err(fault_of_array(
            v.get("ErrorDescription").unwrap_or(&Value::Null),
        )),
        None => Err(XapiError::Protocol(
            "an XML-RPC reply without Status".into(),
        )),
    }
}

/// The first 200 characters of a reply, for messages.
pub fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    if t.len() < text.len() {
        format!("{t}...")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats() {
        let t = r#"{"result": {"a": Infinity, "b": -Infinity, "c": NaN, "d": "Infinity NaN", "e": [1.5, NaN]}, "id": 1}"#;
        let v = jsonrpc_response(t).unwrap();
        assert_eq!(v["a"], "Infinity");
        assert_eq!(v["b"], "-Infinity");
        assert_eq!(v["c"], "NaN");
        assert_eq!(v["d"], "Infinity NaN");
        assert_eq!(v["e"][1], "NaN");
        let s = r#"{"result": "a \" Infinity", "id": 1}"#;
        assert_eq!(jsonrpc_response(s).unwrap(), "a \" Infinity");
    }

    #[test]
    fn errors_v1_and_v2() {
        let v2 = r#"{"jsonrpc":"2.0","error":{"code":1,"message":"VM_BAD_POWER_STATE","data":["OpaqueRef:x","halted","running"]},"id":3}"#;
        match jsonrpc_response(v2) {
            Err(XapiError::Fault { code, params }) => {
                assert_eq!(code, "VM_BAD_POWER_STATE");
                assert_eq!(params, ["OpaqueRef:x", "halted", "running"]);
            }
            other => panic!("{other:?}"),
        }
        let v1 = r#"{"result":null,"error":["HANDLE_INVALID","VM","OpaqueRef:y"],"id":3}"#;
        match jsonrpc_response(v1) {
            Err(XapiError::Fault { code, params }) => {
                assert_eq!(code, "HANDLE_INVALID");
                assert_eq!(params, ["VM", "OpaqueRef:y"]);
            }
            other => panic!("{other:?}"),
        }
        let ok1 = r#"{"result":"","error":null,"id":3}"#;
        assert_eq!(jsonrpc_response(ok1).unwrap(), "");
        let big = r#"{"jsonrpc":"2.0","result":9223372036854775807,"id":0}"#;
        assert_eq!(jsonrpc_response(big).unwrap().as_i64(), Some(i64::MAX));
    }

    #[test]
    fn xmlrpc_faults() {
        let t = "<methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value><array><data><value>SESSION_INVALID</value><value>OpaqueRef:s</value></data></array></value></member></struct></value></param></params></methodResponse>";
        match xmlrpc_response(t) {
            Err(XapiError::Fault { code, params }) => {
                assert_eq!(code, "SESSION_INVALID");
                assert_eq!(params, ["OpaqueRef:s"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
