//! VM options as they arrive in JSON, validated once at creation.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::time::Duration;

/// The VM kinds the API names. Only `Basic` is built in this version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmKind {
    Basic,
    Process,
    Ssh,
    Xcpng,
}

impl VmKind {
    pub const NAMES: &'static [&'static str] = &["basic", "process", "ssh", "xcpng"];

    pub fn name(self) -> &'static str {
        match self {
            VmKind::Basic => "basic",
            VmKind::Process => "process",
            VmKind::Ssh => "ssh",
            VmKind::Xcpng => "xcpng",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "basic" => Ok(VmKind::Basic),
            "process" => Ok(VmKind::Process),
            "ssh" => Ok(VmKind::Ssh),
            "xcpng" => Ok(VmKind::Xcpng),
            other => Err(Error::invalid(format!(
                "Unknown VM type: {other}. Supported types: {}",
                VmKind::NAMES.join(", ")
            ))),
        }
    }
}

/// Which standard library a `basic` VM gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sandbox {
    /// The safe subset (see the README's sandbox table).
    Default,
    /// The full standard library, `io`, `os`, `debug` and C modules included.
    Trusted,
}

impl Sandbox {
    pub fn name(self) -> &'static str {
        match self {
            Sandbox::Default => "default",
            Sandbox::Trusted => "trusted",
        }
    }
}

/// Validated options of one VM.
#[derive(Clone, Debug, PartialEq)]
pub struct VmOptions {
    pub kind: VmKind,
    pub sandbox: Sandbox,
    /// Bytes; `None` for no limit.
    pub memory_limit: Option<usize>,
    /// Default limit for each execution; `None` for none.
    pub timeout: Option<Duration>,
    pub debug_mode: bool,
    /// Accepted for compatibility with the original; only recorded here.
    pub persistent: bool,
    pub networked: bool,
    pub lua_executable: String,
    /// Most bytes kept per output stream per execution; the rest is counted as dropped.
    pub max_output: usize,
    /// Most compiled chunks kept for re-execution.
    pub chunk_cache: usize,
    /// The `ssh` kind's own options (host, user, credentials, host-key check).
    pub ssh: Option<crate::vm::ssh::SshOptions>,
    /// The package environment whose modules the VM sees (a name or a path; on an ssh
    /// host, a name or an absolute path there). See `crate::packages`.
    pub env: Option<String>,
    /// The `xcpng` kind's own options (pool, template, guest).
    pub xcpng: Option<crate::vm::xcpng::XcpngOptions>,
}

/// Default cap on the bytes of output one stream keeps per execution.
pub const DEFAULT_MAX_OUTPUT: usize = 16 << 20;
/// Default number of compiled chunks each VM keeps.
pub const DEFAULT_CHUNK_CACHE: usize = 64;

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            kind: VmKind::Basic,
            sandbox: Sandbox::Default,
            memory_limit: None,
            timeout: None,
            debug_mode: false,
            persistent: false,
            networked: false,
            lua_executable: "lua".to_string(),
            max_output: DEFAULT_MAX_OUTPUT,
            chunk_cache: DEFAULT_CHUNK_CACHE,
            ssh: None,
            env: None,
            xcpng: None,
        }
    }
}

/// The keys a VM options object may hold.
pub const VM_OPTION_KEYS: &[&str] = &[
    "vm_type",
    "sandbox",
    "memory_limit",
    "timeout",
    "debug_mode",
    "persistent",
    "networked",
    "lua_executable",
    "max_output",
    "chunk_cache",
    "env",
];

/// The variable that names the package environment of VMs created without an `env`
/// option (basic and process kinds; like an activated virtual environment).
pub const ENV_VAR: &str = "BIOXEN_VM_ENV";

/// Parse a JSON object text (empty text means `{}`) into a map, rejecting other JSON and
/// duplicate keys (see [`crate::json`]).
pub fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match crate::json::parse(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::invalid(format!("{what} must be a JSON object"))),
        Err(e) => Err(Error::invalid(format!("{what} is not valid JSON: {e}"))),
    }
}

pub(crate) fn get_bool(map: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Error::invalid(format!(
            "option '{key}' must be true or false"
        ))),
    }
}

pub(crate) fn get_str<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::invalid(format!("option '{key}' must be a string"))),
    }
}

/// A non-negative integer; `0` and `null` mean "none".
pub(crate) fn get_size(map: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(0) => Ok(None),
            Some(n) => usize::try_from(n)
                .map(Some)
                .map_err(|_| Error::invalid(format!("option '{key}' is too large"))),
            None => Err(Error::invalid(format!(
                "option '{key}' must be a non-negative integer"
            ))),
        },
    }
}

/// `max_output`: at least 1 byte; `null` keeps the default. There is no unlimited setting,
/// so 0 is refused rather than read as "none" as other sizes are.
fn get_max_output(map: &Map<String, Value>) -> Result<Option<usize>> {
    match map.get("max_output") {
        None | Some(Value::Null) => Ok(None),
        Some(v) if v.as_u64() == Some(0) => Err(Error::invalid(
            "option 'max_output' must be at least 1 byte; there is no unlimited setting",
        )),
        Some(_) => get_size(map, "max_output"),
    }
}

/// Most seconds a timeout option takes (about 31 years); larger numbers are refused.
pub const MAX_SECONDS: f64 = 1e9;

/// `s` when it is a number of seconds from 0 to [`MAX_SECONDS`] (exclusive).
pub(crate) fn seconds_number(s: f64) -> Option<f64> {
    (0.0..MAX_SECONDS).contains(&s).then_some(s)
}

/// `v` as seconds when it is a number from 0 to [`MAX_SECONDS`] (exclusive).
pub(crate) fn seconds_value(v: &Value) -> Option<f64> {
    v.as_f64().and_then(seconds_number)
}

/// Seconds as a non-negative number; `0` and `null` mean "none".
pub(crate) fn get_seconds(map: &Map<String, Value>, key: &str) -> Result<Option<Duration>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match seconds_value(v) {
            Some(0.0) => Ok(None),
            Some(s) => Ok(Some(Duration::from_secs_f64(s))),
            None => Err(Error::invalid(format!(
                "option '{key}' must be a non-negative number of seconds below {MAX_SECONDS:e}"
            ))),
        },
    }
}

pub(crate) fn reject_unknown(map: &Map<String, Value>, known: &[&str], what: &str) -> Result<()> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Error::invalid(format!(
            "unknown {what} option '{k}' (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

impl VmOptions {
    /// Options from a JSON object, on top of `base` (a manager's defaults).
    pub fn from_json(map: &Map<String, Value>, base: &VmOptions) -> Result<VmOptions> {
        let mut o = base.clone();
        if let Some(t) = get_str(map, "vm_type")? {
            o.kind = VmKind::parse(t)?;
        }
        let own = || -> Map<String, Value> {
            map.iter()
                .filter(|(k, _)| !VM_OPTION_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        if o.kind == VmKind::Ssh {
            o.ssh = Some(crate::vm::ssh::SshOptions::from_json(
                own(),
                base.ssh.as_ref(),
            )?);
        } else if o.kind == VmKind::Xcpng {
            o.xcpng = Some(crate::vm::xcpng::XcpngOptions::from_json(
                own(),
                base.xcpng.as_ref(),
            )?);
        } else {
            reject_unknown(map, VM_OPTION_KEYS, "VM")?;
        }
        if let Some(s) = get_str(map, "sandbox")? {
            o.sandbox = match s {
                "default" => Sandbox::Default,
                "trusted" => Sandbox::Trusted,
                other => {
                    return Err(Error::invalid(format!(
                        "Unknown sandbox: {other}. Supported: default, trusted"
                    )))
                }
            };
        }
        if map.contains_key("memory_limit") {
            o.memory_limit = get_size(map, "memory_limit")?;
        }
        if map.contains_key("timeout") {
            o.timeout = get_seconds(map, "timeout")?;
        }
        if let Some(b) = get_bool(map, "debug_mode")? {
            o.debug_mode = b;
        }
        if let Some(b) = get_bool(map, "persistent")? {
            o.persistent = b;
        }
        if let Some(b) = get_bool(map, "networked")? {
            o.networked = b;
        }
        if let Some(s) = get_str(map, "lua_executable")? {
            if s.trim().is_empty() {
                return Err(Error::invalid("option 'lua_executable' must not be empty"));
            }
            o.lua_executable = s.to_string();
        }
        if let Some(n) = get_max_output(map)? {
            o.max_output = n;
        }
        if map.contains_key("chunk_cache") {
            o.chunk_cache = match map.get("chunk_cache").and_then(Value::as_u64) {
                Some(n) if n <= 1 << 16 => n as usize,
                _ => {
                    return Err(Error::invalid(
                        "option 'chunk_cache' must be an integer from 0 to 65536",
                    ))
                }
            };
        }
        if let Some(e) = get_str(map, "env")? {
            if e.is_empty() || e.contains('\0') {
                return Err(Error::invalid(
                    "option 'env' must name a package environment (a name or a path)",
                ));
            }
            o.env = Some(e.to_string());
        } else if map.contains_key("env") {
            o.env = None;
        }
        if let Some(limit) = o.memory_limit {
            if limit < MIN_MEMORY_LIMIT {
                return Err(Error::invalid(format!(
                    "option 'memory_limit' must be at least {MIN_MEMORY_LIMIT} bytes (a Lua state needs that much to start)"
                )));
            }
        }
        Ok(o)
    }

    /// The options as the JSON object `info` reports.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("vm_type".into(), self.kind.name().into());
        m.insert("sandbox".into(), self.sandbox.name().into());
        m.insert(
            "memory_limit".into(),
            self.memory_limit.map(Value::from).unwrap_or(Value::Null),
        );
        m.insert(
            "timeout".into(),
            self.timeout
                .map(|d| Value::from(d.as_secs_f64()))
                .unwrap_or(Value::Null),
        );
        m.insert("debug_mode".into(), self.debug_mode.into());
        m.insert("persistent".into(), self.persistent.into());
        m.insert("networked".into(), self.networked.into());
        m.insert("lua_executable".into(), self.lua_executable.clone().into());
        m.insert("max_output".into(), self.max_output.into());
        m.insert("chunk_cache".into(), self.chunk_cache.into());
        m.insert(
            "env".into(),
            self.env.clone().map(Value::from).unwrap_or(Value::Null),
        );
        if let Some(ssh) = &self.ssh {
            m.extend(ssh.to_json());
        }
        if let Some(x) = &self.xcpng {
            m.extend(x.to_json());
        }
        m
    }
}

/// The smallest memory limit accepted: below it a fresh state cannot even be set up.
pub const MIN_MEMORY_LIMIT: usize = 256 << 10;
