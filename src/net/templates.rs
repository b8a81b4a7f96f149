//! The original's `LuaScriptTemplate`: functions that return Lua source (they never run
//! it). Every value is put into the source as a quoted Lua literal, so no host, URL or
//! message can change what the script does.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// `s` as a Lua string literal that reads back as exactly `s` on Lua 5.1–5.4.
pub fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            // Decimal escapes with three digits never merge with a following digit.
            0..=31 | 127..=255 => out.push_str(&format!("\\{b:03}")),
            _ => out.push(b as char),
        }
    }
    out.push('"');
    out
}

/// A finite number as a Lua literal.
fn lua_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n:?}")
    }
}

fn get_str<'a>(o: &'a Map<String, Value>, key: &str, default: Option<&'a str>) -> Result<&'a str> {
    match o.get(key) {
        None | Some(Value::Null) => {
            default.ok_or_else(|| Error::invalid(format!("template option '{key}' is required")))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::invalid(format!(
            "template option '{key}' must be a string"
        ))),
    }
}

fn get_num(o: &Map<String, Value>, key: &str, default: Option<f64>) -> Result<f64> {
    match o.get(key) {
        None | Some(Value::Null) => {
            default.ok_or_else(|| Error::invalid(format!("template option '{key}' is required")))
        }
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "template option '{key}' must be a non-negative number"
                ))
            }),
    }
}

fn get_port(o: &Map<String, Value>) -> Result<String> {
    let p = o
        .get("port")
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::invalid("template option 'port' is required (an integer)"))?;
    super::validate_port(p)?;
    Ok(p.to_string())
}

/// The names `render` knows.
pub const NAMES: &[&str] = &[
    "simple_echo_server",
    "heartbeat_client",
    "http_client_template",
];

/// Renders template `name` with its options (a JSON object):
/// - `simple_echo_server`: `port`, `bind` (default "127.0.0.1"): an endless accept loop
///   answering each client's line with `Echo: <line>`.
/// - `heartbeat_client`: `host`, `port`, `interval` (1 s), `count` (10).
/// - `http_client_template`: `url`, `method` ("GET"): one request through
///   `socket.http` with that method; prints the status and returns the body and code.
pub fn render(name: &str, options_json: &str) -> Result<String> {
    let o = crate::vm::options::parse_object(options_json, "template options")?;
    let keys: &[&str] = match name {
        "simple_echo_server" => &["port", "bind"],
        "heartbeat_client" => &["host", "port", "interval", "count"],
        "http_client_template" => &["url", "method"],
        other => {
            return Err(Error::invalid(format!(
                "unknown template '{other}' (known: {})",
                NAMES.join(", ")
            )))
        }
    };
    crate::vm::options::reject_unknown(&o, keys, "template")?;
    Ok(match name {
        "simple_echo_server" => format!(
            r#"local socket = require("socket")
local bind, port = {bind}, {port}
local server = assert(socket.bind(bind, port))
print("Echo server listening on " .. bind .. ":" .. port)
while true do
  local client = server:accept()
  client:settimeout(10)
  local line = client:receive("*l")
  if line then
    client:send("Echo: " .. line .. "\n")
  end
  client:close()
end
"#,
            bind = lua_string(get_str(&o, "bind", Some("127.0.0.1"))?),
            port = get_port(&o)?,
        ),
        "heartbeat_client" => {
            let host = get_str(&o, "host", None)?;
            super::validate_host(host)?;
            format!(
                r#"local socket = require("socket")
local host, port, interval, count = {host}, {port}, {interval}, {count}
for i = 1, count do
  local conn, err = socket.connect(host, port)
  if conn then
    conn:send("heartbeat " .. i .. "\n")
    conn:close()
    print("Heartbeat " .. i .. " sent to " .. host .. ":" .. port)
  else
    print("Heartbeat " .. i .. " failed: " .. tostring(err))
  end
  if i < count then socket.sleep(interval) end
end
"#,
                host = lua_string(host),
                port = get_port(&o)?,
                interval = lua_number(get_num(&o, "interval", Some(1.0))?),
                count = lua_number(get_num(&o, "count", Some(10.0))?.floor()),
            )
        }
        _ => format!(
            r#"local http = require("socket.http")
local ltn12 = require("ltn12")
local url, method = {url}, {method}
local chunks = {{}}
local ok, code = http.request({{ url = url, method = method, sink = ltn12.sink.table(chunks) }})
print("HTTP " .. method .. " " .. url .. " -> " .. tostring(code))
return table.concat(chunks), code
"#,
            url = lua_string(get_str(&o, "url", None)?),
            method = lua_string(get_str(&o, "method", Some("GET"))?),
        ),
    })
}
