//! One authenticated SSH connection, shared by the VMs on one host, user and port.
//!
//! libssh2 handles must not be used from several threads at once, and a blocking read on
//! one channel would stall every other channel of the session. So each connection has one
//! I/O thread (the broker) that owns the session in non-blocking mode and serves every
//! channel: it opens them, writes what VMs queued, reads what arrives into per-channel
//! buffers (bounded: a full buffer stops reading that channel, which is backpressure), and
//! wakes the VM that waits on a channel. VM threads never call libssh2.
//!
//! Dead peers: the broker sends a keepalive every `keepalive_interval` (wanting a reply)
//! and counts the connection dead after two intervals without a byte from the server.
//! Every channel then ends with the reason, and the VMs' calls fail at once.

use super::options::SshOptions;
use super::{auth, hostkey};
use crate::error::{Error, Result};
use crate::status::bioxen_vm_status as St;
use crate::vm::transport::Waker;
use parking_lot::Mutex;
use ssh2::{BlockDirections, Session};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes a channel's stdout or stderr buffer holds before the broker stops reading it.
const CHANNEL_BUFFER: usize = 4 << 20;
/// The receive window asked for each channel: libssh2's default. (Measured here: a 16 MiB
/// window made 64 KiB reads several times slower, through libssh2's window adjustments.)
const WINDOW: u32 = 2 << 20;
const PACKET: u32 = 32 << 10;
/// libssh2's "would block".
const EAGAIN: i32 = -37;

fn conn_error(message: String) -> Error {
    Error::Original {
        status: St::VmConnectionError,
        message,
    }
}

/// How a channel ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The remote command exited (code), or was killed by a signal (name).
    Exited {
        code: Option<i32>,
        signal: Option<String>,
    },
    /// The server refused to open the channel (its `MaxSessions`, typically).
    Refused(String),
    /// The connection is gone.
    Lost(String),
}

/// One channel as the broker and its VM share it.
struct Chan {
    command: String,
    channel: Option<ssh2::Channel>,
    /// Opened and exec'd.
    started: bool,
    opened_at: Instant,
    to_remote: Vec<u8>,
    send_eof: bool,
    eof_sent: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: Option<Exit>,
    /// The VM asked for the channel to go away.
    closing: bool,
    notify: Arc<Waker>,
}

struct State {
    next_id: u64,
    channels: HashMap<u64, Chan>,
    /// Why the connection is gone (then no channel can be opened).
    dead: Option<String>,
    shutdown: bool,
}

/// What VMs see of a connection.
pub struct Connection {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Waker,
    pub info: ConnInfo,
}

/// Facts about a connection for `info`.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub target: String,
    pub auth_method: String,
    pub fingerprint: String,
    /// The cipher the server and the library agreed on (server to client).
    pub cipher: String,
    pub id: u64,
}

static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A TCP connection to the first address of `host:port` that answers within `timeout`.
fn connect_tcp(o: &SshOptions) -> Result<TcpStream> {
    let target = format!("{}:{}", o.host, o.port);
    let addrs: Vec<_> = (o.host.as_str(), o.port)
        .to_socket_addrs()
        .map_err(|e| conn_error(format!("cannot resolve {target}: {e}")))?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, o.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(conn_error(match last {
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut => format!(
            "cannot connect to {target}: no answer within {} seconds (host unreachable or filtered)",
            crate::vm::seconds_text(o.connect_timeout)
        ),
        Some(e) => format!("cannot connect to {target}: {e}"),
        None => format!("cannot connect to {target}: the name has no address"),
    }))
}

impl Connection {
    /// Connects, checks the host key, authenticates, and starts the broker.
    pub fn open(o: &SshOptions) -> Result<Arc<Connection>> {
        let target = o.target();
        let tcp = connect_tcp(o)?;
        let _ = tcp.set_nodelay(true);
        let mut sess = Session::new()
            .map_err(|e| Error::Internal(format!("cannot create an SSH session: {e}")))?;
        let theirs = tcp
            .try_clone()
            .map_err(|e| Error::Internal(format!("cannot share the socket: {e}")))?;
        sess.set_tcp_stream(theirs);
        sess.set_timeout(o.connect_timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        let prefs = hostkey::preferred_methods(o);
        if !prefs.is_empty() {
            let _ = sess.method_pref(ssh2::MethodType::HostKey, &prefs);
        }
        sess.handshake().map_err(|e| {
            conn_error(format!(
                "SSH handshake with {}:{} failed (is it an SSH server?): {}",
                o.host,
                o.port,
                e.message()
            ))
        })?;
        let blob = sess
            .host_key()
            .map(|(k, _)| k.to_vec())
            .ok_or_else(|| conn_error(format!("{target} sent no host key")))?;
        let fingerprint = hostkey::verify(o, &blob)?;
        let auth_method = auth::authenticate(&sess, o)?;
        sess.set_keepalive(true, o.keepalive_interval.as_secs().max(1) as u32);
        sess.set_blocking(false);
        let cipher = sess
            .methods(ssh2::MethodType::CryptSc)
            .unwrap_or("unknown")
            .to_string();
        let info = ConnInfo {
            target: target.clone(),
            auth_method,
            fingerprint,
            cipher,
            id: NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        log::debug!(target: "bioxen_vm::ssh", "connected to {target} ({}, {}, {})", info.auth_method, info.fingerprint, info.cipher);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_id: 1,
                channels: HashMap::new(),
                dead: None,
                shutdown: false,
            }),
            wake: Waker::new()
                .map_err(|e| Error::Internal(format!("cannot create a wake-up descriptor: {e}")))?,
            info,
        });
        let broker = Broker {
            sess,
            tcp,
            shared: shared.clone(),
            keepalive: o.keepalive_interval,
            buf: vec![0; 64 << 10],
            rx_at: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("bioxen-ssh-{}", shared.info.id))
            .spawn(move || broker.run())
            .map_err(|e| Error::Internal(format!("cannot start the SSH I/O thread: {e}")))?;
        Ok(Arc::new(Connection {
            shared,
            thread: Mutex::new(Some(thread)),
        }))
    }

    pub fn info(&self) -> &ConnInfo {
        &self.shared.info
    }

    /// Whether the connection is gone.
    pub fn dead(&self) -> Option<String> {
        self.shared.state.lock().dead.clone()
    }

    /// Number of channels in use.
    pub fn channels(&self) -> usize {
        self.shared.state.lock().channels.len()
    }

    /// Queues a channel that runs `command`; `notify` is woken whenever it has news.
    pub fn open_channel(&self, command: String, notify: Arc<Waker>) -> Result<u64> {
        let mut st = self.shared.state.lock();
        if let Some(why) = &st.dead {
            return Err(conn_error(format!(
                "the connection to {} is lost: {why}",
                self.shared.info.target
            )));
        }
        let id = st.next_id;
        st.next_id += 1;
        st.channels.insert(
            id,
            Chan {
                command,
                channel: None,
                started: false,
                opened_at: Instant::now(),
                to_remote: Vec::new(),
                send_eof: false,
                eof_sent: false,
                stdout: Vec::new(),
                stderr: Vec::new(),
                exit: None,
                closing: false,
                notify,
            },
        );
        drop(st);
        self.shared.wake.wake();
        Ok(id)
    }

    /// Queues `bytes` for the channel's stdin.
    pub fn write(&self, id: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(c) = self.shared.state.lock().channels.get_mut(&id) {
            c.to_remote.extend_from_slice(bytes);
        }
        self.shared.wake.wake();
    }

    /// Sends end of file on the channel's stdin once what is queued is written.
    pub fn send_eof(&self, id: u64) {
        if let Some(c) = self.shared.state.lock().channels.get_mut(&id) {
            c.send_eof = true;
        }
        self.shared.wake.wake();
    }

    /// Takes what the channel's stdout and stderr hold, and how it ended (if it has).
    pub fn take(&self, id: u64, out: &mut Vec<u8>, err: &mut Vec<u8>) -> Option<Exit> {
        let mut st = self.shared.state.lock();
        let dead = st.dead.clone();
        let Some(c) = st.channels.get_mut(&id) else {
            return Some(Exit::Lost(
                dead.unwrap_or_else(|| "the channel is gone".into()),
            ));
        };
        let resume = c.stdout.len() >= CHANNEL_BUFFER || c.stderr.len() >= CHANNEL_BUFFER;
        out.append(&mut c.stdout);
        err.append(&mut c.stderr);
        let exit = c.exit.clone();
        drop(st);
        if resume {
            self.shared.wake.wake();
        }
        exit
    }

    /// Whether the channel has data waiting or has ended (without taking anything).
    pub fn ready(&self, id: u64) -> bool {
        let st = self.shared.state.lock();
        st.channels
            .get(&id)
            .is_none_or(|c| !c.stdout.is_empty() || !c.stderr.is_empty() || c.exit.is_some())
    }

    /// Whether the channel's command has started, or the channel has ended (refused).
    pub fn settled(&self, id: u64) -> bool {
        let st = self.shared.state.lock();
        st.channels
            .get(&id)
            .is_none_or(|c| c.started || c.exit.is_some())
    }

    /// Lets the channel go: the broker closes and frees it.
    pub fn close_channel(&self, id: u64) {
        if let Some(c) = self.shared.state.lock().channels.get_mut(&id) {
            c.closing = true;
        }
        self.shared.wake.wake();
    }

    /// Runs `command` on its own channel and waits (at most `limit`) for it to end; its
    /// exit code and output.
    pub fn run(&self, command: String, limit: Duration) -> Result<(Option<i32>, Vec<u8>, Vec<u8>)> {
        let notify = Arc::new(
            Waker::new().map_err(|e| Error::Internal(format!("cannot create a waker: {e}")))?,
        );
        let id = self.open_channel(command, notify.clone())?;
        self.send_eof(id);
        let deadline = Instant::now() + limit;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = loop {
            match self.take(id, &mut out, &mut err) {
                Some(Exit::Exited { code, .. }) => break Ok((code, out, err)),
                Some(Exit::Refused(why)) | Some(Exit::Lost(why)) => {
                    break Err(conn_error(format!(
                        "running a command on {} failed: {why}",
                        self.shared.info.target
                    )))
                }
                None => {}
            }
            if Instant::now() >= deadline {
                break Err(conn_error(format!(
                    "a command on {} did not finish within {} seconds",
                    self.shared.info.target,
                    crate::vm::seconds_text(limit)
                )));
            }
            wait_readable(notify.raw_fd(), Some(deadline));
            notify.clear();
        };
        self.close_channel(id);
        result
    }

    /// Stops the broker once no channel is left (or at once with `now`).
    pub fn shutdown(&self, now: bool) {
        {
            let mut st = self.shared.state.lock();
            st.shutdown = true;
            if now {
                for c in st.channels.values_mut() {
                    c.closing = true;
                }
            }
        }
        self.shared.wake.wake();
        if now {
            if let Some(t) = self.thread.lock().take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shutdown(true);
    }
}

/// Waits until `fd` is readable or `deadline` passes.
pub fn wait_readable(fd: i32, deadline: Option<Instant>) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    let n = unsafe { libc::poll(&mut p, 1, crate::vm::transport::poll_timeout(deadline)) };
    n > 0
}

/// The I/O thread's side.
struct Broker {
    sess: Session,
    tcp: TcpStream,
    shared: Arc<Shared>,
    keepalive: Duration,
    buf: Vec<u8>,
    /// When bytes last arrived from the server.
    rx_at: Instant,
}

fn would_block(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(EAGAIN)
}

fn io_would_block(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
}

impl Broker {
    fn run(mut self) {
        let mut next_keepalive = Instant::now() + self.keepalive;
        let mut reason: Option<String> = None;
        let shared = self.shared.clone();
        loop {
            let mut st = shared.state.lock();
            if st.shutdown && st.channels.is_empty() {
                break;
            }
            let progress = match self.service(&mut st) {
                Ok(p) => p,
                Err(why) => {
                    reason = Some(why);
                    break;
                }
            };
            let idle_conn = st.channels.is_empty();
            drop(st);
            let now = Instant::now();
            if idle_conn {
                // Nothing reads the socket without a channel: wait for one (the pool holds
                // connections weakly, so an unused one is dropped, not kept alive).
                wait_readable(
                    self.shared.wake.raw_fd(),
                    Some(now + Duration::from_millis(500)),
                );
                self.shared.wake.clear();
                self.rx_at = Instant::now();
                next_keepalive = self.rx_at + self.keepalive;
                continue;
            }
            if now >= next_keepalive {
                match self.sess.keepalive_send() {
                    Ok(_) | Err(_) => next_keepalive = now + self.keepalive,
                }
            }
            let idle = now.duration_since(self.rx_at);
            if idle > self.keepalive * 2 + Duration::from_millis(500) {
                reason = Some(format!(
                    "the server sent nothing for {} seconds (keepalive_interval {})",
                    crate::vm::seconds_text(Duration::from_millis(idle.as_millis() as u64)),
                    crate::vm::seconds_text(self.keepalive)
                ));
                break;
            }
            if progress {
                continue;
            }
            // A full channel buffer waits for its VM to take it (a wake-up): reading the
            // socket now would only spin.
            let full = shared
                .state
                .lock()
                .channels
                .values()
                .any(|c| c.stdout.len() >= CHANNEL_BUFFER || c.stderr.len() >= CHANNEL_BUFFER);
            let mut events = if full { 0 } else { libc::POLLIN };
            if matches!(
                self.sess.block_directions(),
                BlockDirections::Outbound | BlockDirections::Both
            ) {
                events |= libc::POLLOUT;
            }
            let mut fds = [
                libc::pollfd {
                    fd: self.tcp.as_raw_fd(),
                    events,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.shared.wake.raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let wait = next_keepalive
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500));
            // SAFETY: two live pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, wait.as_millis() as i32 + 1) };
            if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                self.rx_at = Instant::now();
            }
            if fds[1].revents != 0 {
                self.shared.wake.clear();
            }
        }
        self.finish(reason);
    }

    /// One pass over every channel; whether anything moved. Err: the connection is gone.
    fn service(&mut self, st: &mut State) -> std::result::Result<bool, String> {
        let mut progress = false;
        let mut gone = Vec::new();
        // libssh2 opens one channel at a time per session.
        let mut opening = false;
        for (&id, c) in st.channels.iter_mut() {
            if c.closing && c.started && c.exit.is_none() && c.channel.is_some() {
                // What was queued before the close (a `quit`, an end of file) goes first.
                if !c.to_remote.is_empty() || (c.send_eof && !c.eof_sent) {
                    match self.pump(c) {
                        Ok(p) => progress |= p,
                        Err(why) => return Err(why),
                    }
                    if !c.to_remote.is_empty() || (c.send_eof && !c.eof_sent) {
                        continue;
                    }
                }
            }
            if c.closing {
                if let Some(ch) = c.channel.as_mut() {
                    match ch.close() {
                        Err(e) if would_block(&e) => continue,
                        _ => {}
                    }
                }
                c.channel = None;
                gone.push(id);
                progress = true;
                continue;
            }
            if c.exit.is_some() {
                continue;
            }
            if !c.started {
                if opening {
                    continue;
                }
                opening = true;
                match self.start(c) {
                    Ok(true) => {
                        c.notify.wake();
                        progress = true;
                    }
                    Ok(false) => {
                        if c.opened_at.elapsed() > Duration::from_secs(10) {
                            c.exit = Some(Exit::Lost(
                                "the channel did not open within 10 seconds".into(),
                            ));
                            c.notify.wake();
                        }
                    }
                    Err(exit) => {
                        c.exit = Some(exit);
                        c.notify.wake();
                        progress = true;
                    }
                }
                continue;
            }
            match self.pump(c) {
                Ok(p) => progress |= p,
                Err(why) => return Err(why),
            }
        }
        for id in gone {
            st.channels.remove(&id);
        }
        Ok(progress)
    }

    /// Opens the channel and starts its command; Ok(false): not yet (would block).
    fn start(&mut self, c: &mut Chan) -> std::result::Result<bool, Exit> {
        if c.channel.is_none() {
            match self.sess.channel_open("session", WINDOW, PACKET, None) {
                Ok(ch) => c.channel = Some(ch),
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) => {
                    return Err(Exit::Refused(format!(
                        "the server refused a channel: {}",
                        e.message()
                    )))
                }
            }
        }
        let Some(ch) = c.channel.as_mut() else {
            return Ok(false);
        };
        match ch.exec(&c.command) {
            Ok(()) => {
                c.started = true;
                Ok(true)
            }
            Err(e) if would_block(&e) => Ok(false),
            Err(e) => Err(Exit::Refused(format!(
                "the server refused to run the command: {}",
                e.message()
            ))),
        }
    }

    /// Moves a started channel's bytes; whether anything moved.
    fn pump(&mut self, c: &mut Chan) -> std::result::Result<bool, String> {
        let Some(ch) = c.channel.as_mut() else {
            return Ok(false);
        };
        let mut progress = false;
        let mut news = false;
        while !c.to_remote.is_empty() {
            match ch.write(&c.to_remote) {
                Ok(0) => break,
                Ok(n) => {
                    c.to_remote.drain(..n);
                    progress = true;
                }
                Err(e) if io_would_block(&e) => break,
                Err(e) => {
                    // The remote end closed its stdin: what it wrote is still to be read.
                    log::debug!(target: "bioxen_vm::ssh", "write to a channel failed: {e}");
                    c.to_remote.clear();
                    break;
                }
            }
        }
        if c.send_eof && !c.eof_sent && c.to_remote.is_empty() {
            match ch.send_eof() {
                Err(e) if would_block(&e) => {}
                _ => {
                    c.eof_sent = true;
                    progress = true;
                }
            }
        }
        for stream in [0, 1] {
            loop {
                let buf = if stream == 0 { &c.stdout } else { &c.stderr };
                if buf.len() >= CHANNEL_BUFFER {
                    break;
                }
                let r = if stream == 0 {
                    ch.read(&mut self.buf)
                } else {
                    ch.stderr().read(&mut self.buf)
                };
                match r {
                    Ok(0) => break,
                    Ok(n) => {
                        let dst = if stream == 0 {
                            &mut c.stdout
                        } else {
                            &mut c.stderr
                        };
                        dst.extend_from_slice(&self.buf[..n]);
                        self.rx_at = Instant::now();
                        progress = true;
                        news = true;
                    }
                    Err(e) if io_would_block(&e) => break,
                    Err(e) => {
                        let code = ssh2::Error::last_session_error(&self.sess)
                            .map(|e| format!("{:?} {}", e.code(), e.message()));
                        return Err(format!(
                            "reading from the connection failed: {e} ({code:?})"
                        ));
                    }
                }
            }
        }
        // The exit status and signal arrive before the channel's close, which may come
        // after the end of its output: until the close, a fast command's status would
        // read as 0.
        let drained =
            ch.eof() && c.stdout.len() < CHANNEL_BUFFER && c.stderr.len() < CHANNEL_BUFFER;
        if drained && !matches!(ch.wait_close(), Err(e) if would_block(&e)) {
            let code = ch.exit_status().ok();
            let signal = ch.exit_signal().ok().and_then(|s| s.exit_signal);
            let code = if signal.is_some() { None } else { code };
            c.exit = Some(Exit::Exited { code, signal });
            news = true;
            progress = true;
        }
        if news {
            c.notify.wake();
        }
        Ok(progress)
    }

    /// The connection is over: ends every channel and says why.
    fn finish(self, reason: Option<String>) {
        let mut st = self.shared.state.lock();
        let _ = (self.tcp.as_raw_fd(),);
        if let Some(why) = &reason {
            log::debug!(target: "bioxen_vm::ssh", "connection to {} lost: {why}", self.shared.info.target);
        }
        let why = reason.unwrap_or_else(|| "the connection was closed".into());
        st.dead = Some(why.clone());
        for c in st.channels.values_mut() {
            if c.exit.is_none() {
                c.exit = Some(Exit::Lost(why.clone()));
            }
            c.notify.wake();
            c.channel = None;
        }
        drop(st);
        let _ = self.sess.disconnect(None, "bye", None);
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}
