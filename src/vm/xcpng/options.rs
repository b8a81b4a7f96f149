//! The `xcpng` kind's options: one typed definition, parsed with serde (unknown keys are
//! refused), taking the original's keys (`xcp_host`, `xcp_username`, `xcp_password`,
//! `template_name`, `vm_username`, `vm_password`, `vm_key_file`, `vm_config`) and the
//! spec's spelling (`xapi_url`, `username`, `password`, `template`, `vm_name`). Secrets
//! are never serialised, logged or shown.

use crate::error::{Error, Result};
use crate::vm::ssh::options::Secret;
use crate::xapi::config::{seconds, TlsOptions};
use crate::xapi::XapiConfig;
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;

/// Hardware and placement settings (top level, or inside the original's `vm_config`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    #[serde(default)]
    pub vcpus: Option<u32>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Network name label or UUID: a VIF on it is added when the template has none there.
    #[serde(default)]
    pub network: Option<String>,
    /// SR name label or UUID for a full copy (`full_copy`).
    #[serde(default)]
    pub sr: Option<String>,
    /// `VM.copy` (full disks) instead of the fast `VM.clone`.
    #[serde(default)]
    pub full_copy: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    // XAPI (original spelling, then the spec's)
    #[serde(default)]
    xcp_host: Option<String>,
    #[serde(default)]
    xapi_url: Option<String>,
    #[serde(default)]
    xcp_username: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    xcp_password: Option<Secret>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    tls_fingerprint: Option<String>,
    #[serde(default)]
    ca_file: Option<String>,
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
    // The VM
    #[serde(default)]
    template_name: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    vm_name: Option<String>,
    #[serde(default)]
    vm_uuid: Option<String>,
    #[serde(default)]
    deploy_id: Option<String>,
    #[serde(default)]
    vm_config: Option<Hardware>,
    #[serde(default)]
    vcpus: Option<u32>,
    #[serde(default)]
    memory_mb: Option<u64>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    sr: Option<String>,
    #[serde(default)]
    full_copy: Option<bool>,
    // The guest
    #[serde(default)]
    vm_username: Option<String>,
    #[serde(default)]
    vm_password: Option<Secret>,
    #[serde(default)]
    vm_key_file: Option<String>,
    #[serde(default)]
    vm_key_passphrase: Option<Secret>,
    #[serde(default)]
    guest_public_key: Option<String>,
    #[serde(default)]
    key_injection: Option<KeyInjection>,
    #[serde(default)]
    guest_port: Option<u16>,
    #[serde(default)]
    guest_host_key_fingerprint: Option<String>,
    #[serde(default)]
    expected_ip_cidr: Option<String>,
    #[serde(default)]
    allow_ipv6: Option<bool>,
    #[serde(default)]
    boot_timeout: Option<f64>,
    #[serde(default)]
    task_timeout: Option<f64>,
    #[serde(default)]
    shutdown_timeout: Option<f64>,
}

/// How the guest learns the public key it must accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum KeyInjection {
    /// Written to the VM's `xenstore_data` as `vm-data/bioxen/authorized_keys` before it
    /// starts (xenopsd copies `vm-data` into the guest's xenstore at domain build; a boot
    /// script in the template installs it). No guest agent or extra disk needed.
    #[serde(rename = "xenstore")]
    Xenstore,
    /// The template already has the key in place; nothing is written.
    #[serde(rename = "template")]
    Template,
}

/// The keys of [`XcpngOptions`], for messages.
pub const XCPNG_OPTION_KEYS: &[&str] = &[
    "xcp_host",
    "xapi_url",
    "xcp_username",
    "username",
    "xcp_password",
    "password",
    "tls_fingerprint",
    "ca_file",
    "insecure",
    "connect_timeout",
    "call_timeout",
    "max_calls_in_flight",
    "poll_interval",
    "transient_retries",
    "retry_backoff",
    "template_name",
    "template",
    "vm_name",
    "vm_uuid",
    "deploy_id",
    "vm_config",
    "vcpus",
    "memory_mb",
    "network",
    "sr",
    "full_copy",
    "vm_username",
    "vm_password",
    "vm_key_file",
    "vm_key_passphrase",
    "guest_public_key",
    "key_injection",
    "guest_port",
    "guest_host_key_fingerprint",
    "expected_ip_cidr",
    "allow_ipv6",
    "boot_timeout",
    "task_timeout",
    "shutdown_timeout",
];

/// An address range `a.b.c.d/n` (or IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub net: IpAddr,
    pub bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr> {
        let bad = || {
            Error::invalid(format!(
                "option 'expected_ip_cidr' must be an address range such as 10.0.0.0/24, not '{s}'"
            ))
        };
        let (a, b) = s.trim().split_once('/').ok_or_else(bad)?;
        let net: IpAddr = a.parse().map_err(|_| bad())?;
        let bits: u8 = b.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(bad());
        }
        Ok(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn prefix(a: &[u8], b: &[u8], bits: u8) -> bool {
            let full = (bits / 8) as usize;
            if a[..full] != b[..full] {
                return false;
            }
            let rest = bits % 8;
            rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
        }
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => prefix(&n.octets(), &i.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(i)) => prefix(&n.octets(), &i.octets(), self.bits),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

/// What VM to work on.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Deploy from this template (name label or UUID).
    Template(String),
    /// Attach to this existing VM (a persistent one from an earlier deploy).
    Attach(String),
}

/// The JSON the options came from (for merging a manager's defaults under a VM's own
/// keys); never shown: `Debug` prints `<json>`, as it holds passwords.
#[derive(Clone, Default)]
pub struct Source(serde_json::Map<String, serde_json::Value>);

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<json>")
    }
}

/// Validated options of an `xcpng` VM.
#[derive(Clone, Debug)]
pub struct XcpngOptions {
    source: Source,
    pub xapi: XapiConfig,
    pub target: Target,
    /// Name label of the new VM (default `bioxen-<deploy id>`).
    pub vm_name: Option<String>,
    /// Caller's deploy id: a deploy with an id that already made a VM adopts it.
    pub deploy_id: Option<String>,
    pub hardware: Hardware,
    pub guest_user: String,
    pub guest_password: Option<Secret>,
    pub guest_key_file: Option<String>,
    pub guest_key_passphrase: Option<Secret>,
    /// The public key the guest must accept (text of one authorized_keys line).
    pub guest_public_key: Option<String>,
    pub key_injection: KeyInjection,
    pub guest_port: u16,
    /// `SHA256:<base64>` of the guest's host key, when known in advance.
    pub guest_host_key_fingerprint: Option<String>,
    pub expected_ip_cidr: Option<Cidr>,
    pub allow_ipv6: bool,
    /// From VM.start to a working SSH connection.
    pub boot_timeout: Duration,
    /// Each XAPI task (clone, copy, provision, start, shutdown).
    pub task_timeout: Duration,
    /// A clean shutdown before the hard one.
    pub shutdown_timeout: Duration,
}

impl PartialEq for XcpngOptions {
    fn eq(&self, o: &Self) -> bool {
        self.xapi.share_key() == o.xapi.share_key()
            && self.target == o.target
            && self.vm_name == o.vm_name
            && self.deploy_id == o.deploy_id
            && self.hardware == o.hardware
            && self.guest_user == o.guest_user
            && self.guest_key_file == o.guest_key_file
            && self.guest_port == o.guest_port
    }
}

fn pick<T>(a: Option<T>, b: Option<T>, names: &str) -> Result<Option<T>> {
    match (a, b) {
        (Some(_), Some(_)) => Err(Error::invalid(format!("give one of {names}, not both"))),
        (a, b) => Ok(a.or(b)),
    }
}

/// The message the original raised for a missing key.
fn missing(key: &str) -> Error {
    Error::Original {
        status: crate::status::bioxen_vm_status::VmManagerError,
        message: format!("Missing required configuration: {key}"),
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl XcpngOptions {
    /// Parses the kind's own keys (the VM options minus the common ones) on top of
    /// `base`'s (a manager's defaults) when there is one.
    pub fn from_json(
        own: serde_json::Map<String, serde_json::Value>,
        base: Option<&XcpngOptions>,
    ) -> Result<Self> {
        let mut map = base.map(|b| b.source.0.clone()).unwrap_or_default();
        map.extend(own);
        let source = Source(map.clone());
        let raw: Raw = serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            Error::invalid(format!(
                "xcpng VM options: {e} (xcpng keys: {})",
                XCPNG_OPTION_KEYS.join(", ")
            ))
        })?;
        // The original's checks, in its order and with its words.
        let host = pick(raw.xcp_host, raw.xapi_url, "'xcp_host' and 'xapi_url'")?
            .ok_or_else(|| missing("xcp_host"))?;
        let user = pick(
            raw.xcp_username,
            raw.username,
            "'xcp_username' and 'username'",
        )?
        .ok_or_else(|| missing("xcp_username"))?;
        let password = pick(
            raw.xcp_password,
            raw.password,
            "'xcp_password' and 'password'",
        )?
        .ok_or_else(|| missing("xcp_password"))?;
        let template = pick(
            raw.template_name,
            raw.template,
            "'template_name' and 'template'",
        )?;
        let target = match (template, raw.vm_uuid) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "give 'template_name' (deploy) or 'vm_uuid' (attach), not both",
                ))
            }
            (Some(t), None) if !t.trim().is_empty() => Target::Template(t),
            (None, Some(u)) if !u.trim().is_empty() => Target::Attach(u),
            _ => return Err(missing("template_name")),
        };
        let tls = TlsOptions {
            ca_file: raw.ca_file,
            fingerprint: raw.tls_fingerprint,
            insecure: raw.insecure.unwrap_or(false),
        }
        .policy()
        .map_err(|e| e.into_error("xcpng VM options"))?;
        let mut xapi = XapiConfig::new(&host, &user, password, tls)
            .map_err(|e| e.into_error("xcpng VM options"))?;
        xapi.set_limits(
            raw.connect_timeout,
            raw.call_timeout,
            raw.max_calls_in_flight,
            raw.poll_interval,
            raw.transient_retries,
            raw.retry_backoff,
        )
        .map_err(|e| e.into_error("xcpng VM options"))?;
        let v = raw.vm_config.unwrap_or_default();
        let hardware = Hardware {
            vcpus: pick(raw.vcpus, v.vcpus, "'vcpus' and 'vm_config.vcpus'")?,
            memory_mb: pick(
                raw.memory_mb,
                v.memory_mb,
                "'memory_mb' and 'vm_config.memory_mb'",
            )?,
            network: pick(raw.network, v.network, "'network' and 'vm_config.network'")?,
            sr: pick(raw.sr, v.sr, "'sr' and 'vm_config.sr'")?,
            full_copy: pick(
                raw.full_copy,
                v.full_copy,
                "'full_copy' and 'vm_config.full_copy'",
            )?,
        };
        if hardware.vcpus == Some(0) || hardware.vcpus.is_some_and(|n| n > 512) {
            return Err(Error::invalid("option 'vcpus' must be from 1 to 512"));
        }
        if hardware
            .memory_mb
            .is_some_and(|m| !(16..=(16 << 20)).contains(&m))
        {
            return Err(Error::invalid(
                "option 'memory_mb' must be from 16 to 16777216 (MiB)",
            ));
        }
        if let Some(id) = &raw.deploy_id {
            if !valid_id(id) {
                return Err(Error::invalid(
                    "option 'deploy_id' must be 1 to 64 letters, digits, '-', '_' or '.'",
                ));
            }
        }
        if let Some(n) = &raw.vm_name {
            if n.trim().is_empty() || n.contains('\0') {
                return Err(Error::invalid("option 'vm_name' must not be empty"));
            }
        }
        let public_key = match raw.guest_public_key {
            Some(k) => Some(k),
            None => raw
                .vm_key_file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(format!("{f}.pub")).ok()),
        }
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
        if let Some(k) = &public_key {
            if k.contains('\n') || k.split_whitespace().count() < 2 {
                return Err(Error::invalid(
                    "option 'guest_public_key' must be one public key line (type and base64, as in a .pub file)",
                ));
            }
        }
        let key_injection = raw.key_injection.unwrap_or(if public_key.is_some() {
            KeyInjection::Xenstore
        } else {
            KeyInjection::Template
        });
        if key_injection == KeyInjection::Xenstore && public_key.is_none() {
            return Err(Error::invalid(
                "key_injection 'xenstore' needs 'guest_public_key', or 'vm_key_file' with its .pub file beside it",
            ));
        }
        if raw.vm_password.is_none() && raw.vm_key_file.is_none() {
            return Err(Error::Original {
                status: crate::status::bioxen_vm_status::VmManagerError,
                message: "an xcpng VM needs 'vm_key_file' or 'vm_password' to log in to the guest"
                    .into(),
            });
        }
        if let Some(fp) = &raw.guest_host_key_fingerprint {
            let b64 = fp.strip_prefix("SHA256:").unwrap_or("");
            if crate::vm::ssh::options::base64_decode(b64).is_none_or(|d| d.len() != 32) {
                return Err(Error::invalid(
                    "option 'guest_host_key_fingerprint' must be SHA256:<base64 of 32 bytes>, as ssh-keygen -lf prints it",
                ));
            }
        }
        let secs = |v, key: &str, default, max| {
            seconds(v, key, default, max).map_err(|e| e.into_error("xcpng VM options"))
        };
        Ok(XcpngOptions {
            source,
            xapi,
            target,
            vm_name: raw.vm_name,
            deploy_id: raw.deploy_id,
            hardware,
            guest_user: raw.vm_username.unwrap_or_else(|| "root".into()),
            guest_password: raw.vm_password,
            guest_key_file: raw.vm_key_file,
            guest_key_passphrase: raw.vm_key_passphrase,
            guest_public_key: public_key,
            key_injection,
            guest_port: match raw.guest_port {
                Some(0) => {
                    return Err(Error::invalid(
                        "option 'guest_port' must be from 1 to 65535",
                    ))
                }
                p => p.unwrap_or(22),
            },
            guest_host_key_fingerprint: raw.guest_host_key_fingerprint,
            expected_ip_cidr: raw
                .expected_ip_cidr
                .as_deref()
                .map(Cidr::parse)
                .transpose()?,
            allow_ipv6: raw.allow_ipv6.unwrap_or(true),
            boot_timeout: secs(raw.boot_timeout, "boot_timeout", 300.0, 86400.0)?,
            task_timeout: secs(raw.task_timeout, "task_timeout", 600.0, 86400.0)?,
            shutdown_timeout: secs(raw.shutdown_timeout, "shutdown_timeout", 60.0, 3600.0)?,
        })
    }

    /// The options as `info` shows them: no secret, only whether one was given.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("xapi_url".into(), self.xapi.url.clone().into());
        m.insert("xcp_username".into(), self.xapi.username.clone().into());
        m.insert(
            "tls".into(),
            match &self.xapi.tls {
                crate::xapi::TlsPolicy::System => "system roots".to_string(),
                crate::xapi::TlsPolicy::CaFile(f) => format!("ca_file {f}"),
                crate::xapi::TlsPolicy::Pinned(fp) => {
                    format!("pinned {}", crate::xapi::config::fingerprint_text(fp))
                }
                crate::xapi::TlsPolicy::Insecure => "insecure".to_string(),
            }
            .into(),
        );
        match &self.target {
            Target::Template(t) => m.insert("template_name".into(), t.clone().into()),
            Target::Attach(u) => m.insert("attached_vm_uuid".into(), u.clone().into()),
        };
        m.insert("vm_username".into(), self.guest_user.clone().into());
        m.insert("vm_key_file".into(), self.guest_key_file.clone().into());
        m.insert(
            "key_injection".into(),
            match self.key_injection {
                KeyInjection::Xenstore => "xenstore",
                KeyInjection::Template => "template",
            }
            .into(),
        );
        m.insert("guest_port".into(), self.guest_port.into());
        m.insert(
            "boot_timeout".into(),
            self.boot_timeout.as_secs_f64().into(),
        );
        m
    }
}
