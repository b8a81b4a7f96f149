//! Authenticating an SSH session, in a documented order: the key file (with its
//! passphrase), then the password, then every identity of the running ssh-agent
//! (`SSH_AUTH_SOCK`, unless `use_agent` is false). Failures name the methods tried and
//! what the server accepts, never a secret.

use super::options::SshOptions;
use crate::error::{Error, Result};
use crate::status::bioxen_vm_status as St;
use ssh2::Session;
use std::path::Path;

fn failed(message: String) -> Error {
    Error::Original {
        status: St::VmConnectionError,
        message,
    }
}

/// What a key file looks like, read before handing it to libssh2 (whose errors do not
/// tell a missing file, a non-key and a wrong passphrase apart).
fn check_key_file(path: &str, has_passphrase: bool) -> Result<bool> {
    let text = std::fs::read(path).map_err(|e| {
        failed(format!(
            "key_file '{path}' cannot be read ({e}); give the path of a private key"
        ))
    })?;
    let text = String::from_utf8_lossy(&text);
    if !text.contains("PRIVATE KEY-----") {
        return Err(failed(format!(
            "key_file '{path}' is not a private key (no PEM or OpenSSH private key block)"
        )));
    }
    let encrypted = if text.contains("BEGIN OPENSSH PRIVATE KEY") {
        // openssh-key-v1: the cipher name follows the magic; "none" when not encrypted.
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        super::options::base64_decode(body.trim())
            .map(|b| !b.windows(4).take(64).any(|w| w == b"none"))
            .unwrap_or(false)
    } else {
        text.contains("ENCRYPTED")
    };
    if encrypted && !has_passphrase {
        return Err(failed(format!(
            "key_file '{path}' is encrypted: give its key_passphrase"
        )));
    }
    Ok(encrypted)
}

/// Authenticates `sess` as the options say; the method that worked.
pub fn authenticate(sess: &Session, o: &SshOptions) -> Result<String> {
    let target = o.target();
    let offered = sess
        .auth_methods(&o.username)
        .map(str::to_string)
        .unwrap_or_default();
    if sess.authenticated() {
        return Ok("none".into());
    }
    let mut tried: Vec<String> = Vec::new();
    if let Some(key) = &o.key_file {
        let encrypted = check_key_file(key, o.key_passphrase.is_some())?;
        let pass = o.key_passphrase.as_ref().map(|s| s.expose());
        match sess.userauth_pubkey_file(&o.username, None, Path::new(key), pass) {
            Ok(()) if sess.authenticated() => return Ok("publickey (key_file)".into()),
            Ok(()) => tried.push(format!("publickey with key_file '{key}' (refused)")),
            Err(e) => {
                // -16: libssh2 could not use the file: with a passphrase on an encrypted
                // key, that is a wrong passphrase.
                if e.code() == ssh2::ErrorCode::Session(-16) && encrypted {
                    return Err(failed(format!(
                        "key_file '{key}' could not be decrypted with the key_passphrase given (wrong passphrase?)"
                    )));
                }
                if e.code() == ssh2::ErrorCode::Session(-16) {
                    return Err(failed(format!(
                        "key_file '{key}' could not be used as a private key: {}",
                        e.message()
                    )));
                }
                tried.push(format!("publickey with key_file '{key}' (refused)"));
            }
        }
    }
    if let Some(pw) = &o.password {
        match sess.userauth_password(&o.username, pw.expose()) {
            Ok(()) if sess.authenticated() => return Ok("password".into()),
            _ => tried.push("password (refused)".into()),
        }
    }
    if o.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match agent(sess, &o.username) {
            Ok(Some(n)) => return Ok(format!("publickey (ssh-agent identity {n})")),
            Ok(None) => tried.push("ssh-agent (no identity was accepted)".into()),
            Err(e) => tried.push(format!("ssh-agent ({e})")),
        }
    }
    if tried.is_empty() {
        return Err(failed(format!(
            "authentication to {target} failed: no method to try (give key_file, password, or run an ssh-agent); the server accepts: {offered}"
        )));
    }
    Err(failed(format!(
        "authentication to {target} failed; tried: {}; the server accepts: {offered}",
        tried.join(", ")
    )))
}

/// Tries every agent identity in turn (libssh2's `userauth_agent` tries only the first).
fn agent(sess: &Session, user: &str) -> std::result::Result<Option<usize>, String> {
    let mut agent = sess.agent().map_err(|e| e.message().to_string())?;
    agent.connect().map_err(|e| e.message().to_string())?;
    agent
        .list_identities()
        .map_err(|e| e.message().to_string())?;
    let ids = agent.identities().map_err(|e| e.message().to_string())?;
    for (i, id) in ids.iter().enumerate() {
        if agent.userauth(user, id).is_ok() && sess.authenticated() {
            let _ = agent.disconnect();
            return Ok(Some(i + 1));
        }
    }
    let _ = agent.disconnect();
    Ok(None)
}
