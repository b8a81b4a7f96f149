//! A private OpenSSH server on 127.0.0.1 for the `ssh` tests: a free port, keys made for
//! the run in a private directory, and a test user (`bxuser`, uid 4321, shell `/bin/sh`,
//! an empty home, so that no start-up file adds anything) that exists only inside the
//! server's own mount namespace (a private copy of /etc/passwd and /etc/shadow is mounted
//! there). The server is stopped by its pid and the directory removed when the value is
//! dropped, whatever the test's outcome.

#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "bxuser";
pub const UID: u32 = 4321;
/// The test user's password (password authentication is on for it).
pub const PASSWORD: &str = "correct horse 'battery' $staple";

pub struct Sshd {
    pub port: u16,
    /// The server's mount namespace: the processes of this rig are the ones in it.
    ns: String,
    pub dir: PathBuf,
    child: Option<Child>,
    /// Private key accepted for USER (ed25519, no passphrase).
    pub key: PathBuf,
    /// The same key, encrypted with KEY_PASSPHRASE.
    pub key_encrypted: PathBuf,
    /// known_hosts with the server's key under `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    /// `SHA256:...` of the server's host key.
    pub fingerprint: String,
    /// The host public key line (`ssh-ed25519 AAAA...`).
    pub host_pub: String,
}

pub const KEY_PASSPHRASE: &str = "open sesame";

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

pub fn keygen(path: &Path, passphrase: &str) {
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "bioxen-test",
            "-f",
        ])
        .arg(path));
}

impl Sshd {
    /// Starts a server; `extra` lines are added to its sshd_config.
    pub fn start(extra: &str) -> Sshd {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "the ssh tests need OpenSSH's server (Debian package openssh-server)"
        );
        // SAFETY: plain syscall.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the ssh tests start sshd in a private mount namespace, which needs root"
        );
        let dir = std::env::temp_dir().join(format!(
            "bioxen_vm-sshd-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("home")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.join("home");
        std::os::unix::fs::chown(&home, Some(UID), Some(UID)).unwrap();
        let host = dir.join("host_ed25519");
        keygen(&host, "");
        let key = dir.join("client_ed25519");
        keygen(&key, "");
        let key_encrypted = dir.join("client_encrypted");
        std::fs::copy(&key, &key_encrypted).unwrap();
        std::fs::set_permissions(&key_encrypted, std::fs::Permissions::from_mode(0o600)).unwrap();
        run(Command::new("ssh-keygen")
            .args(["-q", "-p", "-P", "", "-N", KEY_PASSPHRASE, "-f"])
            .arg(&key_encrypted));
        let authorized = dir.join("authorized_keys");
        std::fs::copy(dir.join("client_ed25519.pub"), &authorized).unwrap();
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644)).unwrap();
        // The user, only inside the server's namespace.
        let hash = run(Command::new("openssl")
            .args(["passwd", "-6", "-salt", "bioxenvmtest"])
            .arg(PASSWORD));
        let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        passwd.push_str(&format!(
            "{USER}:x:{UID}:{UID}:bioxen test:{}:/bin/sh\n",
            home.display()
        ));
        std::fs::write(dir.join("passwd"), passwd).unwrap();
        let mut shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
        shadow.push_str(&format!("{USER}:{}:19000:0:99999:7:::\n", hash.trim()));
        std::fs::write(dir.join("shadow"), shadow).unwrap();
        let mut group = std::fs::read_to_string("/etc/group").unwrap();
        group.push_str(&format!("{USER}:x:{UID}:\n"));
        std::fs::write(dir.join("group"), group).unwrap();
        let host_pub = std::fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
        let host_pub = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let fp = run(Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(dir.join("host_ed25519.pub")));
        let fingerprint = fp
            .split_whitespace()
            .nth(1)
            .expect("a fingerprint")
            .to_string();
        for attempt in 0..5 {
            let port = free_port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
                     AuthorizedKeysFile {auth}\nPubkeyAuthentication yes\nPasswordAuthentication yes\n\
                     KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin no\nStrictModes no\n\
                     LogLevel VERBOSE\nPrintMotd no\nPrintLastLog no\nX11Forwarding no\nAllowTcpForwarding no\n\
                     MaxStartups 100\nAllowUsers {USER}\n{extra}\n",
                    host = host.display(),
                    pid = dir.join("sshd.pid").display(),
                    auth = authorized.display(),
                ),
            )
            .unwrap();
            let known_hosts = dir.join("known_hosts");
            std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}\n")).unwrap();
            let script = format!(
                "mount --bind {d}/passwd /etc/passwd && mount --bind {d}/shadow /etc/shadow && \
                 mount --bind {d}/group /etc/group && mount -t tmpfs -o mode=755 tmpfs /run && \
                 mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -f {d}/sshd_config -E {d}/sshd.log",
                d = dir.display()
            );
            let child = Command::new("unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting sshd through unshare");
            let mut s = Sshd {
                port,
                ns: String::new(),
                dir: dir.clone(),
                child: Some(child),
                key: key.clone(),
                key_encrypted: key_encrypted.clone(),
                known_hosts,
                fingerprint: fingerprint.clone(),
                host_pub: host_pub.clone(),
            };
            if s.wait_listening(Duration::from_secs(5)) {
                s.ns = s.pid().map(namespace_of).unwrap_or_default();
                return s;
            }
            s.stop();
            assert!(attempt < 4, "sshd did not start: {}", s.log());
        }
        unreachable!()
    }

    fn wait_listening(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return false;
                }
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut b = [0u8; 4];
                if s.read_exact(&mut b).is_ok() && &b == b"SSH-" {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// The pid of the listening sshd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// JSON members (no braces) of an ssh VM's options for this server with key
    /// authentication.
    pub fn members(&self, lua: &str) -> String {
        format!(
            r#""vm_type": "ssh", "host": "127.0.0.1", "port": {}, "username": "{USER}", "key_file": {:?}, "known_hosts": {:?}, "use_agent": false, "lua_executable": "{lua}""#,
            self.port,
            self.key.display().to_string(),
            self.known_hosts.display().to_string()
        )
    }

    /// An ssh VM's options object for this server (`extra` members appended).
    pub fn options(&self, lua: &str, extra: &str) -> String {
        let sep = if extra.is_empty() { "" } else { ", " };
        format!("{{{}{sep}{extra}}}", self.members(lua))
    }

    /// Kills the server (by pid) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server without closing its connections: SIGSTOP, so the peer goes
    /// silent (a dead peer).
    pub fn freeze(&self) {
        for pid in self.server_pids() {
            // SAFETY: plain syscall on a process of this rig.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
    }

    pub fn thaw(&self) {
        for pid in self.server_pids() {
            // SAFETY: plain syscall on a process of this rig.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
    }

    /// The listener and every sshd session process under it.
    pub fn server_pids(&self) -> Vec<i32> {
        let Some(root) = self.pid() else {
            return Vec::new();
        };
        let mut out = vec![root as i32];
        for p in all_processes() {
            if p.exe_name.starts_with("sshd") && out.contains(&p.ppid) {
                out.push(p.pid);
            }
        }
        // Session processes of sessions: a second pass catches grandchildren.
        for p in all_processes() {
            if p.exe_name.starts_with("sshd") && out.contains(&p.ppid) && !out.contains(&p.pid) {
                out.push(p.pid);
            }
        }
        out
    }
}

impl Sshd {
    /// Living processes of the test user on this server (the remote side's process list).
    pub fn processes(&self) -> Vec<Proc> {
        all_processes()
            .into_iter()
            .filter(|p| p.uid == UID && !p.zombie && namespace_of(p.pid as u32) == self.ns)
            .collect()
    }

    /// Waits (bounded) until the test user runs no process on this server that matches
    /// `pred`; the ones left otherwise.
    pub fn wait_gone(&self, pred: impl Fn(&Proc) -> bool, limit: Duration) -> Vec<String> {
        let end = Instant::now() + limit;
        loop {
            let left: Vec<String> = self
                .processes()
                .into_iter()
                .filter(|p| pred(p))
                .map(|p| format!("{} {:?}", p.pid, p.cmdline))
                .collect();
            if left.is_empty() || Instant::now() >= end {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn namespace_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.thaw();
        let mine = self.processes();
        self.stop();
        // Whatever the user's processes on this server are, they die with it.
        for p in mine {
            // SAFETY: plain syscall on a process of the test user in this rig.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    pub exe_name: String,
    pub cmdline: Vec<String>,
    pub zombie: bool,
}

/// Every process on the machine (the server's own process list).
pub fn all_processes() -> Vec<Proc> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|u| u.parse().ok())
            })
            .unwrap_or(u32::MAX);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push(Proc {
            pid,
            ppid: rest.get(1).and_then(|p| p.parse().ok()).unwrap_or(0),
            uid,
            exe_name: name,
            cmdline,
            zombie: rest.first() == Some(&"Z"),
        });
    }
    out
}

/// Whether a process is one of the library's interpreters (lua started by the launcher).
pub fn is_interpreter(p: &Proc) -> bool {
    p.exe_name.starts_with("lua")
}

static SHARED: std::sync::OnceLock<Sshd> = std::sync::OnceLock::new();
static SHARED_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
static SHARED_DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

extern "C" fn stop_shared() {
    let pid = SHARED_PID.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: plain syscalls on the rig's own server, at process exit.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    for p in all_processes() {
        if p.uid == UID {
            // SAFETY: plain syscall on a process of the test user.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
    }
    if let Ok(Some(dir)) = SHARED_DIR.lock().map(|d| d.clone()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// One server for a whole test binary (the shared behaviour suites on ssh VMs), stopped by
/// its pid when the binary exits.
pub fn shared() -> &'static Sshd {
    SHARED.get_or_init(|| {
        let s = Sshd::start("");
        SHARED_PID.store(
            s.pid().map_or(0, |p| p as i32),
            std::sync::atomic::Ordering::SeqCst,
        );
        if let Ok(mut d) = SHARED_DIR.lock() {
            *d = Some(s.dir.clone());
        }
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(stop_shared) };
        s
    })
}
