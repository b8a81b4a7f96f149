//! One logged-in XAPI session over HTTP/1.1 keep-alive connections (ureq), shared by
//! every thread that works on the pool.
//!
//! - JSON-RPC 2.0 on `/jsonrpc`; XML-RPC on `/` only when the host does not serve JSON-RPC
//!   (a `/jsonrpc` reply that is a 404 or not `application/json`), detected at login.
//! - `session.login_with_password(user, password, "1.0", ORIGINATOR)`; `HOST_IS_SLAVE`
//!   at login is followed once to the master (same scheme and port). The session is logged
//!   out by [`Client::logout`] and when the client is dropped.
//! - `SESSION_INVALID` logs in again (once for all the threads that saw it) and retries the
//!   call once: XAPI did not run it.
//! - A lost connection is retried (three attempts) only for read-only calls (`get_*`,
//!   `system.listMethods`); a state-changing call reports it (it may have run).
//! - At most `max_calls` calls are in flight at once.

use super::config::{XapiConfig, ORIGINATOR};
use super::error::XapiError;
use super::wire;
use parking_lot::{Condvar, Mutex};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// The protocol a host speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    JsonRpc,
    XmlRpc,
}

struct State {
    /// Where calls go: the configured address, or the master it redirected to.
    base: String,
    session: Option<String>,
    proto: Proto,
    /// Bumped at every login, so that threads that saw the same SESSION_INVALID log in once.
    generation: u64,
}

/// A counting gate: at most `max` holders.
struct Gate {
    used: Mutex<usize>,
    cond: Condvar,
    max: usize,
}

struct Pass<'a>(&'a Gate);

impl Gate {
    fn enter(&self) -> Pass<'_> {
        let mut u = self.used.lock();
        while *u >= self.max {
            self.cond.wait(&mut u);
        }
        *u += 1;
        Pass(self)
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        *self.0.used.lock() -= 1;
        self.0.cond.notify_one();
    }
}

/// Counters of one client (for `info`, tests and benchmarks).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// HTTP requests sent.
    pub requests: u64,
    pub logins: u64,
    /// Calls retried after SESSION_INVALID or a lost connection.
    pub retries: u64,
}

/// A logged-in XAPI session.
pub struct Client {
    cfg: XapiConfig,
    agent: ureq::Agent,
    state: Mutex<State>,
    /// Held while logging in.
    login_lock: Mutex<()>,
    gate: Gate,
    next_id: AtomicU64,
    requests: AtomicU64,
    logins: AtomicU64,
    retries: AtomicU64,
}

/// Whether `method` only reads (so that a lost reply may be asked again).
pub fn read_only(method: &str) -> bool {
    if method.starts_with("Async.") {
        return false;
    }
    let name = method.rsplit('.').next().unwrap_or("");
    name.starts_with("get_") || method == "system.listMethods" || method == "event.from"
}

/// Whether `method` takes no session argument.
pub fn sessionless(method: &str) -> bool {
    method.starts_with("system.")
        || method == "session.login_with_password"
        || method == "session.slave_local_login_with_password"
}

fn transport_error(url: &str, e: ureq::Error, timeout: Duration) -> XapiError {
    match e {
        ureq::Error::Status(code, resp) => {
            let body = resp.into_string().unwrap_or_default();
            XapiError::Protocol(format!(
                "{url} answered HTTP {code}: {}",
                wire::excerpt(body.trim())
            ))
        }
        ureq::Error::Transport(t) => {
            let text = t.to_string();
            let lower = text.to_ascii_lowercase();
            if lower.contains("certificate")
                || lower.contains("handshake")
                || lower.contains("tls")
                || lower.contains("fingerprint")
            {
                XapiError::Tls(format!("TLS with {url} failed: {text}"))
            } else if lower.contains("timed out") || lower.contains("would block") {
                XapiError::Timeout(format!(
                    "{url} did not answer within {} seconds",
                    crate::vm::seconds_text(timeout)
                ))
            } else if t.kind() == ureq::ErrorKind::ConnectionFailed
                || t.kind() == ureq::ErrorKind::Dns
            {
                XapiError::Transport(format!("cannot connect to {url}: {text}"))
            } else {
                XapiError::Transport(format!("the connection to {url} was lost: {text}"))
            }
        }
    }
}

/// `scheme://master[:port]` for a `HOST_IS_SLAVE` redirect from `base`.
fn master_url(base: &str, master: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let port = rest
        .rsplit_once(':')
        .filter(|(h, p)| !h.ends_with(']') || p.chars().all(|c| c.is_ascii_digit()))
        .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        .map(|(_, p)| p);
    let host = if master.contains(':') && !master.starts_with('[') {
        format!("[{master}]")
    } else {
        master.to_string()
    };
    match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    }
}

impl Client {
    /// Connects and logs in.
    pub fn connect(cfg: XapiConfig) -> Result<Arc<Client>, XapiError> {
        let mut b = ureq::AgentBuilder::new()
            .timeout_connect(cfg.connect_timeout)
            .redirects(0)
            .max_idle_connections_per_host(cfg.max_calls)
            .user_agent(ORIGINATOR)
            .no_delay(true);
        if cfg.url.starts_with("https://") {
            b = b.tls_config(super::tls::client_config(&cfg.tls, &cfg.url)?);
        }
        let c = Arc::new(Client {
            agent: b.build(),
            state: Mutex::new(State {
                base: cfg.url.clone(),
                session: None,
                proto: Proto::JsonRpc,
                generation: 0,
            }),
            login_lock: Mutex::new(()),
            gate: Gate {
                used: Mutex::new(0),
                cond: Condvar::new(),
                max: cfg.max_calls,
            },
            next_id: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            cfg,
        });
        c.login(None)?;
        Ok(c)
    }

    pub fn config(&self) -> &XapiConfig {
        &self.cfg
    }

    /// The address calls go to now (the master's after a redirect).
    pub fn base(&self) -> String {
        self.state.lock().base.clone()
    }

    pub fn proto(&self) -> Proto {
        self.state.lock().proto
    }

    /// The session reference (for HTTP handlers such as `/import_raw_vdi`).
    pub fn session_ref(&self) -> Option<String> {
        self.state.lock().session.clone()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.requests.load(Relaxed),
            logins: self.logins.load(Relaxed),
            retries: self.retries.load(Relaxed),
        }
    }

    /// The agent, for other HTTP requests to the pool (uploads).
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// One HTTP request: `method(params)` to `base` over `proto`.
    fn send(
        &self,
        base: &str,
        proto: Proto,
        method: &str,
        params: &[Value],
        timeout: Duration,
    ) -> Result<Value, XapiError> {
        let _pass = self.gate.enter();
        self.requests.fetch_add(1, Relaxed);
        let (url, body, ctype) = match proto {
            Proto::JsonRpc => (
                format!("{base}/jsonrpc"),
                wire::jsonrpc_request(method, params, self.next_id.fetch_add(1, Relaxed)),
                "application/json",
            ),
            Proto::XmlRpc => (
                format!("{base}/"),
                super::xml::method_call(method, params).into_bytes(),
                "text/xml",
            ),
        };
        log::trace!(target: "bioxen_vm::xapi", "-> {method} ({} bytes)", body.len());
        let resp = self
            .agent
            .post(&url)
            .timeout(timeout)
            .set("Content-Type", ctype)
            .send_bytes(&body)
            .map_err(|e| transport_error(&url, e, timeout))?;
        let json = resp.content_type().eq_ignore_ascii_case("application/json");
        let text = resp
            .into_string()
            .map_err(|e| XapiError::Transport(format!("the reply from {url} was cut: {e}")))?;
        match proto {
            Proto::JsonRpc if !json => Err(XapiError::Protocol(format!(
                "{url} did not answer with JSON: {}",
                wire::excerpt(&text)
            ))),
            Proto::JsonRpc => wire::jsonrpc_response(&text),
            Proto::XmlRpc => wire::xmlrpc_response(&text),
        }
    }

    /// Logs in (again), unless another thread did since `seen` (a generation).
    fn login(&self, seen: Option<u64>) -> Result<(), XapiError> {
        let _l = self.login_lock.lock();
        if let Some(g) = seen {
            if self.state.lock().generation != g {
                return Ok(());
            }
        }
        let params = [
            Value::from(self.cfg.username.clone()),
            Value::from(self.cfg.password.expose()),
            Value::from("1.0"),
            Value::from(ORIGINATOR),
        ];
        let (mut base, mut proto) = {
            let s = self.state.lock();
            (s.base.clone(), s.proto)
        };
        let mut followed = false;
        let mut fell_back = false;
        let timeout = self.cfg.call_timeout.min(Duration::from_secs(60));
        loop {
            self.logins.fetch_add(1, Relaxed);
            match self.send(
                &base,
                proto,
                "session.login_with_password",
                &params,
                timeout,
            ) {
                Ok(Value::String(r)) if !r.is_empty() => {
                    let mut s = self.state.lock();
                    s.base = base;
                    s.proto = proto;
                    s.session = Some(r);
                    s.generation += 1;
                    log::debug!(target: "bioxen_vm::xapi", "logged in to {} as {} ({:?})", s.base, self.cfg.username, proto);
                    return Ok(());
                }
                Ok(other) => {
                    return Err(XapiError::Protocol(format!(
                        "session.login_with_password returned {other}, not a session"
                    )))
                }
                Err(XapiError::Fault { code, params }) if code == "HOST_IS_SLAVE" && !followed => {
                    let master = params.first().cloned().unwrap_or_default();
                    if master.is_empty() {
                        return Err(XapiError::Fault { code, params });
                    }
                    let to = master_url(&base, &master);
                    log::info!(target: "bioxen_vm::xapi", "{base} is a pool member; following HOST_IS_SLAVE to the master {to}");
                    base = to;
                    followed = true;
                }
                Err(XapiError::Protocol(m))
                    if proto == Proto::JsonRpc
                        && !fell_back
                        && (m.contains("did not answer with JSON")
                            || m.contains("HTTP 404")
                            || m.contains("HTTP 405")) =>
                {
                    log::info!(target: "bioxen_vm::xapi", "{base} does not serve JSON-RPC ({m}); using XML-RPC");
                    proto = Proto::XmlRpc;
                    fell_back = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Calls `method` with `params` (the session is put first, except for the methods that
    /// take none), with the recoveries of the module docs.
    pub fn call(&self, method: &str, params: &[Value]) -> Result<Value, XapiError> {
        self.call_with_timeout(method, params, self.cfg.call_timeout)
    }

    /// `call` with a request limit of its own.
    pub fn call_with_timeout(
        &self,
        method: &str,
        params: &[Value],
        timeout: Duration,
    ) -> Result<Value, XapiError> {
        if method == "session.logout" {
            return Err(XapiError::Config(
                "session.logout is done by closing the session".into(),
            ));
        }
        let mut relogged = false;
        let mut lost = 0;
        loop {
            let (base, proto, session, generation) = {
                let s = self.state.lock();
                (s.base.clone(), s.proto, s.session.clone(), s.generation)
            };
            let mut full = Vec::with_capacity(params.len() + 1);
            if !sessionless(method) {
                let Some(session) = session else {
                    return Err(XapiError::Config("the XAPI session is closed".into()));
                };
                full.push(Value::String(session));
            }
            full.extend_from_slice(params);
            match self.send(&base, proto, method, &full, timeout) {
                Err(XapiError::Fault { code, .. })
                    if code == "SESSION_INVALID" && !relogged && !sessionless(method) =>
                {
                    log::info!(target: "bioxen_vm::xapi", "{method}: the session expired; logging in again");
                    self.retries.fetch_add(1, Relaxed);
                    relogged = true;
                    self.login(Some(generation))?;
                }
                Err(XapiError::Transport(m)) if read_only(method) && lost < 2 => {
                    lost += 1;
                    self.retries.fetch_add(1, Relaxed);
                    log::debug!(target: "bioxen_vm::xapi", "{method}: {m}; asking again");
                    std::thread::sleep(Duration::from_millis(100 * lost));
                }
                other => return other,
            }
        }
    }

    /// Logs out (once; later calls fail). Errors are logged, not returned: the session
    /// is gone from our side either way.
    pub fn logout(&self) {
        let (base, proto, session) = {
            let mut s = self.state.lock();
            (s.base.clone(), s.proto, s.session.take())
        };
        if let Some(r) = session {
            let t = self.cfg.call_timeout.min(Duration::from_secs(10));
            match self.send(&base, proto, "session.logout", &[Value::String(r)], t) {
                Ok(_) => log::debug!(target: "bioxen_vm::xapi", "logged out of {base}"),
                Err(e) => {
                    log::warn!(target: "bioxen_vm::xapi", "logging out of {base} failed: {e}")
                }
            }
        }
    }

    /// Whether the session is open.
    pub fn is_open(&self) -> bool {
        self.state.lock().session.is_some()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.logout();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_redirects() {
        assert!(read_only("VM.get_record"));
        assert!(read_only("VM.get_all_records"));
        assert!(read_only("task.get_status"));
        assert!(!read_only("Async.VM.get_record"));
        assert!(!read_only("VM.start"));
        assert!(!read_only("VM.set_name_label"));
        assert!(sessionless("system.listMethods"));
        assert!(!sessionless("VM.start"));
        assert_eq!(
            master_url("https://10.0.0.2", "10.0.0.1"),
            "https://10.0.0.1"
        );
        assert_eq!(
            master_url("http://127.0.0.2:8080", "127.0.0.1"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            master_url("https://h:443", "fe80::1"),
            "https://[fe80::1]:443"
        );
    }
}
