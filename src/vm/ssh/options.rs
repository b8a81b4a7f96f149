//! The `ssh` kind's options: one typed definition, parsed with serde (unknown keys are
//! refused), with secrets that are never serialised, logged or shown.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::time::Duration;

/// A password or passphrase: readable by the code that authenticates, and nothing else.
/// `Debug` shows `<secret>`; there is no `Serialize`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// How the server's host key is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum HostKeyPolicy {
    /// The key must be in `known_hosts` (or match `host_key_fingerprint`).
    #[serde(rename = "strict")]
    Strict,
    /// Any key is accepted, with a warning logged on every connect.
    #[serde(rename = "insecure-accept-any")]
    InsecureAcceptAny,
}

/// What the JSON holds (before defaults and checks).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    key_passphrase: Option<Secret>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    use_agent: Option<bool>,
    #[serde(default)]
    known_hosts: Option<String>,
    #[serde(default)]
    host_key_fingerprint: Option<String>,
    #[serde(default)]
    host_key_policy: Option<HostKeyPolicy>,
    #[serde(default)]
    connect_timeout: Option<f64>,
    #[serde(default)]
    keepalive_interval: Option<f64>,
}

/// The keys of [`SshOptions`], for messages and for telling them from the common keys.
pub const SSH_OPTION_KEYS: &[&str] = &[
    "host",
    "port",
    "username",
    "key_file",
    "key_passphrase",
    "password",
    "use_agent",
    "known_hosts",
    "host_key_fingerprint",
    "host_key_policy",
    "connect_timeout",
    "keepalive_interval",
];

/// Validated options of an `ssh` VM.
#[derive(Clone, Debug, PartialEq)]
pub struct SshOptions {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub key_file: Option<String>,
    pub key_passphrase: Option<Secret>,
    pub password: Option<Secret>,
    /// Whether the running ssh-agent (`SSH_AUTH_SOCK`) is tried.
    pub use_agent: bool,
    /// The known_hosts file (read only, never written).
    pub known_hosts: String,
    /// `SHA256:<base64>`, as `ssh-keygen -lf` prints it.
    pub host_key_fingerprint: Option<String>,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// Keepalive period; the connection counts as dead after two periods of silence.
    pub keepalive_interval: Duration,
}

fn seconds(v: Option<f64>, key: &str, default: f64) -> Result<Duration> {
    let s = v.unwrap_or(default);
    if !(s.is_finite() && s > 0.0 && s <= 3600.0) {
        return Err(Error::invalid(format!(
            "option '{key}' must be a number of seconds above 0 and at most 3600"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

/// The user's `~/.ssh/known_hosts`.
fn default_known_hosts() -> String {
    let home = std::env::var_os("HOME").unwrap_or_default();
    std::path::Path::new(&home)
        .join(".ssh")
        .join("known_hosts")
        .to_string_lossy()
        .into_owned()
}

impl SshOptions {
    /// Parses the kind's own keys (the VM options minus the common ones), on top of
    /// `base` (a manager's defaults) when there is one.
    pub fn from_json(
        map: serde_json::Map<String, serde_json::Value>,
        base: Option<&SshOptions>,
    ) -> Result<Self> {
        let raw: Raw = serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            Error::invalid(format!(
                "ssh VM options: {e} (ssh keys: {})",
                SSH_OPTION_KEYS.join(", ")
            ))
        })?;
        let host = raw
            .host
            .or_else(|| base.map(|b| b.host.clone()))
            .ok_or_else(|| Error::invalid("an ssh VM needs the option 'host'"))?;
        if host.trim().is_empty() || host.contains(['\0', '\n', ' ']) {
            return Err(Error::invalid(
                "option 'host' must be a host name or address",
            ));
        }
        let username = raw
            .username
            .or_else(|| base.map(|b| b.username.clone()))
            .ok_or_else(|| Error::invalid("an ssh VM needs the option 'username'"))?;
        if username.is_empty() || username.contains('\0') {
            return Err(Error::invalid("option 'username' must not be empty"));
        }
        let fingerprint = raw
            .host_key_fingerprint
            .or_else(|| base.and_then(|b| b.host_key_fingerprint.clone()));
        if let Some(fp) = &fingerprint {
            let b64 = fp.strip_prefix("SHA256:").unwrap_or("");
            if b64.is_empty() || base64_decode(b64).is_none_or(|d| d.len() != 32) {
                return Err(Error::invalid(format!(
                    "option 'host_key_fingerprint' must be SHA256:<base64 of 32 bytes>, as ssh-keygen -lf prints it, not '{fp}'"
                )));
            }
        }
        let port = raw.port.or(base.map(|b| b.port)).unwrap_or(22);
        if port == 0 {
            return Err(Error::invalid("option 'port' must be from 1 to 65535"));
        }
        let secs = |v: Option<f64>, key: &str, from_base: Option<Duration>, default: f64| match (
            v, from_base,
        ) {
            (None, Some(d)) => Ok(d),
            (v, _) => seconds(v, key, default),
        };
        Ok(SshOptions {
            use_agent: raw.use_agent.or(base.map(|b| b.use_agent)).unwrap_or(true),
            host,
            port,
            username,
            key_file: raw
                .key_file
                .or_else(|| base.and_then(|b| b.key_file.clone())),
            key_passphrase: raw
                .key_passphrase
                .or_else(|| base.and_then(|b| b.key_passphrase.clone())),
            password: raw
                .password
                .or_else(|| base.and_then(|b| b.password.clone())),
            known_hosts: raw
                .known_hosts
                .or_else(|| base.map(|b| b.known_hosts.clone()))
                .unwrap_or_else(default_known_hosts),
            host_key_fingerprint: fingerprint,
            host_key_policy: raw
                .host_key_policy
                .or(base.map(|b| b.host_key_policy))
                .unwrap_or(HostKeyPolicy::Strict),
            connect_timeout: secs(
                raw.connect_timeout,
                "connect_timeout",
                base.map(|b| b.connect_timeout),
                10.0,
            )?,
            keepalive_interval: secs(
                raw.keepalive_interval,
                "keepalive_interval",
                base.map(|b| b.keepalive_interval),
                4.0,
            )?,
        })
    }

    /// The options as `info` shows them: no secret, only whether one was given.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("host".into(), self.host.clone().into());
        m.insert("port".into(), self.port.into());
        m.insert("username".into(), self.username.clone().into());
        m.insert("key_file".into(), self.key_file.clone().into());
        m.insert("known_hosts".into(), self.known_hosts.clone().into());
        m.insert(
            "host_key_policy".into(),
            match self.host_key_policy {
                HostKeyPolicy::Strict => "strict",
                HostKeyPolicy::InsecureAcceptAny => "insecure-accept-any",
            }
            .into(),
        );
        m.insert(
            "connect_timeout".into(),
            self.connect_timeout.as_secs_f64().into(),
        );
        m.insert(
            "keepalive_interval".into(),
            self.keepalive_interval.as_secs_f64().into(),
        );
        m
    }

    /// `user@host:port`, for messages.
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.username, self.host, self.port)
    }
}

/// Standard base64 (with or without `=` padding), as OpenSSH prints fingerprints.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Standard base64 without padding (OpenSSH's `SHA256:` fingerprint form).
pub fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=n {
            out.push(T[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for len in 0..40 {
            let v: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&v)).unwrap(), v);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8");
    }

    #[test]
    fn secrets_do_not_show() {
        let o = SshOptions::from_json(
            serde_json::json!({"host": "h", "username": "u", "password": "hunter2"})
                .as_object()
                .unwrap()
                .clone(),
            None,
        )
        .unwrap();
        assert!(!format!("{o:?}").contains("hunter2"));
        assert!(!serde_json::Value::Object(o.to_json())
            .to_string()
            .contains("hunter2"));
    }
}
