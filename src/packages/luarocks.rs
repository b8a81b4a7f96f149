//! Running luarocks for one environment: its configuration (`LUAROCKS_CONFIG_5_x`), its
//! `HOME` and its working directory, a cleared environment (no `LUA_PATH`, `LUA_INIT`,
//! ... of the caller's), an argument vector (never a shell), a deadline, and its output
//! read line by line into the progress callback. A failure becomes a typed error that
//! carries luarocks' exit status, stdout and stderr.

use super::env::Environment;
use super::error::{PResult, PkgError};
use super::progress::{self, Progress};
use crate::deadline::Deadline;
use crate::status::bioxen_vm_status as St;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

/// Most bytes kept of each of luarocks' output streams.
const MAX_KEPT: usize = 1 << 20;

/// What one luarocks run left.
#[derive(Clone, Debug, Default)]
pub struct RunOutput {
    pub argv: Vec<String>,
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The hint every "luarocks missing" message gives.
pub const INSTALL_HINT: &str =
    "install luarocks (Debian/Ubuntu: apt-get install luarocks; C rocks also need the Lua headers, e.g. liblua5.4-dev)";

/// `name` as a file in a `PATH` directory (or as given when it holds a `/`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn missing(program: &str) -> PkgError {
    PkgError::new(
        St::LuarocksNotFound,
        "luarocks_missing",
        format!("luarocks not found ('{program}' is not in PATH or not a file): {INSTALL_HINT}"),
    )
    .with("program", program)
}

/// Whether the file starts with a `#!` line that runs Lua (`lua`, `lua5.x`, `lua-any`).
fn is_lua_script(p: &Path) -> bool {
    let mut head = [0u8; 128];
    let n = std::fs::File::open(p)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let line = String::from_utf8_lossy(&head[..n]);
    let first = line.lines().next().unwrap_or("");
    first.starts_with("#!") && first.contains("lua")
}

/// The argument vector that runs luarocks for `env` (program, then `--lua-version`).
pub fn base_argv(env: &Environment) -> PResult<Vec<String>> {
    let program = env
        .meta
        .luarocks
        .clone()
        .unwrap_or_else(|| "luarocks".into());
    let path = find_program(&program).ok_or_else(|| missing(&program))?;
    let mut argv = Vec::new();
    if is_lua_script(&path) {
        // Debian's wrappers re-split their arguments through an unquoted $@; running the
        // script with an interpreter directly keeps the argument vector as it is.
        let v = &env.meta.lua_version;
        let interp = [
            env.meta.interpreter.clone(),
            format!("lua{v}"),
            "lua5.4".into(),
            "lua5.3".into(),
            "lua5.1".into(),
            "lua".into(),
        ]
        .into_iter()
        .find_map(|i| find_program(&i))
        .ok_or_else(|| {
            PkgError::new(
                St::LuaNotFound,
                "lua_missing",
                format!(
                    "no Lua interpreter found to run luarocks ({} first)",
                    env.meta.interpreter
                ),
            )
        })?;
        argv.push(interp.display().to_string());
    }
    argv.push(path.display().to_string());
    argv.push(format!("--lua-version={}", env.meta.lua_version));
    Ok(argv)
}

/// Server selection for commands that fetch: one server is also `--only-server`.
pub fn server_args(env: &Environment) -> PResult<Vec<String>> {
    let servers = env.servers()?;
    match servers.as_slice() {
        [] => Err(PkgError::new(
            St::PackageNotFound,
            "no_server",
            format!(
                "environment {} has no rocks server: give it 'servers' (a directory, file:// or http(s):// URL); nothing is installed from a server it does not name",
                env.root.display()
            ),
        )),
        [one] => Ok(vec![format!("--only-server={}", one.luarocks_form())]),
        _ => Ok(Vec::new()),
    }
}

/// Runs luarocks with `args` for `env` until `deadline`.
pub fn run(
    env: &Environment,
    args: &[String],
    deadline: Deadline,
    progress: Option<&Progress>,
) -> PResult<RunOutput> {
    let mut argv = base_argv(env)?;
    argv.extend(args.iter().cloned());
    run_argv(env, argv, deadline, progress)
}

/// `luarocks remove --force name version`.
pub fn remove_forced(
    env: &Environment,
    name: &str,
    version: &str,
    deadline: Deadline,
    progress: Option<&Progress>,
) -> PResult<RunOutput> {
    let args = ["remove", "--force", name, version].map(String::from);
    run(env, &args, deadline, progress)
}

/// A run's temporary directory, removed when the run is over.
struct RunTmp(std::path::PathBuf);

static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl RunTmp {
    fn new(env: &Environment) -> RunTmp {
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = env.work().join(format!("tmp-{}-{n}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        RunTmp(dir)
    }
}

impl Drop for RunTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_argv(
    env: &Environment,
    argv: Vec<String>,
    deadline: Deadline,
    progress: Option<&Progress>,
) -> PResult<RunOutput> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .current_dir(env.work())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for k in [
        "PATH",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
    ] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    let config = env.config_path();
    let var = format!("LUAROCKS_CONFIG_{}", env.meta.lua_version.replace('.', "_"));
    cmd.env("HOME", env.home())
        .env("LUAROCKS_CONFIG", &config)
        .env(var, &config)
        .env("LC_ALL", "C");
    let _ = std::fs::create_dir_all(env.work());
    let _ = std::fs::create_dir_all(env.home());
    // luarocks' own temporary directories (luarocks_<rock>-*) go to a directory of this run
    // inside the environment, removed however the run ends: luarocks leaves them behind
    // when it fails or is killed.
    let tmp = RunTmp::new(env);
    cmd.env("TMPDIR", &tmp.0);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => missing(&argv[0]),
        _ => PkgError::internal(format!("cannot start {}: {e}", argv[0])),
    })?;
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut readers = Vec::new();
    for (i, stream) in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(stream) = stream else { continue };
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        if tx.send((i, Some(line))).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send((i, None));
        }));
    }
    drop(tx);
    let mut out = [String::new(), String::new()];
    let mut open = readers.len();
    let mut timed_out = false;
    let mut cancelled = false;
    while open > 0 {
        let msg = match deadline.remaining() {
            None => rx.recv().ok(),
            Some(left) => match rx.recv_timeout(left) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
        };
        match msg {
            Some((i, Some(line))) => {
                if out[i].len() < MAX_KEPT {
                    out[i].push_str(&line);
                }
                let stream = if i == 0 { "stdout" } else { "stderr" };
                if progress::line(progress, stream, line.trim_end()).is_err() {
                    cancelled = true;
                    break;
                }
            }
            Some((_, None)) => open -= 1,
            None => break,
        }
    }
    if timed_out || cancelled {
        // SAFETY: kill of the child's own process group.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    }
    let status = child.wait().ok().and_then(|s| s.code());
    for r in readers {
        let _ = r.join();
    }
    let [stdout, stderr] = out;
    let o = RunOutput {
        argv,
        status,
        stdout,
        stderr,
    };
    if cancelled {
        return Err(with_output(progress::cancelled(), &o));
    }
    if timed_out {
        return Err(with_output(
            PkgError::timeout(format!(
                "luarocks did not finish in time ({})",
                o.argv.join(" ")
            )),
            &o,
        ));
    }
    Ok(o)
}

/// Adds the run's exit status, output and command to an error.
pub fn with_output(e: PkgError, o: &RunOutput) -> PkgError {
    e.with(
        "exit_status",
        o.status.map_or(serde_json::Value::Null, Into::into),
    )
    .with("stderr", o.stderr.clone())
    .with("stdout", o.stdout.clone())
    .with("command", o.argv.clone())
}

/// The versions of `name` in `luarocks search --porcelain` output (`name TAB version TAB
/// arch TAB server` lines), highest first.
pub fn porcelain_versions(stdout: &str, name: &str) -> Vec<String> {
    let versions = stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (n, v) = (f.next()?, f.next()?);
            n.eq_ignore_ascii_case(name).then(|| v.to_string())
        })
        .collect();
    super::version::sorted_desc(versions)
}

/// The versions of `name` the environment's servers have, as luarocks itself finds them
/// (for servers whose manifests this layer does not read, such as https:// ones).
pub fn search_versions(env: &Environment, name: &str, deadline: Deadline) -> PResult<Vec<String>> {
    let mut args = vec!["search".to_string(), "--porcelain".to_string()];
    args.extend(server_args(env)?);
    args.push(name.to_string());
    let o = run(env, &args, deadline, None)?;
    if o.status != Some(0) {
        return Err(failure(&o, &format!("searching {name}")));
    }
    Ok(porcelain_versions(&o.stdout, name))
}

/// The last `Error: ...` line luarocks printed (its own summary of what failed).
pub fn error_line(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Error: "))
        .or_else(|| stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()))
}

/// A failed run as a typed error. `rock` is what was asked for (for messages).
pub fn failure(o: &RunOutput, what: &str) -> PkgError {
    let err = &o.stderr;
    let summary = error_line(err).unwrap_or("(no message)").to_string();
    let code = o.status.map_or("a signal".to_string(), |c| c.to_string());
    let e = if let Some(rest) = err.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Error: Could not satisfy dependency ")
    }) {
        let constraint = rest.split(": ").next().unwrap_or(rest).to_string();
        PkgError::new(
            St::DependencyConflict,
            "dependency_conflict",
            format!("{what}: luarocks could not satisfy the dependency {constraint} (exit status {code}): {summary}"),
        )
        .with("constraint", constraint)
    } else if err.contains("Removing it would break dependencies for") {
        let dependents: Vec<String> = err
            .lines()
            .skip_while(|l| !l.contains("would break dependencies for"))
            .skip(1)
            .map(str::trim)
            .take_while(|l| !l.is_empty())
            .map(String::from)
            .collect();
        PkgError::new(
            St::DependencyConflict,
            "would_break_dependents",
            format!(
                "{what}: removing it would break {} (exit status {code}); remove those first or pass force",
                dependents.join(", ")
            ),
        )
        .with("dependents", dependents)
    } else if err.contains("No results matching query were found") {
        PkgError::new(
            St::PackageNotFound,
            "no_such_rock",
            format!("{what}: no server of the environment has it (exit status {code}): {summary}"),
        )
    } else if err.contains("is not installed") || err.contains("Could not find rock") {
        PkgError::new(
            St::PackageNotFound,
            "not_installed",
            format!("{what}: not installed (exit status {code}): {summary}"),
        )
    } else if err.contains("Lua header") || err.contains("lua.h") {
        PkgError::new(
            St::BuildFailed,
            "missing_headers",
            format!(
                "{what}: the Lua headers are missing (install liblua5.x-dev for the environment's Lua, or set lua_incdir) (exit status {code}): {summary}"
            ),
        )
    } else if err.contains("Build error")
        || err.contains("Failed compiling")
        || err.contains("Failed installing")
        || err.contains("rockspec")
        || err.contains("Failed copying")
        || err.contains("Failed extracting")
        || err.contains("gcc")
    {
        PkgError::new(
            St::BuildFailed,
            "build_failed",
            format!("{what}: the build failed (exit status {code}): {summary}"),
        )
    } else {
        PkgError::new(
            St::PackageError,
            "luarocks_failed",
            format!("{what}: luarocks failed (exit status {code}): {summary}"),
        )
    };
    with_output(e, o)
}
