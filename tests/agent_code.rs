//! Agents started from the bytecode an interpreter dumped before (the agent's code cache):
//! they behave as agents started from source, and an interpreter that refuses the bytecode
//! gets the source instead, without the caller noticing.

mod common;
use bioxen_vm::agent::code_cache::{self, Entry};
use common::*;
use std::sync::Arc;

fn opts(lua: &str) -> String {
    format!(r#"{{"vm_type": "process", "lua_executable": "{lua}"}}"#)
}

/// The cache key of the local interpreter `lua` (the real file behind it).
fn key_of(lua: &str) -> String {
    let real = std::fs::canonicalize(format!("/usr/bin/{lua}")).unwrap();
    let prefix = format!("local\0{}\0", real.display());
    code_cache::keys()
        .into_iter()
        .find(|k| k.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no cache entry for {lua}: {:?}", code_cache::keys()))
}

const CASES: &[&str] = &[
    "return 1, 'two', true, nil",
    "x = (x or 0) + 1 return x",
    "error('boom')",
    "local function f() error({code = 7}) end f()",
    "print('out') io.stderr:write('err') return ...",
    "return debug.traceback('here')",
];

fn results(vm: &TestVm) -> Vec<String> {
    CASES
        .iter()
        .map(|c| {
            let r = vm.exec(c);
            format!(
                "{} {:?} {:?} {:?} {:?}",
                r.success, r.values, r.stdout, r.stderr, r.error
            )
        })
        .collect()
}

#[test]
fn agents_from_bytecode_behave_as_agents_from_source_and_refused_bytecode_falls_back() {
    for lua in ["lua5.4", "lua5.1"] {
        // The first VM on an interpreter compiles the source and leaves its bytecode.
        let first = TestVm::new(&opts(lua));
        let from_source = results(&first);
        let key = key_of(lua);
        let Some(Entry::Code(code)) = code_cache::get(&key) else {
            panic!("{lua}: no bytecode cached");
        };
        assert!(code.starts_with(b"\x1bLua"), "{lua}: {:?}", &code[..8]);
        // The next one starts from it, and nothing a caller sees differs.
        let second = TestVm::new(&opts(lua));
        assert_eq!(results(&second), from_source, "{lua}");
        drop((first, second));

        // Bytecode the interpreter refuses (another build's) is forgotten: the VM starts
        // from source and the cache learns the right bytecode again.
        code_cache::put(
            key.clone(),
            Entry::Code(Arc::new(b"\x1bLuaX not a chunk".to_vec())),
        );
        let third = TestVm::new(&opts(lua));
        assert_eq!(results(&third), from_source, "{lua}");
        let Some(Entry::Code(again)) = code_cache::get(&key) else {
            panic!("{lua}: the cache did not learn again");
        };
        assert_eq!(again, code, "{lua}");
    }
}
