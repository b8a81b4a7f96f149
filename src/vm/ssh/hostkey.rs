//! Checking the server's host key: against a known_hosts file (read only, never written),
//! against a pinned `SHA256:` fingerprint, or not at all when the caller asked for that
//! explicitly. There is no trust on first use.
//!
//! known_hosts lines follow OpenSSH (`sshd(8)`, "SSH_KNOWN_HOSTS FILE FORMAT"): a comma
//! list of host patterns (`*` and `?` wildcards, `!` negation, `[host]:port` for other
//! ports than 22) or one hashed name (`|1|salt|hash`, HMAC-SHA1), the key type and the key.
//! A host on a port other than 22 is looked up as `[host]:port` only, as OpenSSH does.
//! `@revoked` keys are refused; `@cert-authority` lines are passed over (libssh2 cannot
//! verify host certificates).

use super::digest::{hmac_sha1, sha256};
use super::options::{base64_decode, base64_encode, HostKeyPolicy, SshOptions};
use crate::error::{Error, Result};

/// `SHA256:<base64>` of a key blob, as `ssh-keygen -lf` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", base64_encode(&sha256(blob)))
}

/// The key type a key blob names (its first SSH string), e.g. `ssh-ed25519`.
pub fn key_type(blob: &[u8]) -> String {
    let n = blob
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(0);
    blob.get(4..4 + n)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_else(|| "unknown".to_string())
}

/// One usable known_hosts line.
struct Entry {
    revoked: bool,
    hosts: String,
    key_type: String,
    key: Vec<u8>,
}

fn entries(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let mut first = words.next().unwrap_or_default();
        let mut revoked = false;
        if first.starts_with('@') {
            match first {
                "@revoked" => revoked = true,
                _ => continue, // @cert-authority: not supported
            }
            first = words.next().unwrap_or_default();
        }
        let (Some(kt), Some(k64)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(key) = base64_decode(k64) else {
            continue;
        };
        out.push(Entry {
            revoked,
            hosts: first.to_string(),
            key_type: kt.to_string(),
            key,
        });
    }
    out
}

/// OpenSSH's glob: `*` any run, `?` one character.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| glob(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((c, rest)) => {
            name.first().is_some_and(|n| n.eq_ignore_ascii_case(c)) && glob(rest, &name[1..])
        }
    }
}

/// Whether an entry's host field names `name` (`host` or `[host]:port`).
fn names(hosts: &str, name: &str) -> bool {
    if let Some(rest) = hosts.strip_prefix("|1|") {
        let mut parts = rest.split('|');
        let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
            return false;
        };
        let (Some(salt), Some(hash)) = (base64_decode(salt), base64_decode(hash)) else {
            return false;
        };
        return hmac_sha1(&salt, name.as_bytes()).as_slice() == hash.as_slice();
    }
    let mut matched = false;
    for p in hosts.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), name.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// The name a host is looked up under.
fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The host key algorithms to prefer for `host` (the types its entries hold), so that a
/// server with several keys offers the one known_hosts has. Empty: no preference.
pub fn preferred_methods(o: &SshOptions) -> String {
    if o.host_key_policy != HostKeyPolicy::Strict || o.host_key_fingerprint.is_some() {
        return String::new();
    }
    let Ok(text) = std::fs::read_to_string(&o.known_hosts) else {
        return String::new();
    };
    let name = lookup_name(&o.host, o.port);
    let mut methods: Vec<&str> = Vec::new();
    for e in entries(&text) {
        if e.revoked || !names(&e.hosts, &name) {
            continue;
        }
        let algs: &[&str] = match e.key_type.as_str() {
            "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            "ssh-ed25519" => &["ssh-ed25519"],
            "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
            "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
            "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
            _ => &[],
        };
        for a in algs {
            if !methods.contains(a) {
                methods.push(a);
            }
        }
    }
    methods.join(",")
}

fn refused(message: String) -> Error {
    Error::Original {
        status: crate::status::bioxen_vm_status::VmConnectionError,
        message,
    }
}

/// Checks the key the server offered (`blob`); its fingerprint when it is accepted.
pub fn verify(o: &SshOptions, blob: &[u8]) -> Result<String> {
    let offered = fingerprint(blob);
    let kt = key_type(blob);
    let target = format!("{}:{}", o.host, o.port);
    if let Some(pin) = &o.host_key_fingerprint {
        if *pin == offered {
            return Ok(offered);
        }
        return Err(refused(format!(
            "host key of {target} does not match host_key_fingerprint: the server offered {offered} ({kt}), the pinned fingerprint is {pin}; refusing to connect"
        )));
    }
    if o.host_key_policy == HostKeyPolicy::InsecureAcceptAny {
        log::warn!(
            target: "bioxen_vm::ssh",
            "host key of {target} accepted without checking (host_key_policy = insecure-accept-any): {offered} ({kt})"
        );
        return Ok(offered);
    }
    let hint = format!(
        "pin it with host_key_fingerprint = \"{offered}\" after checking it out of band, or add it to known_hosts (ssh-keyscan -p {} {}); host_key_policy = \"insecure-accept-any\" turns checking off",
        o.port, o.host
    );
    let text = std::fs::read_to_string(&o.known_hosts).map_err(|e| {
        refused(format!(
            "host key of {target} cannot be checked: known_hosts file {} could not be read ({e}); the server offered {offered} ({kt}); {hint}",
            o.known_hosts
        ))
    })?;
    let name = lookup_name(&o.host, o.port);
    let mut known = Vec::new();
    for e in entries(&text) {
        if !names(&e.hosts, &name) {
            continue;
        }
        if e.key == blob {
            if e.revoked {
                return Err(refused(format!(
                    "host key of {target} is marked @revoked in {}: {offered} ({kt}); refusing to connect",
                    o.known_hosts
                )));
            }
            return Ok(offered);
        }
        if !e.revoked {
            known.push(format!("{} ({})", fingerprint(&e.key), e.key_type));
        }
    }
    if known.is_empty() {
        return Err(refused(format!(
            "host key of {target} is unknown: {name} is not in {}; the server offered {offered} ({kt}); {hint}",
            o.known_hosts
        )));
    }
    Err(refused(format!(
        "host key of {target} has CHANGED (or someone is in the middle): the server offered {offered} ({kt}), {} has {}; refusing to connect",
        o.known_hosts,
        known.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_hashed_names() {
        assert!(names("example.com,10.0.0.1", "10.0.0.1"));
        assert!(names("*.example.com", "a.example.com"));
        assert!(!names("*.example.com,!b.example.com", "b.example.com"));
        assert!(names("[127.0.0.1]:2222", "[127.0.0.1]:2222"));
        assert!(!names("127.0.0.1", "[127.0.0.1]:2222"));
        assert!(names("host?", "host1"));
        // `ssh-keygen -H` form of "localhost" with this salt.
        let salt = [7u8; 20];
        let hash = hmac_sha1(&salt, b"localhost");
        let line = format!("|1|{}|{}", base64_encode(&salt), base64_encode(&hash));
        assert!(names(&line, "localhost"));
        assert!(!names(&line, "otherhost"));
    }
}
