//! XAPI sessions from C: open one from a configuration, call any XAPI method with JSON
//! parameters, close it.

use super::boundary::{call, opt_out, opt_text, out, text};
use super::types::bioxen_vm_bytes;
use crate::error::Error;
use crate::registry;
use crate::vm::options::parse_object;
use crate::xapi::{Client, XapiConfig};
use std::ffi::c_char;

/// Opens an XAPI session (logs in) and writes its handle to `*out_session`.
///
/// `config_json` is a JSON object: `url` ("https://host[:port]", "http://..." or a bare
/// host, which means https), `username`, `password` (never shown in messages, logs or
/// info), and at most one of `tls_fingerprint` (the SHA-256 digest of the host's
/// certificate, 64 hex digits with or without colons, as `openssl x509 -noout
/// -fingerprint -sha256` prints it: XCP-ng hosts present self-signed certificates, so
/// this is the usual way), `ca_file` (a PEM file of trusted roots) and `insecure` (true:
/// nothing is checked, logged as a warning); with none, the system's roots are used.
/// Limits: `connect_timeout` (seconds, 10), `call_timeout` (seconds per HTTP request, 60),
/// `max_calls_in_flight` (20), `poll_interval` (seconds between polls of a task, 0.25),
/// `transient_retries` (10) and `retry_backoff` (seconds, 0.5, doubling up to 5).
/// Unknown keys, and a key given twice, are an error.
///
/// The session logs in with the originator "bioxen_vm/<version>" (JSON-RPC; XML-RPC when
/// the host does not serve JSON-RPC), follows HOST_IS_SLAVE to the pool master once, logs
/// in again and retries once on SESSION_INVALID, and retries lost connections only for
/// read-only calls. Blocks while it connects and logs in. The caller owns the handle and
/// closes it with `bioxen_vm_xapi_close`; the handle may be used from any thread, by
/// several at once.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_ARGUMENT, XCPNG_CONNECTION_ERROR
/// (unreachable host, refused certificate, refused login), TIMEOUT, VM_MANAGER_ERROR (any
/// other XAPI error).
///
/// # Safety
/// `config_json` must be a NUL-terminated string; `out_session` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_xapi_open(
    config_json: *const c_char,
    out_session: *mut u64,
) -> i32 {
    call(|| {
        let text = text(config_json, "config_json")?;
        let out_session = out(out_session, "out_session")?;
        let cfg = XapiConfig::from_json(parse_object(text, "XAPI options")?)
            .map_err(|e| e.into_error(""))?;
        let url = cfg.url.clone();
        let c = Client::connect(cfg).map_err(|e| e.into_error(&format!("XAPI at {url}")))?;
        *out_session = registry::add_xapi(c);
        Ok(())
    })
}

/// Calls the XAPI method `method` (e.g. "VM.get_all_records", "Async.VM.start") with the
/// JSON array `params_json` (NULL or "" for none; the session reference is put first by
/// the library, except for `system.*` methods). On success writes the result as JSON to
/// `*out_result` (free with `bioxen_vm_bytes_free`). On an XAPI error writes
/// `{"code": "<XAPI error code>", "params": [...]}` to `*out_error` (if not NULL; free it
/// too); other failures are written there with the codes "TRANSPORT", "PROTOCOL", "TLS",
/// "TIMEOUT". Integers are 64-bit; XAPI's non-finite floats arrive as the strings
/// "Infinity", "-Infinity", "NaN". `session.logout` is refused: close the session.
/// Any thread, concurrently.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, INVALID_ARGUMENT,
/// VM_MANAGER_ERROR (XAPI answered with an error), XCPNG_CONNECTION_ERROR, TIMEOUT.
///
/// # Safety
/// `method` must be a NUL-terminated string; `params_json` NULL or NUL-terminated;
/// `out_result` valid for writes; `out_error` NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_xapi_call(
    session: u64,
    method: *const c_char,
    params_json: *const c_char,
    out_result: *mut bioxen_vm_bytes,
    out_error: *mut bioxen_vm_bytes,
) -> i32 {
    let mut err_out = opt_out(out_error);
    if let Some(e) = err_out.as_deref_mut() {
        *e = bioxen_vm_bytes::empty();
    }
    call(|| {
        let method = text(method, "method")?;
        let params = opt_text(params_json, "params_json")?;
        let out_result = out(out_result, "out_result")?;
        let params = match super::boundary::json_args(params)? {
            Some(serde_json::Value::Array(a)) => a,
            _ => Vec::new(),
        };
        if method.is_empty() || method.contains(char::is_whitespace) {
            return Err(Error::invalid(
                "method must be an XAPI method name such as VM.get_all",
            ));
        }
        let c = registry::xapi(session)?;
        match c.call(method, &params) {
            Ok(v) => {
                *out_result = bioxen_vm_bytes::from_string(v.to_string());
                Ok(())
            }
            Err(e) => {
                if let Some(o) = err_out {
                    *o = bioxen_vm_bytes::from_string(e.to_json().to_string());
                }
                Err(e.into_error(method))
            }
        }
    })
}

/// Writes facts about the session as JSON to `*out_json` (free with
/// `bioxen_vm_bytes_free`): `url` (where calls go now: the master's address after a
/// HOST_IS_SLAVE redirect), `protocol` ("json-rpc" | "xml-rpc"), `open`, and the counters
/// `requests`, `logins`, `retries`. Any thread.
/// Statuses: OK, NULL_POINTER, INVALID_HANDLE.
///
/// # Safety
/// `out_json` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_xapi_info(session: u64, out_json: *mut bioxen_vm_bytes) -> i32 {
    call(|| {
        let out_json = out(out_json, "out_json")?;
        let c = registry::xapi(session)?;
        let s = c.stats();
        let v = serde_json::json!({
            "url": c.base(),
            "protocol": match c.proto() {
                crate::xapi::client::Proto::JsonRpc => "json-rpc",
                crate::xapi::client::Proto::XmlRpc => "xml-rpc",
            },
            "open": c.is_open(),
            "requests": s.requests,
            "logins": s.logins,
            "retries": s.retries,
        });
        *out_json = bioxen_vm_bytes::from_string(v.to_string());
        Ok(())
    })
}

/// Logs the session out and frees the handle (calls running on other threads finish
/// first; the logout happens when the last of them returns). `session == 0` is a no-op.
/// Any thread. A failed logout is logged, not returned.
/// Statuses: OK, INVALID_HANDLE.
#[no_mangle]
pub extern "C" fn bioxen_vm_xapi_close(session: u64) -> i32 {
    call(|| {
        if session == 0 {
            return Ok(());
        }
        let c = registry::take_xapi(session)?;
        if std::sync::Arc::strong_count(&c) == 1 {
            c.logout();
        }
        Ok(())
    })
}
