//! Clusters and broadcasts (the original's `create_vm_cluster`, `broadcast_to_cluster`,
//! `wait_for_cluster`, ...): groups of a manager's VMs chosen by fnmatch-style patterns,
//! plus the manager-wide `shutdown_all` and `list_persistent_vms`.

use crate::error::{Error, Result};
use crate::jobs::Job;
use crate::manager::Manager;
use crate::session::{Streams, Wait};
use crate::vm::ExecOutput;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Most VMs one cluster call creates.
pub const MAX_CLUSTER_SIZE: usize = 100_000;

/// Python's `fnmatch` (case-sensitive, as on POSIX): `*`, `?`, `[seq]`, `[!seq]` with
/// ranges; a `[` without its `]` matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point for the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(&p, pi, t[ti]) {
                        if matched {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `[...]` at `p[start]` against `c`: (matched, index after `]`), or `None` when the class
/// is not closed.
fn class_match(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < p.len() && p[i] == '!';
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (first || p[i] != ']') {
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            matched |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    if i >= p.len() {
        return None;
    }
    Some((matched != negate, i + 1))
}

/// A result as the original's cluster functions report it: the result dict, or for a
/// failure `{success: false, return_code: -1, stdout: "", stderr: message, ...}`.
pub fn result_json(r: &Result<ExecOutput>) -> Value {
    match r {
        Ok(o) => json!({
            "success": o.success,
            "return_code": o.return_code,
            "stdout": String::from_utf8_lossy(&o.stdout),
            "stderr": String::from_utf8_lossy(&o.stderr),
            "values": serde_json::from_slice::<Value>(&o.values_json).unwrap_or(Value::Null),
            "error": o.error,
            "duration": o.duration.as_secs_f64(),
        }),
        Err(e) => json!({
            "success": false,
            "return_code": -1,
            "stdout": "",
            "stderr": e.to_string(),
            "error": e.to_string(),
            "status": e.status().name(),
        }),
    }
}

impl Manager {
    fn cluster_ids(cluster_id: &str, count: usize) -> Result<Vec<String>> {
        if count == 0 || count > MAX_CLUSTER_SIZE {
            return Err(Error::invalid(format!(
                "a cluster has 1 to {MAX_CLUSTER_SIZE} VMs, not {count}"
            )));
        }
        Manager::check_id(cluster_id)?;
        Ok((0..count).map(|i| format!("{cluster_id}_{i:03}")).collect())
    }

    /// Creates `count` VMs `<cluster>_000`, `<cluster>_001`, ...; all or none.
    pub fn create_cluster(
        &self,
        cluster_id: &str,
        count: usize,
        options_json: &str,
    ) -> Result<Vec<String>> {
        let parallel = self.parallel_builds(options_json)?;
        self.create_all(cluster_id, count, parallel, |id| {
            self.create_vm(id, options_json).map(drop)
        })
    }

    /// Creates `count` interactive VMs (sessions not attached); all or none.
    pub fn create_interactive_cluster(
        &self,
        cluster_id: &str,
        count: usize,
        options_json: &str,
    ) -> Result<Vec<String>> {
        let parallel = self.parallel_builds(options_json)?;
        self.create_all(cluster_id, count, parallel, |id| {
            self.create_interactive_vm(id, options_json, false)
                .map(drop)
        })
    }

    fn create_all(
        &self,
        cluster_id: &str,
        count: usize,
        parallel: usize,
        create: impl Fn(&str) -> Result<()> + Sync,
    ) -> Result<Vec<String>> {
        let ids = Self::cluster_ids(cluster_id, count)?;
        if parallel > 1 {
            return self.create_parallel(ids, parallel, create);
        }
        for (n, id) in ids.iter().enumerate() {
            if let Err(e) = create(id) {
                for done in &ids[..n] {
                    let _ = self.remove_vm(done);
                }
                return Err(e);
            }
        }
        Ok(ids)
    }

    /// `create` for every id on up to `parallel` threads; all or none (after the first
    /// failure no new VM is started, and the ones made are removed).
    fn create_parallel(
        &self,
        ids: Vec<String>,
        parallel: usize,
        create: impl Fn(&str) -> Result<()> + Sync,
    ) -> Result<Vec<String>> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let errors = parking_lot::Mutex::new(Vec::new());
        let made = parking_lot::Mutex::new(Vec::new());
        // Serials in id order: the VMs list in id order, whichever deploy ends first.
        let first = crate::vm::reserve_serials(ids.len());
        std::thread::scope(|s| {
            for _ in 0..parallel.min(ids.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, SeqCst);
                    if i >= ids.len() || failed.load(SeqCst) {
                        break;
                    }
                    match crate::vm::with_serial(first + i as u64, || create(&ids[i])) {
                        Ok(()) => made.lock().push(i),
                        Err(e) => {
                            failed.store(true, SeqCst);
                            errors.lock().push((i, e));
                        }
                    }
                });
            }
        });
        let mut errors = errors.into_inner();
        errors.sort_by_key(|(i, _)| *i);
        match errors.into_iter().next() {
            Some((_, e)) => {
                for i in made.into_inner() {
                    let _ = self.remove_vm(&ids[i]);
                }
                Err(e)
            }
            None => Ok(ids),
        }
    }

    /// The manager's VM ids matching `pattern`, in creation order.
    pub fn matching(&self, pattern: &str) -> Vec<String> {
        self.list_vms()
            .into_iter()
            .filter(|id| glob_match(pattern, id))
            .collect()
    }

    /// Queues `code` on every VM matching `pattern`: a job per VM.
    pub fn broadcast(
        &self,
        pattern: &str,
        code: &[u8],
        args: Option<Value>,
        timeout: Option<Duration>,
    ) -> Result<Vec<(String, Arc<Job>)>> {
        let ids = self.matching(pattern);
        if ids.is_empty() {
            return Err(Error::VmNotFound(format!(
                "No VMs found matching pattern: {pattern}"
            )));
        }
        ids.into_iter()
            .map(|id| {
                let job = self.execute_async(&id, code, args.clone(), timeout)?;
                Ok((id, job))
            })
            .collect()
    }

    /// Waits (up to `timeout` in all) for each job: `{vm_id: result}` (see [`result_json`]).
    pub fn wait_for_cluster(jobs: &[(String, Arc<Job>)], timeout: Option<Duration>) -> Value {
        let deadline = crate::deadline::Deadline::after(timeout);
        let mut out = Map::new();
        for (id, job) in jobs {
            out.insert(id.clone(), result_json(&job.wait_until(deadline)));
        }
        Value::Object(out)
    }

    /// `{vm_id: status}` for the VMs matching `pattern` (`idle` when no job ran).
    pub fn cluster_status(&self, pattern: &str) -> Value {
        let mut out = Map::new();
        for id in self.matching(pattern) {
            out.insert(id.clone(), self.vm_status(&id).into());
        }
        Value::Object(out)
    }

    /// Removes the VMs matching `pattern`; how many.
    pub fn cleanup_cluster(&self, pattern: &str) -> usize {
        self.matching(pattern)
            .iter()
            .filter(|id| self.remove_vm(id).is_ok())
            .count()
    }

    /// Sends `command` to every attached session matching `pattern`, then waits (up to
    /// `timeout` for each; `None`: no limit) for each to be idle: `{vm_id: output}`.
    pub fn broadcast_to_sessions(
        &self,
        pattern: &str,
        command: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let sessions: Vec<_> = {
            let mut v: Vec<_> = self
                .sessions
                .read()
                .iter()
                .filter(|(id, s)| s.is_attached() && glob_match(pattern, id))
                .map(|(id, s)| (id.clone(), s.clone()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        if sessions.is_empty() {
            return Err(Error::VmNotFound(format!(
                "No attached sessions found matching pattern: {pattern}"
            )));
        }
        // A session that ends meanwhile (removed, terminated, its manager shutting down)
        // is left out rather than failing the broadcast after others got the command.
        let sessions: Vec<_> = sessions
            .into_iter()
            .filter(|(_, s)| s.send_input(command).is_ok())
            .collect();
        if sessions.is_empty() {
            return Err(Error::VmNotFound(format!(
                "No attached sessions found matching pattern: {pattern}"
            )));
        }
        let mut out = Map::new();
        for (id, s) in sessions {
            let text = s
                .read(timeout, Wait::Idle, Streams::All)
                .unwrap_or_default();
            out.insert(id, String::from_utf8_lossy(&text).into_owned().into());
        }
        Ok(Value::Object(out))
    }

    /// Interrupts and removes every VM and session, cancels every job, and returns at once:
    /// it never waits for running code. The manager stays usable.
    pub fn shutdown_all(&self) -> usize {
        let ids = self.list_vms();
        for id in &ids {
            if let Ok(vm) = self.get(id) {
                vm.interrupt();
            }
            self.cancel_vm(id);
            let _ = self.remove_vm(id);
        }
        ids.len()
    }

    /// The original's `list_persistent_vms`: `{vm_id: {created_at, vm_type, networked,
    /// interactive_capable, session_active, vm_class, session_attached, process_running,
    /// vm_exists}}` for persistent VMs (created with `persistent`, or interactive).
    pub fn list_persistent_vms(&self) -> Value {
        let sessions = self.sessions.read();
        let mut out = Map::new();
        for id in self.list_vms() {
            let Ok(vm) = self.get(&id) else { continue };
            let session = sessions.get(&id);
            if !vm.options().persistent && session.is_none() {
                continue;
            }
            out.insert(
                id,
                json!({
                    "created_at": vm.created_at(),
                    "vm_type": vm.options().kind.name(),
                    "networked": vm.options().networked,
                    "interactive_capable": true,
                    "session_active": session.is_some(),
                    "vm_class": "LuaProcess",
                    "session_attached": session.is_some_and(|s| s.is_attached()),
                    "process_running": vm.process_running(),
                    "vm_exists": true,
                }),
            );
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn fnmatch_patterns() {
        for (p, t, m) in [
            ("c_*", "c_000", true),
            ("c_*", "d_000", false),
            ("*", "", true),
            ("c_00?", "c_001", true),
            ("c_00?", "c_0010", false),
            ("c_00[0-2]", "c_002", true),
            ("c_00[0-2]", "c_003", false),
            ("c_00[!0-2]", "c_003", true),
            ("c_00[!0-2]", "c_001", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("[]]x", "]x", true),
            ("[x", "[x", true),
            ("*_0[0-9][0-9]", "web_042", true),
            ("exact", "exact", true),
            ("exact", "Exact", false),
        ] {
            assert_eq!(glob_match(p, t), m, "{p} ~ {t}");
        }
    }
}
