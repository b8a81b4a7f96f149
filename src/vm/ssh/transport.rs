//! The `ssh` kind's transport: the interpreter runs on a remote host, on one exec channel
//! of a shared connection ([`super::conn`]).
//!
//! The channel runs a fixed POSIX `sh` launcher (no value is pasted into it: the
//! interpreter's name, the bootstrap and the tag arrive as quoted arguments). The launcher
//! reports its pid (which the interpreter keeps: it is `exec`ed, and sshd made it a
//! session and process-group leader), starts a guard, and execs `<lua> -e <bootstrap>`
//! with descriptor 3 on the channel's stdout (the frames) and its stdout on the channel's
//! stderr: over SSH the interpreter's raw stdout and stderr both arrive as stderr.
//!
//! Every process of the VM carries an environment tag. Stopping the VM runs a short
//! command on another channel that kills the interpreter's process group and every tagged
//! process. The guard (in a session of its own) does the same as soon as the interpreter
//! ends or the SSH session that started it goes away (the host died, the connection
//! dropped), so no process of the VM outlives it on the remote host.

use super::conn::{wait_readable, Connection, Exit};
use super::options::SshOptions;
use super::pool;
use crate::error::{Error, Result};
use crate::status::bioxen_vm_status as St;
use crate::vm::shell::quote;
use crate::vm::transport::{Channel, Ended, Pumped, Transport, Waker};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kills the VM's process group ($1) and every process tagged $2 but the caller, which is
/// the top-level shell of its channel (so `$$` is its own pid).
const SWEEP: &str = r#"kill -KILL -"$1" 2>/dev/null; for f in $(grep -lzx "BIOXEN_VM_PROCESS=$2" /proc/[0-9]*/environ 2>/dev/null); do p=${f#/proc/}; p=${p%/environ}; [ "$p" = "$$" ] || kill -KILL "$p" 2>/dev/null; done; exit 0"#;

/// A subshell that waits while the SSH session process (`$PPID`) and the interpreter (`$$`,
/// which the launcher's shell becomes) live, then kills every other process tagged for the
/// VM and the interpreter's process group (itself included, last). It reads its own pid
/// from /proc/self/stat (in a subshell `$$` is the parent's).
const GUARD: &str = r#"(while kill -0 "$PPID" 2>/dev/null && kill -0 "$$" 2>/dev/null; do sleep 1; done; read -r me _ </proc/self/stat; for f in $(grep -lzx "BIOXEN_VM_PROCESS=$BIOXEN_VM_PROCESS" /proc/[0-9]*/environ 2>/dev/null); do p=${f#/proc/}; p=${p%/environ}; [ "$p" = "$me" ] || kill -KILL "$p" 2>/dev/null; done; kill -KILL -"$$" 2>/dev/null) </dev/null >/dev/null 2>&1 &"#;

/// The launcher, run by the user's login shell (a POSIX sh): `$1` the interpreter, `$2`
/// the bootstrap, `$3` the tag, then `K=V` settings to export (a package environment's
/// module paths), set by the quoted `set --` in front of it.
fn launcher() -> String {
    format!(
        r#"bx_lua=$1 bx_boot=$2 BIOXEN_VM_PROCESS=$3; export BIOXEN_VM_PROCESS; shift 3; for bx_kv in "$@"; do export "$bx_kv"; done; command -v "$bx_lua" >/dev/null 2>&1 || {{ printf 'bioxen-vm-no-lua\n'; exit 127; }}; printf 'bioxen-vm-pid %s\n' "$$"; {GUARD} exec "$bx_lua" -e "$bx_boot" 3>&1 1>&2"#
    )
}

/// `set -- 'a' 'b' ...; script`: the script with its arguments, each quoted, for a login
/// shell to run without another shell or `env` in between. None: an argument holds a NUL.
fn with_args(script: &str, args: &[&str]) -> Option<String> {
    let mut cmd = String::from("set --");
    for a in args {
        cmd.push(' ');
        cmd.push_str(&quote(a)?);
    }
    cmd.push_str("; ");
    cmd.push_str(script);
    Some(cmd)
}

/// What the remote side is.
struct Remote {
    conn: Arc<Connection>,
    chan: u64,
    /// The interpreter's pid (and process group), once the launcher said it.
    pid: Option<i32>,
    /// Stdout bytes before the pid line was complete.
    head: Vec<u8>,
    exit: Option<Exit>,
}

/// Where an `ssh` VM's interpreter runs.
pub struct SshTransport {
    opts: Arc<SshOptions>,
    lua_executable: String,
    memory_limit: Option<usize>,
    tag: String,
    notify: Arc<Waker>,
    remote: Option<Remote>,
    /// Frames read while draining raw output, for the next pump.
    frames: Vec<u8>,
    out: Vec<u8>,
    err: Vec<u8>,
    /// Why the last call could not reach the interpreter (a status, not a result).
    broken: Option<Error>,
    /// The package environment on the host (the VM option `env`), and what it gives the
    /// interpreter once read there.
    env: Option<String>,
    modules: Option<crate::packages::remote::RemoteModules>,
}

fn connection_lost(target: &str, why: &str) -> Error {
    Error::Original {
        status: St::VmConnectionError,
        message: format!(
            "the connection to {target} was lost ({why}); the VM's state was lost and the next call reconnects"
        ),
    }
}

fn signal_number(name: &str) -> i32 {
    match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ABRT" => 6,
        "KILL" => 9,
        "SEGV" => 11,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 0,
    }
}

fn ended_of(exit: &Option<Exit>) -> Ended {
    match exit {
        Some(Exit::Exited { code, signal }) => Ended {
            code: *code,
            signal: signal.as_deref().map(signal_number).filter(|n| *n != 0),
        },
        _ => Ended::default(),
    }
}

/// TCP connections that fail are tried again (three attempts in all, 100 and 300 ms
/// apart); handshake, authentication and host-key failures never are.
fn connect_with_retries(o: &SshOptions) -> Result<Arc<Connection>> {
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        tries += 1;
        match pool::connection(o) {
            Ok(c) => return Ok(c),
            Err(e) => {
                let text = e.to_string();
                // A refused or unreachable TCP connection may be a server restarting; a
                // peer that takes the connection but does not speak SSH will not improve.
                let network = text.starts_with("cannot connect");
                if !network || tries >= 3 {
                    return Err(e);
                }
                log::debug!(target: "bioxen_vm::ssh", "{text}; trying again in {} ms", delay.as_millis());
                std::thread::sleep(delay);
                delay *= 3;
            }
        }
    }
}

impl SshTransport {
    pub fn new(
        opts: Arc<SshOptions>,
        lua_executable: &str,
        memory_limit: Option<usize>,
    ) -> Result<Self> {
        let token = crate::agent::new_token();
        Ok(SshTransport {
            opts,
            lua_executable: lua_executable.to_string(),
            memory_limit,
            tag: String::from_utf8_lossy(&token).into_owned(),
            notify: Arc::new(
                Waker::new().map_err(|e| Error::Internal(format!("cannot create a waker: {e}")))?,
            ),
            remote: None,
            frames: Vec::new(),
            out: Vec::new(),
            err: Vec::new(),
            broken: None,
            env: None,
            modules: None,
        })
    }

    /// The VM uses the package environment `env` on the host (its module paths; its
    /// interpreter unless `lua_executable` names another than the default `lua`).
    pub fn with_env(mut self, env: Option<String>) -> Self {
        self.env = env;
        self
    }

    /// The environment as read on the host (after the first start).
    pub fn modules(&self) -> Option<&crate::packages::remote::RemoteModules> {
        self.modules.as_ref()
    }

    /// The connection in use (for `info`).
    pub fn connection(&self) -> Option<&Arc<Connection>> {
        self.remote.as_ref().map(|r| &r.conn)
    }

    /// Takes what the channel holds: frames (after the pid line) into `self.frames`, raw
    /// output into `self.err`. Whether anything came, and records the channel's end.
    fn collect(&mut self) -> bool {
        let Some(r) = self.remote.as_mut() else {
            return false;
        };
        self.out.clear();
        let exit = r.conn.take(r.chan, &mut self.out, &mut self.err);
        let mut any = !self.out.is_empty();
        if r.pid.is_none() && !self.out.is_empty() {
            r.head.extend_from_slice(&self.out);
            self.out.clear();
            if let Some(nl) = r.head.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&r.head[..nl]).into_owned();
                let rest = r.head.split_off(nl + 1);
                r.head.clear();
                if line == "bioxen-vm-no-lua" {
                    self.broken = Some(Error::Original {
                        status: St::LuaNotFound,
                        message: format!(
                            "Lua executable '{}' not found in PATH on {}",
                            self.lua_executable,
                            self.opts.target()
                        ),
                    });
                } else if let Some(pid) = line
                    .strip_prefix("bioxen-vm-pid ")
                    .and_then(|p| p.trim().parse::<i32>().ok())
                {
                    r.pid = Some(pid);
                    self.frames.extend_from_slice(&rest);
                } else {
                    // Not our launcher speaking (a shell that prints on start-up?): the
                    // agent will not start; keep the text for the message.
                    self.err.extend_from_slice(line.as_bytes());
                    self.err.push(b'\n');
                    r.pid = Some(0);
                    self.frames.extend_from_slice(&rest);
                }
            }
        } else {
            self.frames.extend_from_slice(&self.out);
        }
        any |= !self.err.is_empty();
        if exit.is_some() && r.exit.is_none() {
            if let Some(Exit::Lost(why)) | Some(Exit::Refused(why)) = &exit {
                if self.broken.is_none() {
                    self.broken = Some(connection_lost(&self.opts.target(), why));
                }
            }
            r.exit = exit;
        }
        any
    }

    /// Kills the VM's remote processes (bounded), if the connection still works.
    fn sweep(&self, r: &Remote) {
        let Some(pid) = r.pid.filter(|p| *p > 0) else {
            return;
        };
        if r.conn.dead().is_some() {
            return; // The guard does it once the SSH session is gone.
        }
        let cmd = with_args(SWEEP, &[&pid.to_string(), &self.tag]).unwrap_or_default();
        if let Err(e) = r.conn.run(cmd, Duration::from_secs(3)) {
            log::debug!(target: "bioxen_vm::ssh", "stopping the processes of a VM on {} failed: {e}", self.opts.target());
        }
    }
}

impl SshTransport {
    /// The interpreter and the `K=V` settings of the package environment (none without
    /// one); the environment is read on the host at the first start.
    fn remote_env(&mut self, conn: &Arc<Connection>) -> Result<(String, Vec<String>)> {
        let Some(env) = &self.env else {
            return Ok((self.lua_executable.clone(), Vec::new()));
        };
        if self.modules.is_none() {
            let r = crate::packages::remote::Remote::on(conn.clone(), self.opts.target());
            self.modules = Some(r.module_env(env).map_err(Error::from)?);
        }
        let Some(m) = &self.modules else {
            return Ok((self.lua_executable.clone(), Vec::new()));
        };
        let lua = if self.lua_executable == "lua" {
            m.interpreter.clone()
        } else {
            self.lua_executable.clone()
        };
        let vars = m.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok((lua, vars))
    }
}

impl Transport for SshTransport {
    /// The host, port and user, and the interpreter there. An interpreter that changed
    /// since (an upgrade, another machine behind the address) refuses the bytecode at load,
    /// and the source is sent instead.
    fn code_key(&self) -> Option<String> {
        let lua = match &self.modules {
            Some(m) if self.lua_executable == "lua" => m.interpreter.as_str(),
            _ => self.lua_executable.as_str(),
        };
        Some(format!("ssh\0{}\0{}", self.opts.target(), lua))
    }

    fn spawn(&mut self, bootstrap: &str) -> Result<()> {
        self.broken = None;
        self.frames.clear();
        self.err.clear();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let conn = connect_with_retries(&self.opts)?;
            let (lua, vars) = self.remote_env(&conn)?;
            let mut args = vec![lua.as_str(), bootstrap, self.tag.as_str()];
            args.extend(vars.iter().map(String::as_str));
            let Some(command) = with_args(&launcher(), &args) else {
                return Err(Error::invalid(
                    "option 'lua_executable' (or the package environment's paths) must not hold a NUL byte",
                ));
            };
            let chan = conn.open_channel(command.clone(), self.notify.clone())?;
            self.remote = Some(Remote {
                conn: conn.clone(),
                chan,
                pid: None,
                head: Vec::new(),
                exit: None,
            });
            // A refused channel (the server's MaxSessions) shows up before its command
            // starts: then this connection is full and another one is tried. Once the
            // command started, the agent's source can be sent while the remote shell and
            // the interpreter start up.
            let deadline = Instant::now() + self.opts.connect_timeout;
            while !conn.settled(chan) && Instant::now() < deadline {
                wait_readable(self.notify.raw_fd(), Some(deadline));
                self.notify.clear();
            }
            self.collect();
            let refused = matches!(
                self.remote.as_ref().and_then(|r| r.exit.clone()),
                Some(Exit::Refused(_))
            );
            if refused && attempts < 3 {
                pool::mark_full(&self.opts, &conn);
                conn.close_channel(chan);
                self.remote = None;
                self.broken = None;
                continue;
            }
            if refused {
                let e = self.broken.take();
                self.remote = None;
                conn.close_channel(chan);
                return Err(e.unwrap_or_else(|| connection_lost(&self.opts.target(), "refused")));
            }
            return Ok(());
        }
    }

    fn started(&mut self) -> Result<()> {
        let (Some(limit), Some(r)) = (self.memory_limit, self.remote.as_ref()) else {
            return Ok(());
        };
        let Some(pid) = r.pid.filter(|p| *p > 0) else {
            return Ok(());
        };
        let script = r#"v=$(cut -d' ' -f1 /proc/"$1"/statm) && p=$(getconf PAGESIZE) && c=$((v * p + $2)) && prlimit --pid "$1" --as="$c:$c""#;
        let cmd = with_args(script, &[&pid.to_string(), &limit.to_string()]).unwrap_or_default();
        match r.conn.run(cmd, Duration::from_secs(5))? {
            (Some(0), _, _) => Ok(()),
            (_, _, err) => Err(Error::Internal(format!(
                "memory_limit on an ssh VM needs prlimit (util-linux) and /proc on {}: {}",
                self.opts.target(),
                String::from_utf8_lossy(&err).trim()
            ))),
        }
    }

    fn pump(
        &mut self,
        out: &mut &[u8],
        sink: &mut dyn FnMut(Channel, &[u8]),
        waker: &Waker,
        deadline: Option<Instant>,
    ) -> io::Result<Pumped> {
        let Some(r) = self.remote.as_ref() else {
            return Ok(Pumped::Ended);
        };
        if !out.is_empty() {
            r.conn.write(r.chan, out);
            *out = &[];
        }
        loop {
            self.collect();
            let mut any = false;
            if !self.frames.is_empty() {
                sink(Channel::Frames, &self.frames);
                self.frames.clear();
                any = true;
            }
            if !self.err.is_empty() {
                sink(Channel::RawErr, &self.err);
                self.err.clear();
                any = true;
            }
            if any {
                return Ok(Pumped::Progress);
            }
            if self.remote.as_ref().is_some_and(|r| r.exit.is_some()) {
                return Ok(Pumped::Ended);
            }
            let mut fds = [
                libc::pollfd {
                    fd: waker.raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.notify.raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two live pollfds.
            let n = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    2,
                    crate::vm::transport::poll_timeout(deadline),
                )
            };
            if fds[1].revents != 0 {
                self.notify.clear();
            }
            if fds[0].revents != 0 {
                return Ok(Pumped::Woken);
            }
            if n == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Pumped::Deadline);
            }
        }
    }

    fn drain_raw(&mut self, sink: &mut dyn FnMut(Channel, &[u8])) {
        self.collect();
        if !self.err.is_empty() {
            sink(Channel::RawErr, &self.err);
            self.err.clear();
        }
    }

    fn kill(&mut self) -> Ended {
        let Some(r) = self.remote.take() else {
            return Ended::default();
        };
        self.sweep(&r);
        r.conn.close_channel(r.chan);
        Ended {
            code: None,
            signal: Some(9),
        }
    }

    fn ended(&mut self) -> Ended {
        let Some(r) = self.remote.take() else {
            return Ended::default();
        };
        let ended = ended_of(&r.exit);
        r.conn.close_channel(r.chan);
        ended
    }

    fn shutdown(&mut self, _grace: Duration) {
        let Some(r) = self.remote.take() else {
            return;
        };
        if r.exit.is_none() && r.conn.dead().is_none() {
            // The agent is idle (no call runs while a VM is freed): it reads `quit` and
            // exits; the guard then stops what it left running. Nothing here waits for it.
            r.conn.write(r.chan, crate::agent::QUIT);
            r.conn.send_eof(r.chan);
        }
        r.conn.close_channel(r.chan);
    }

    fn running(&self) -> bool {
        self.remote.is_some()
    }

    fn broken(&mut self) -> Option<Error> {
        self.broken.take()
    }

    fn info(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let r = self.remote.as_ref();
        m.insert(
            "pid".into(),
            r.and_then(|r| r.pid)
                .filter(|p| *p > 0)
                .map_or(serde_json::Value::Null, Into::into),
        );
        if let Some(c) = r.map(|r| &r.conn) {
            let i = c.info();
            m.insert("auth_method".into(), i.auth_method.clone().into());
            m.insert("host_key_fingerprint".into(), i.fingerprint.clone().into());
            m.insert("ssh_cipher".into(), i.cipher.clone().into());
            m.insert("connection".into(), i.id.into());
        }
        m.extend(self.opts.to_json());
        m.insert(
            "connections_to_host".into(),
            pool::connections_to(&self.opts).into(),
        );
        m
    }
}
