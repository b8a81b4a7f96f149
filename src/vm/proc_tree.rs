//! Finding and stopping every process an interpreter started (Linux `/proc`).
//!
//! A `process` VM's interpreter is made a child subreaper, so that whatever it starts
//! stays its descendant while it lives, even a daemon that forks twice and calls
//! `setsid`: [`kill_descendants`] walks that tree. Every process of the VM also carries an
//! environment tag, which [`kill_tagged`] looks for once the interpreter itself is gone
//! (its orphans then belong to init).

use std::time::{Duration, Instant};

/// Fields of `/proc/<pid>/stat` after the command name: (state, ppid).
fn stat(pid: i32) -> Option<(u8, i32)> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut words = rest.split_whitespace();
    let state = words.next()?.bytes().next()?;
    let ppid = words.next()?.parse().ok()?;
    Some((state, ppid))
}

fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some((s, _)) if s != b'Z' && s != b'X')
}

/// Direct children of `pid`, from each task's `children` file, else from a scan of every
/// process's parent.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(tasks) => {
            let mut found_file = false;
            for t in tasks.flatten() {
                if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                    found_file = true;
                    out.extend(
                        text.split_whitespace()
                            .filter_map(|w| w.parse::<i32>().ok()),
                    );
                }
            }
            if found_file {
                return out;
            }
        }
        Err(_) => return out,
    }
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if stat(p).is_some_and(|(_, ppid)| ppid == pid) {
            out.push(p);
        }
    }
    out
}

/// Every living descendant of `root` (not `root` itself).
pub fn descendants(root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for c in children(p) {
            if seen.len() > 100_000 {
                return out;
            }
            if seen.insert(c) {
                queue.push(c);
                if alive(c) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// SIGKILLs what `find` returns until it returns nothing or `limit` passes. Returns how
/// many were killed.
fn kill_until_none(find: impl Fn() -> Vec<i32>, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut killed = 0;
    loop {
        let found = find();
        if found.is_empty() || Instant::now() >= deadline {
            return killed;
        }
        for p in &found {
            // SAFETY: plain syscall. The pid was found a moment ago among this VM's
            // processes; one that died since is a zombie until its parent (the subreaper,
            // or init) reaps it, which leaves no time for the number to be reused.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
        killed += found.len();
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// SIGKILLs every descendant of `root` until none is left alive, or `limit` passes.
/// `root` should be stopped or otherwise unable to start new ones. Returns how many were
/// killed.
pub fn kill_descendants(root: i32, limit: Duration) -> usize {
    kill_until_none(|| descendants(root), limit)
}

/// The environment variable that tags a VM's processes.
pub const TAG_VAR: &str = "BIOXEN_VM_PROCESS";

/// SIGKILLs every process of this user whose environment holds `TAG_VAR=tag`, until none
/// is left or `limit` passes. Returns how many were killed.
pub fn kill_tagged(tag: &str, limit: Duration) -> usize {
    let needle = format!("{TAG_VAR}={tag}");
    kill_until_none(
        || {
            let mut found = Vec::new();
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                    continue;
                };
                let Ok(env) = std::fs::read(format!("/proc/{p}/environ")) else {
                    continue;
                };
                if env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) && alive(p) {
                    found.push(p);
                }
            }
            found
        },
        limit,
    )
}
