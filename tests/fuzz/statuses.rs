//! The statuses each function documents, read from the checked-in header: a call that
//! returns a status its doc comment does not name breaks its contract.
//!
//! A doc comment's "Statuses:" paragraph names statuses (`INVALID_HANDLE`, ...) and may
//! refer to other functions ("those of `bioxen_vm_execute`"); references are followed.
//! "the job's own failure" means the statuses of `bioxen_vm_execute`.

use crate::common::status_name;
use std::collections::{BTreeSet, HashMap};

pub struct Documented {
    /// Status code of each name (`OK`, `INVALID_HANDLE`, ...).
    codes: HashMap<String, i32>,
    /// Each function's own names and the functions it refers to.
    own: HashMap<String, (BTreeSet<String>, Vec<String>)>,
}

impl Documented {
    pub fn load() -> Documented {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/bioxen_vm.h");
        let header = std::fs::read_to_string(path).expect("include/bioxen_vm.h");
        let mut codes = HashMap::new();
        for code in 0..128 {
            let name = status_name(code);
            if name != "UNKNOWN" {
                codes.insert(name, code);
            }
        }
        let mut own = HashMap::new();
        let mut comment = String::new();
        let mut in_comment = false;
        for line in header.lines() {
            let t = line.trim();
            if t.starts_with("/**") {
                in_comment = true;
                comment.clear();
                continue;
            }
            if in_comment {
                if t.starts_with("*/") {
                    in_comment = false;
                } else {
                    comment.push_str(t.trim_start_matches('*').trim());
                    comment.push('\n');
                }
                continue;
            }
            if let Some(name) = declared_function(t) {
                if let Some(p) = statuses_paragraph(&comment) {
                    own.insert(name, parse_paragraph(&p, &codes));
                }
                comment.clear();
            }
        }
        Documented { codes, own }
    }

    /// The status codes `function` documents (with the statuses of the functions it refers
    /// to). Panics for a function without a "Statuses:" paragraph: the harness only calls
    /// functions whose statuses are documented.
    pub fn of(&self, function: &str) -> BTreeSet<i32> {
        let mut names = BTreeSet::new();
        let mut todo = vec![function.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(f) = todo.pop() {
            if !seen.insert(f.clone()) {
                continue;
            }
            let (n, refs) = self
                .own
                .get(&f)
                .unwrap_or_else(|| panic!("{f} documents no statuses in the header"));
            names.extend(n.iter().cloned());
            todo.extend(refs.iter().cloned());
        }
        names.iter().map(|n| self.codes[n]).collect()
    }
}

/// `int32_t bioxen_vm_foo(` → `bioxen_vm_foo`.
fn declared_function(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("int32_t ")
        .or_else(|| line.strip_prefix("void "))?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (name.starts_with("bioxen_vm_") && rest[name.len()..].starts_with('(')).then_some(name)
}

/// The text from "Statuses:" to the end of its paragraph.
fn statuses_paragraph(comment: &str) -> Option<String> {
    let at = comment.find("Statuses:")?;
    let mut p = String::new();
    for line in comment[at..].lines() {
        if line.is_empty() || line.starts_with('#') {
            break;
        }
        p.push_str(line);
        p.push(' ');
    }
    Some(p)
}

fn parse_paragraph(p: &str, codes: &HashMap<String, i32>) -> (BTreeSet<String>, Vec<String>) {
    let mut names = BTreeSet::new();
    let mut refs = Vec::new();
    let words = p.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    for w in words {
        if codes.contains_key(w) {
            names.insert(w.to_string());
        } else if w.starts_with("bioxen_vm_") {
            refs.push(w.to_string());
        }
    }
    if p.contains("job's own failure") {
        refs.push("bioxen_vm_execute".to_string());
    }
    // "those of VM creation (LUA_NOT_FOUND, ...)" names its statuses itself.
    (names, refs)
}
