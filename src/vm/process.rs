//! The `process` VM kind: a real `lua` interpreter as a persistent child, running the
//! agent ([`super::agent_vm`]) over pipes. This file is its transport.
//!
//! The child is `<lua_executable> -e <bootstrap>` with stdin a pipe for requests,
//! descriptor 3 a pipe for the agent's frames, and stdout and stderr pipes of their own
//! for what user code and its subprocesses write past the agent. It is the leader of a
//! new process group and a child subreaper (so that everything it starts stays its
//! descendant while it lives), and its processes carry an environment tag. Stopping it
//! freezes it, kills every descendant, then kills it and reaps it: no process it started
//! is left running, and no pipe held by a descendant is ever waited on (the child's end is
//! seen through a pidfd, not through end of file).

use super::agent_vm::{AgentBackend, AgentVm};
use super::proc_tree;
use super::transport::{poll_timeout, Channel, Ended, Pumped, Transport, Waker};
use crate::error::{Error, Result};
use crate::status::bioxen_vm_status as St;
use crate::vm::{Backend, ExecRequest, VmOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long stopping a VM's processes may take before it gives up on stragglers.
const KILL_LIMIT: Duration = Duration::from_secs(2);

fn not_found(exe: &str) -> Error {
    Error::Original {
        status: St::LuaNotFound,
        message: format!("Lua executable '{exe}' not found in PATH"),
    }
}

/// Whether `exe` names an existing file: a path as given, else a file in a `PATH` directory.
fn on_path(exe: &str) -> bool {
    resolve(exe).is_some()
}

/// The file `exe` names: itself when it holds a `/`, else the first on `PATH`.
fn resolve(exe: &str) -> Option<std::path::PathBuf> {
    if exe.contains('/') {
        let p = std::path::PathBuf::from(exe);
        return p.is_file().then_some(p);
    }
    if exe.is_empty() {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(exe))
        .find(|p| p.is_file())
}

/// Caps the child's address space at what it uses now plus `limit` bytes, so that Lua's
/// allocations fail with "not enough memory" (a recoverable Lua error) past it.
fn limit_address_space(pid: i32, limit: usize) -> Result<()> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .map_err(|e| Error::Internal(format!("could not read the child's memory use: {e}")))?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Error::Internal(format!("unexpected /proc/{pid}/statm: {statm}")))?;
    // SAFETY: plain sysconf and prlimit calls on our own child.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let cap = pages.saturating_mul(page).saturating_add(limit as u64);
    let rl = libc::rlimit {
        rlim_cur: cap,
        rlim_max: cap,
    };
    // SAFETY: as above.
    if unsafe { libc::prlimit(pid, libc::RLIMIT_AS, &rl, std::ptr::null_mut()) } != 0 {
        return Err(Error::Internal(format!(
            "could not limit the child's memory: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn owned<F: Into<OwnedFd>>(f: Option<F>) -> io::Result<OwnedFd> {
    let fd: OwnedFd = f
        .ok_or_else(|| io::Error::other("a pipe of the child was not set up"))?
        .into();
    set_nonblocking(fd.as_raw_fd())?;
    Ok(fd)
}

/// A connected pair of Unix stream sockets for the child's stdin: the host's end (which
/// can be written with `MSG_NOSIGNAL`) and the child's. Both close on exec.
fn stdin_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills the two descriptors, which are owned from here on.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors.
    let (host, child) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_nonblocking(host.as_raw_fd())?;
    // The child only reads its stdin.
    // SAFETY: shutdown on a socket we own.
    unsafe { libc::shutdown(child.as_raw_fd(), libc::SHUT_WR) };
    Ok((host, child))
}

/// A pipe whose write end is at descriptor 10 or above (so that it can be moved to 3 in
/// the child whatever the host's descriptors 0–2 are). Both ends close on exec.
fn frame_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which are owned from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own; the result is owned from here on.
    let high = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if high < 0 {
        return Err(io::Error::last_os_error());
    }
    set_nonblocking(r.as_raw_fd())?;
    // SAFETY: fresh descriptor.
    Ok((r, unsafe { OwnedFd::from_raw_fd(high) }))
}

/// A readable end of the child's, until it hangs up.
struct Source {
    channel: Channel,
    fd: Option<OwnedFd>,
}

/// A started child.
struct Running {
    child: Child,
    pid: i32,
    /// Readable once the child has exited (None on kernels without pidfds).
    pidfd: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    sources: [Source; 3],
    exited: bool,
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is owned from here on.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

impl Running {
    /// Whether the child has exited (a zombie not reaped yet counts as exited).
    fn check_exited(&mut self) -> bool {
        if !self.exited {
            self.exited = !proc_alive(self.pid);
        }
        self.exited
    }

    /// Reads what one source has now; whether it read anything.
    fn read_source(
        &mut self,
        i: usize,
        buf: &mut [u8],
        sink: &mut dyn FnMut(Channel, &[u8]),
    ) -> bool {
        let mut any = false;
        let src = &mut self.sources[i];
        while let Some(fd) = &src.fd {
            // SAFETY: reads into a live buffer from a descriptor we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                any = true;
                sink(src.channel, &buf[..n as usize]);
                if (n as usize) < buf.len() {
                    break;
                }
            } else if n == 0 {
                src.fd = None;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        src.fd = None;
                    }
                    break;
                }
            }
        }
        any
    }

    /// Writes what it can of `out`. Err when the child's stdin is gone.
    fn write_some(&mut self, out: &mut &[u8]) -> io::Result<bool> {
        let Some(fd) = &self.stdin else {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        };
        let mut wrote = false;
        while !out.is_empty() {
            // SAFETY: writes from a live buffer to a socket we own. MSG_NOSIGNAL: a child
            // gone away is EPIPE here, never a SIGPIPE in the host.
            let n = unsafe {
                libc::send(
                    fd.as_raw_fd(),
                    out.as_ptr().cast(),
                    out.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                *out = &out[n as usize..];
                wrote = true;
            } else {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    _ => {
                        self.stdin = None;
                        return Err(e);
                    }
                }
            }
        }
        Ok(wrote)
    }
}

fn proc_alive(pid: i32) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(text) => {
            let state = text
                .iter()
                .rposition(|&b| b == b')')
                .and_then(|i| text.get(i + 2).copied());
            !matches!(state, Some(b'Z') | Some(b'X') | None)
        }
        Err(_) => false,
    }
}

/// Where a `process` VM's interpreter runs: a child of this process.
pub struct LocalTransport {
    exe: String,
    memory_limit: Option<usize>,
    /// The environment tag of this VM's processes.
    tag: String,
    running: Option<Running>,
    buf: Vec<u8>,
    /// Variables set for the child on top of the inherited ones (a package environment's
    /// module paths).
    env: Vec<(String, String)>,
}

impl LocalTransport {
    pub fn new(exe: &str, memory_limit: Option<usize>, env: Vec<(String, String)>) -> Self {
        let token = crate::agent::new_token();
        LocalTransport {
            exe: exe.to_string(),
            env,
            memory_limit,
            tag: format!("{}-{}", std::process::id(), String::from_utf8_lossy(&token)),
            running: None,
            buf: vec![0; 64 << 10],
        }
    }

    /// Reaps the exited child and stops what it left behind.
    fn reap(&mut self, r: Running) -> Ended {
        self.reap_with(r, true)
    }

    /// Reaps the interpreter; `sweep`: then look for its orphans everywhere (they went to
    /// init; its process group and its tag still find them). Without `sweep` only its
    /// group is killed: for an interpreter that had no descendant left when it exited.
    fn reap_with(&mut self, mut r: Running, sweep: bool) -> Ended {
        let status = r.child.wait().ok();
        // SAFETY: plain syscall; the group is the child's own (it led it).
        unsafe { libc::kill(-r.pid, libc::SIGKILL) };
        if sweep {
            proc_tree::kill_tagged(&self.tag, KILL_LIMIT);
        }
        ended_of(status)
    }
}

fn ended_of(status: Option<std::process::ExitStatus>) -> Ended {
    match status {
        Some(s) => Ended {
            code: s.code(),
            signal: s.signal(),
        },
        None => Ended::default(),
    }
}

impl Transport for LocalTransport {
    /// The interpreter's file as it is now (the real file behind links, its device, inode,
    /// size and change time): a rebuilt or replaced binary gets a key of its own.
    fn code_key(&self) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let real = std::fs::canonicalize(resolve(&self.exe)?).ok()?;
        let m = std::fs::metadata(&real).ok()?;
        Some(format!(
            "local\0{}\0{}:{}:{}:{}.{}",
            real.display(),
            m.dev(),
            m.ino(),
            m.size(),
            m.ctime(),
            m.ctime_nsec()
        ))
    }

    fn spawn(&mut self, bootstrap: &str) -> Result<()> {
        let exe = self.exe.clone();
        // Looked up first: some spawn paths (e.g. under valgrind) report a missing program
        // only as a child exiting with 127.
        if !on_path(&exe) {
            return Err(not_found(&exe));
        }
        let setup =
            |e: io::Error| Error::Internal(format!("could not set up the child's pipes: {e}"));
        let (frames_r, frames_w) = frame_pipe().map_err(setup)?;
        let (stdin_host, stdin_child) = stdin_pair().map_err(setup)?;
        let w = frames_w.as_raw_fd();
        let mut cmd = Command::new(&exe);
        cmd.arg("-e")
            .arg(bootstrap)
            .env(proc_tree::TAG_VAR, &self.tag)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::from(stdin_child))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: the closure runs in the child between fork and exec and only makes
        // async-signal-safe calls (dup2, prctl).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(w, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => not_found(&exe),
            _ => Error::Original {
                status: St::LuaNotFound,
                message: format!("Lua interpreter check failed: could not start '{exe}': {e}"),
            },
        })?;
        drop(frames_w);
        let pid = child.id() as i32;
        let fds = (|| -> io::Result<_> {
            Ok((owned(child.stdout.take())?, owned(child.stderr.take())?))
        })();
        let stdin = stdin_host;
        let (out, err) = match fds {
            Ok(f) => f,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(setup(e));
            }
        };
        self.running = Some(Running {
            child,
            pid,
            pidfd: pidfd_open(pid),
            stdin: Some(stdin),
            sources: [
                Source {
                    channel: Channel::Frames,
                    fd: Some(frames_r),
                },
                Source {
                    channel: Channel::RawOut,
                    fd: Some(out),
                },
                Source {
                    channel: Channel::RawErr,
                    fd: Some(err),
                },
            ],
            exited: false,
        });
        Ok(())
    }

    fn started(&mut self) -> Result<()> {
        match (&self.running, self.memory_limit) {
            (Some(r), Some(limit)) => limit_address_space(r.pid, limit),
            _ => Ok(()),
        }
    }

    fn pump(
        &mut self,
        out: &mut &[u8],
        sink: &mut dyn FnMut(Channel, &[u8]),
        waker: &Waker,
        deadline: Option<Instant>,
    ) -> io::Result<Pumped> {
        let buf = &mut self.buf;
        let Some(r) = self.running.as_mut() else {
            return Ok(Pumped::Ended);
        };
        if !out.is_empty() && r.write_some(out).is_err() {
            // The child closed its stdin: it is ending; what it wrote is still to be read.
            *out = &[];
        }
        loop {
            let mut fds: [libc::pollfd; 6] = [libc::pollfd {
                fd: -1,
                events: 0,
                revents: 0,
            }; 6];
            fds[0] = libc::pollfd {
                fd: waker.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            fds[1].fd = r.pidfd.as_ref().map_or(-1, |f| f.as_raw_fd());
            fds[1].events = libc::POLLIN;
            for (i, s) in r.sources.iter().enumerate() {
                fds[2 + i].fd = s.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
                fds[2 + i].events = libc::POLLIN;
            }
            if !out.is_empty() {
                fds[5].fd = r.stdin.as_ref().map_or(-1, |f| f.as_raw_fd());
                fds[5].events = libc::POLLOUT;
            }
            // Without a pidfd, look at the child every 50 ms.
            let mut timeout = poll_timeout(deadline);
            if r.pidfd.is_none() && !(0..=50).contains(&timeout) {
                timeout = 50;
            }
            // SAFETY: `fds` is a live array of 6 pollfds (negative fds are ignored).
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 6, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut progress = false;
            for i in 0..3 {
                if fds[2 + i].revents != 0 {
                    progress |= r.read_source(i, buf, sink);
                }
            }
            if fds[5].revents != 0 && !out.is_empty() {
                match r.write_some(out) {
                    Ok(w) => progress |= w,
                    Err(_) => *out = &[],
                }
            }
            if fds[0].revents != 0 {
                return Ok(Pumped::Woken);
            }
            let exited = fds[1].revents != 0 || (r.pidfd.is_none() && r.check_exited());
            if exited {
                r.exited = true;
                // What it wrote before it exited is in the pipes now.
                for i in 0..3 {
                    r.read_source(i, buf, sink);
                }
                return Ok(Pumped::Ended);
            }
            if progress {
                return Ok(Pumped::Progress);
            }
            if r.sources[0].fd.is_none() && out.is_empty() && r.check_exited() {
                return Ok(Pumped::Ended);
            }
            if n == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Pumped::Deadline);
            }
        }
    }

    fn drain_raw(&mut self, sink: &mut dyn FnMut(Channel, &[u8])) {
        let buf = &mut self.buf;
        let Some(r) = self.running.as_mut() else {
            return;
        };
        // One poll tells which raw pipe holds anything (usually neither): a read only
        // where there is something to read.
        let mut fds = [1, 2].map(|i| libc::pollfd {
            fd: r.sources[i].fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: two live pollfds (negative fds are ignored); no wait.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, 0) } <= 0 {
            return;
        }
        for (k, i) in [1, 2].into_iter().enumerate() {
            if fds[k].revents != 0 {
                r.read_source(i, buf, sink);
            }
        }
    }

    fn kill(&mut self) -> Ended {
        let Some(mut r) = self.running.take() else {
            return Ended::default();
        };
        let pid = r.pid;
        if !r.check_exited() {
            // Frozen with its whole process group, nothing of it starts anything new
            // while its descendants are killed; as their subreaper it collects the
            // orphans of the ones killed first.
            // SAFETY: plain syscalls on our unreaped child and its group.
            unsafe { libc::kill(-pid, libc::SIGSTOP) };
            proc_tree::kill_descendants(pid, KILL_LIMIT);
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
            let status = r.child.wait().ok();
            return ended_of(status);
        }
        self.reap(r)
    }

    fn ended(&mut self) -> Ended {
        match self.running.take() {
            Some(r) => self.reap(r),
            None => Ended::default(),
        }
    }

    fn shutdown(&mut self, grace: Duration) {
        let Some(r) = self.running.as_mut() else {
            return;
        };
        let mut clean = false;
        if !r.check_exited() {
            proc_tree::kill_descendants(r.pid, KILL_LIMIT);
            // The idle agent starts nothing: with no descendant left now (the interpreter
            // is their subreaper, so none can have left its tree), none can exist after
            // it exits, and the machine-wide search for its tag can be skipped.
            clean = proc_tree::descendants(r.pid).is_empty();
            let mut quit = crate::agent::QUIT;
            let _ = r.write_some(&mut quit);
            if let Some(pidfd) = &r.pidfd {
                let mut p = libc::pollfd {
                    fd: pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one live pollfd.
                unsafe { libc::poll(&mut p, 1, grace.as_millis().min(60_000) as i32) };
            } else {
                let end = Instant::now() + grace;
                while Instant::now() < end && !r.check_exited() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        let exited = self.running.as_mut().is_some_and(Running::check_exited);
        match self.running.take() {
            Some(r) if clean && exited => {
                self.reap_with(r, false);
            }
            r => {
                self.running = r;
                self.kill();
            }
        }
    }

    fn running(&self) -> bool {
        self.running.is_some()
    }

    fn info(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert(
            "pid".into(),
            self.running
                .as_ref()
                .map_or(serde_json::Value::Null, |r| r.pid.into()),
        );
        m
    }
}

/// A `process` VM: the agent VM over a child interpreter.
pub type ProcessVm = AgentBackend<LocalTransport>;

/// Creates a `process` VM (also what serves `networked` VMs, which must load LuaSocket).
pub fn new(options: &VmOptions) -> Result<ProcessVm> {
    // A package environment: its interpreter (unless one is named) and its module paths.
    let pkg = crate::packages::vmenv::for_process(options)?;
    let mut options = options.clone();
    let mut vars = Vec::new();
    if let Some(p) = &pkg {
        options.lua_executable = p.exe.clone();
        vars = p.vars.clone();
    }
    let options = &options;
    let transport = LocalTransport::new(&options.lua_executable, options.memory_limit, vars);
    let mut vm = AgentBackend {
        vm: AgentVm::new(transport, "process", options)?,
        lua_executable: options.lua_executable.clone(),
    };
    if let Some(p) = &pkg {
        crate::packages::vmenv::check_version(p, &vm)?;
    }
    if options.networked {
        check_luasocket(&mut vm)?;
    }
    Ok(vm)
}

fn check_luasocket(vm: &mut ProcessVm) -> Result<()> {
    let req = ExecRequest {
        code: b"local ok, s = pcall(require, 'socket') if not ok then error(s, 0) end return s._VERSION",
        args: None,
        chunk_name: None,
    };
    let out = vm.execute(&req, Some(Duration::from_secs(10)), None)?;
    if out.success {
        return Ok(());
    }
    Err(Error::Original {
        status: St::LuaSocketNotFound,
        message: format!(
            "LuaSocket not found. Install with: luarocks install luasocket (Debian: apt-get install lua-socket); '{}' said: {}",
            vm.lua_executable,
            out.error.as_deref().unwrap_or("").lines().next().unwrap_or("")
        ),
    })
}
