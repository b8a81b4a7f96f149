//! What a case may not leave behind: threads and child processes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The test runner names each test's thread after its test; the tests of this file that
/// may start while a case runs are named with this prefix, and their threads are not ones a
/// case left behind.
const TEST_THREADS: &str = "harness_";

/// The process's threads (but the test runner's): id and name.
pub fn threads() -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                let name = name.trim();
                if !name.starts_with(TEST_THREADS) {
                    out.insert(tid, name.to_string());
                }
            }
        }
    }
    out
}

/// Child processes of this process (zombies included): pid, name and state.
pub fn children() -> Vec<(u32, String, char)> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == me {
            out.push((pid, name, state));
        }
    }
    out
}

/// The calling thread's id.
pub fn own_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Polls until no thread outside `baseline` (but the calling one) is left and no child process remains, up to
/// `limit`. Returns what is still there at the end (empty: clean).
pub fn wait_clean(baseline: &BTreeMap<u32, String>, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let me = own_tid();
    loop {
        let extra: Vec<String> = threads()
            .into_iter()
            .filter(|(tid, _)| !baseline.contains_key(tid) && *tid != me)
            .map(|(tid, name)| format!("thread {tid} ({name})"))
            .chain(
                children()
                    .into_iter()
                    .map(|(pid, name, st)| format!("child process {pid} ({name}, state {st})")),
            )
            .collect();
        if extra.is_empty() || start.elapsed() > limit {
            return extra;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resident set size in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}
