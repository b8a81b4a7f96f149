//! How to reach one pool's XAPI: the address, the credentials, the TLS policy and the
//! limits. Parsed from JSON (unknown keys refused); the password is a
//! [`Secret`](crate::vm::ssh::options::Secret), never shown.

use super::error::XapiError;
use crate::vm::ssh::options::Secret;
use serde::Deserialize;
use std::time::Duration;

/// The originator this library logs in with: XAPI keeps a session bucket per originator,
/// so our sessions never push other clients' sessions out (nor theirs ours).
pub const ORIGINATOR: &str = concat!("bioxen_vm/", env!("CARGO_PKG_VERSION"));

/// How the server's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// The system's trusted roots (and the name in the URL).
    System,
    /// The certificates of a PEM file as the only roots (and the name in the URL).
    CaFile(String),
    /// The server's certificate must have this SHA-256 digest (of its DER form); names
    /// and chains are not checked. XCP-ng hosts present self-signed certificates, so this
    /// is the everyday case.
    Pinned([u8; 32]),
    /// Nothing is checked (logged as a warning on every connection).
    Insecure,
}

/// A validated XAPI configuration.
#[derive(Clone, Debug)]
pub struct XapiConfig {
    /// `https://host[:port]` or `http://host[:port]`, without a path.
    pub url: String,
    pub username: String,
    pub password: Secret,
    pub tls: TlsPolicy,
    /// TCP (and TLS) connect limit.
    pub connect_timeout: Duration,
    /// Limit of one HTTP request (a short call; long operations are tasks, polled).
    pub call_timeout: Duration,
    /// Most calls in flight on this pool at once (Xen Orchestra's default is 20).
    pub max_calls: usize,
    /// Interval between two polls of a task.
    pub poll_interval: Duration,
    /// Transient errors (TOO_MANY_PENDING_TASKS, OTHER_OPERATION_IN_PROGRESS, VDI_IN_USE)
    /// are retried this many times, with a backoff that doubles from `retry_backoff` up to
    /// 5 s.
    pub transient_retries: u32,
    pub retry_backoff: Duration,
}

/// The JSON keys of a standalone XAPI session (see `bioxen_vm_xapi_open`).
pub const XAPI_KEYS: &[&str] = &[
    "url",
    "username",
    "password",
    "ca_file",
    "tls_fingerprint",
    "insecure",
    "connect_timeout",
    "call_timeout",
    "max_calls_in_flight",
    "poll_interval",
    "transient_retries",
    "retry_backoff",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: String,
    username: String,
    password: Secret,
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    tls_fingerprint: Option<String>,
    #[serde(default)]
    insecure: Option<bool>,
    #[serde(default)]
    connect_timeout: Option<f64>,
    #[serde(default)]
    call_timeout: Option<f64>,
    #[serde(default)]
    max_calls_in_flight: Option<usize>,
    #[serde(default)]
    poll_interval: Option<f64>,
    #[serde(default)]
    transient_retries: Option<u32>,
    #[serde(default)]
    retry_backoff: Option<f64>,
}

/// The TLS settings as options give them.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    pub ca_file: Option<String>,
    pub fingerprint: Option<String>,
    pub insecure: bool,
}

/// Seconds in `(0, max]`, else an error naming `key`.
pub fn seconds(v: Option<f64>, key: &str, default: f64, max: f64) -> Result<Duration, XapiError> {
    let s = v.unwrap_or(default);
    if !(s.is_finite() && s > 0.0 && s <= max) {
        return Err(XapiError::Config(format!(
            "option '{key}' must be a number of seconds above 0 and at most {max}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

/// A SHA-256 fingerprint as hosts and tools print it: 64 hex digits, with or without
/// colons, optionally after `sha256:` / `sha-256:` / `SHA256:`.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], XapiError> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let hex: String = ["sha256:", "sha-256:"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower)
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let bad = || {
        XapiError::Config(format!(
            "option 'tls_fingerprint' must be the SHA-256 digest of the host's certificate as 64 hex digits (colons allowed), as `openssl x509 -noout -fingerprint -sha256` prints it, not '{t}'"
        ))
    };
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// `AB:CD:...` (upper-case hex with colons).
pub fn fingerprint_text(fp: &[u8; 32]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `https://host` for `host`, `host:port` or a URL; refuses paths, queries and spaces.
pub fn normalise_url(text: &str) -> Result<String, XapiError> {
    let t = text.trim().trim_end_matches('/');
    let with_scheme = if t.starts_with("https://") || t.starts_with("http://") {
        t.to_string()
    } else {
        format!("https://{t}")
    };
    let rest = with_scheme
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or_default();
    let host = rest.strip_suffix("/jsonrpc").unwrap_or(rest);
    if host.is_empty() || host.contains(['/', '?', '#', ' ', '@', '\0']) {
        return Err(XapiError::Config(format!(
            "the XAPI address must be a host, host:port or http(s)://host[:port], not '{t}'"
        )));
    }
    let scheme = if with_scheme.starts_with("http://") {
        "http"
    } else {
        "https"
    };
    Ok(format!("{scheme}://{host}"))
}

impl TlsOptions {
    pub fn policy(&self) -> Result<TlsPolicy, XapiError> {
        let n = usize::from(self.ca_file.is_some())
            + usize::from(self.fingerprint.is_some())
            + usize::from(self.insecure);
        if n > 1 {
            return Err(XapiError::Config(
                "give at most one of 'ca_file', 'tls_fingerprint' and 'insecure'".into(),
            ));
        }
        Ok(if let Some(fp) = &self.fingerprint {
            TlsPolicy::Pinned(parse_fingerprint(fp)?)
        } else if let Some(f) = &self.ca_file {
            TlsPolicy::CaFile(f.clone())
        } else if self.insecure {
            TlsPolicy::Insecure
        } else {
            TlsPolicy::System
        })
    }
}

impl XapiConfig {
    /// A configuration with the defaults for everything but the address and credentials.
    pub fn new(
        url: &str,
        username: &str,
        password: Secret,
        tls: TlsPolicy,
    ) -> Result<Self, XapiError> {
        if username.is_empty() {
            return Err(XapiError::Config(
                "the XAPI user name must not be empty".into(),
            ));
        }
        Ok(XapiConfig {
            url: normalise_url(url)?,
            username: username.to_string(),
            password,
            tls,
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(60),
            max_calls: 20,
            poll_interval: Duration::from_millis(250),
            transient_retries: 10,
            retry_backoff: Duration::from_millis(500),
        })
    }

    /// Parses a standalone session's JSON object (keys: [`XAPI_KEYS`]).
    pub fn from_json(map: serde_json::Map<String, serde_json::Value>) -> Result<Self, XapiError> {
        let raw: Raw = serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            XapiError::Config(format!(
                "XAPI options: {e} (keys: {})",
                XAPI_KEYS.join(", ")
            ))
        })?;
        let tls = TlsOptions {
            ca_file: raw.ca_file,
            fingerprint: raw.tls_fingerprint,
            insecure: raw.insecure.unwrap_or(false),
        }
        .policy()?;
        let mut c = XapiConfig::new(&raw.url, &raw.username, raw.password, tls)?;
        c.set_limits(
            raw.connect_timeout,
            raw.call_timeout,
            raw.max_calls_in_flight,
            raw.poll_interval,
            raw.transient_retries,
            raw.retry_backoff,
        )?;
        Ok(c)
    }

    /// Applies the optional limits (each checked).
    pub fn set_limits(
        &mut self,
        connect_timeout: Option<f64>,
        call_timeout: Option<f64>,
        max_calls: Option<usize>,
        poll_interval: Option<f64>,
        transient_retries: Option<u32>,
        retry_backoff: Option<f64>,
    ) -> Result<(), XapiError> {
        self.connect_timeout = seconds(connect_timeout, "connect_timeout", 10.0, 3600.0)?;
        self.call_timeout = seconds(call_timeout, "call_timeout", 60.0, 86400.0)?;
        self.max_calls = match max_calls {
            None => 20,
            Some(n) if (1..=1000).contains(&n) => n,
            Some(_) => {
                return Err(XapiError::Config(
                    "option 'max_calls_in_flight' must be from 1 to 1000".into(),
                ))
            }
        };
        self.poll_interval = seconds(poll_interval, "poll_interval", 0.25, 60.0)?;
        self.transient_retries = match transient_retries {
            None => 10,
            Some(n) if n <= 100 => n,
            Some(_) => {
                return Err(XapiError::Config(
                    "option 'transient_retries' must be from 0 to 100".into(),
                ))
            }
        };
        self.retry_backoff = seconds(retry_backoff, "retry_backoff", 0.5, 60.0)?;
        Ok(())
    }

    /// What identifies the pool and the user, for sharing one session between VMs: the
    /// address, the user, a digest of the password and the TLS policy.
    pub fn share_key(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.password.expose().as_bytes());
        let d: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{}|{}|{}|{:?}", self.url, self.username, d, self.tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_fingerprints() {
        assert_eq!(normalise_url("10.0.0.1").unwrap(), "https://10.0.0.1");
        assert_eq!(normalise_url("h:8443/").unwrap(), "https://h:8443");
        assert_eq!(normalise_url("http://h/jsonrpc").unwrap(), "http://h");
        assert!(normalise_url("https://h/x").is_err());
        assert!(normalise_url("").is_err());
        let fp = "sha256:".to_string() + &"ab:".repeat(31) + "ab";
        assert_eq!(parse_fingerprint(&fp).unwrap(), [0xab; 32]);
        assert_eq!(parse_fingerprint(&"AB".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_fingerprint("abcd").is_err());
        assert_eq!(fingerprint_text(&[0xab; 32]).len(), 95);
    }
}
