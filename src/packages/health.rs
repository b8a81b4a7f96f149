//! The health check of an environment: luarocks and the interpreter are there, the Lua
//! headers are there when C rocks need them, the servers answer, every module of the
//! locked (else installed) rocks `require`s in the interpreter with the environment's
//! paths alone, and the tree has not drifted from the lockfile.

use super::env::Environment;
use super::error::PResult;
use super::index;
use super::lockfile;
use super::luarocks;
use super::paths::ModulePaths;
use super::tree::TreeManifest;
use serde_json::{json, Map, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

fn check(ok: bool, message: impl Into<String>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ok".into(), ok.into());
    m.insert("message".into(), message.into().into());
    m
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Requires each of `modules` in `interp` with `paths` alone; the failures.
fn require_all(
    interp: &str,
    paths: &ModulePaths,
    modules: &[String],
    work: &std::path::Path,
) -> Result<Vec<(String, String)>, String> {
    if modules.is_empty() {
        return Ok(Vec::new());
    }
    const SCRIPT: &str = r#"for m in string.gmatch(os.getenv("BIOXEN_VM_MODULES") or "", "[^\n]+") do
  local ok, err = pcall(require, m)
  if not ok then io.write(m, "\t", (tostring(err):gsub("[\r\n\t]+", " ")), "\n") end
end"#;
    let mut cmd = Command::new(interp);
    cmd.arg("-e")
        .arg(SCRIPT)
        .env_clear()
        .env("BIOXEN_VM_MODULES", modules.join("\n"))
        .current_dir(work)
        .stdin(Stdio::null());
    if let Some(p) = std::env::var_os("PATH") {
        cmd.env("PATH", p);
    }
    for (k, v) in paths.env_vars() {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {interp}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('\t')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect())
}

/// Runs every check on `env`.
pub fn health(env: &Environment) -> PResult<Value> {
    let mut checks = Map::new();
    let v = &env.meta.lua_version;
    // luarocks
    let lr = match luarocks::run(
        env,
        &["--version".to_string()],
        crate::deadline::Deadline::after(Some(Duration::from_secs(30))),
        None,
    ) {
        Ok(o) if o.status == Some(0) => {
            let mut c = check(true, first_line(o.stdout.as_bytes()));
            c.insert("command".into(), o.argv.into());
            c
        }
        Ok(o) => check(
            false,
            format!(
                "luarocks --version failed: {}",
                first_line(o.stderr.as_bytes())
            ),
        ),
        Err(e) => check(false, e.message),
    };
    checks.insert("luarocks".into(), lr.into());
    // interpreter
    let interp = luarocks::find_program(&env.meta.interpreter);
    let ic = match &interp {
        Some(p) => match Command::new(p).arg("-v").stdin(Stdio::null()).output() {
            Ok(o) => {
                let text = format!("{}{}", first_line(&o.stdout), first_line(&o.stderr));
                let ok = text.contains(&format!("Lua {v}"));
                let mut c = check(
                    ok,
                    if ok {
                        text
                    } else {
                        format!("{} reports '{text}', not Lua {v}", p.display())
                    },
                );
                c.insert("path".into(), p.display().to_string().into());
                c
            }
            Err(e) => check(false, format!("cannot run {}: {e}", p.display())),
        },
        None => check(
            false,
            format!(
                "interpreter '{}' not found in PATH (Debian: apt-get install lua{v})",
                env.meta.interpreter
            ),
        ),
    };
    checks.insert("interpreter".into(), ic.into());
    // headers
    let manifest = TreeManifest::load(env)?;
    let needs_c = manifest.installed().iter().any(|(n, ver)| {
        manifest
            .modules_of(n, ver)
            .iter()
            .any(|(_, f)| f.ends_with(".so"))
    });
    let incdirs: Vec<String> = match &env.meta.lua_incdir {
        Some(d) => vec![d.clone()],
        None => vec![
            format!("/usr/include/lua{v}"),
            format!("/usr/local/include/lua{v}"),
            "/usr/local/include".into(),
            "/usr/include".into(),
        ],
    };
    let found = incdirs
        .iter()
        .find(|d| std::path::Path::new(d).join("lua.h").is_file());
    let mut hc = match found {
        Some(d) => check(true, format!("lua.h in {d}")),
        None if needs_c => check(
            false,
            format!(
                "no lua.h in {}: C rocks cannot be built (Debian: apt-get install liblua{v}-dev)",
                incdirs.join(", ")
            ),
        ),
        None => check(
            true,
            format!(
                "no lua.h in {} (only needed to build C rocks)",
                incdirs.join(", ")
            ),
        ),
    };
    hc.insert("present".into(), found.is_some().into());
    checks.insert("headers".into(), hc.into());
    // servers
    let servers = env.servers()?;
    let indexes = index::read_all(&servers, v, Duration::from_secs(5));
    let list: Vec<Value> = indexes
        .iter()
        .map(|i| match (&i.rocks, &i.error) {
            (Some(r), _) => json!({ "server": i.server, "ok": true, "rocks": r.len() }),
            (None, e) => json!({ "server": i.server, "ok": false, "message": e }),
        })
        .collect();
    let servers_ok = !list.is_empty() && list.iter().all(|s| s["ok"] == true);
    let mut sc = check(
        servers_ok,
        if list.is_empty() {
            "the environment names no server".to_string()
        } else if servers_ok {
            "every server answers".to_string()
        } else {
            "a server does not answer".to_string()
        },
    );
    sc.insert("servers".into(), list.into());
    checks.insert("servers".into(), sc.into());
    // modules
    let lock = lockfile::read(&env.lockfile_path()).ok();
    let rocks: Vec<(String, String)> = match &lock {
        Some(l) => l
            .rocks
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect(),
        None => manifest.installed(),
    };
    let mut modules: Vec<String> = Vec::new();
    for (n, ver) in &rocks {
        modules.extend(manifest.modules_of(n, ver).into_iter().map(|(m, _)| m));
    }
    modules.retain(|m| super::names::module_name(m));
    let mc = match &interp {
        None => check(false, "no interpreter to require the modules with"),
        Some(p) => match require_all(
            &p.display().to_string(),
            &ModulePaths::for_env(env),
            &modules,
            &env.work(),
        ) {
            Ok(failed) if failed.is_empty() => {
                let mut c = check(
                    true,
                    format!(
                        "{} modules require with the environment's paths alone",
                        modules.len()
                    ),
                );
                c.insert("modules".into(), modules.len().into());
                c
            }
            Ok(failed) => {
                let mut c = check(
                    false,
                    format!("{} of {} modules fail to load", failed.len(), modules.len()),
                );
                c.insert(
                    "failed".into(),
                    failed
                        .into_iter()
                        .map(|(m, e)| json!({ "module": m, "error": e }))
                        .collect::<Vec<_>>()
                        .into(),
                );
                c
            }
            Err(e) => check(false, e),
        },
    };
    checks.insert("modules".into(), mc.into());
    // drift
    let dc = match &lock {
        None => {
            let mut c = check(true, "no lockfile to compare with");
            c.insert("lockfile".into(), Value::Null);
            c
        }
        Some(l) => {
            let (missing, extra, changed) = lockfile::drift(env, l)?;
            let ok = missing.is_empty() && extra.is_empty() && changed.is_empty();
            let mut c = check(
                ok,
                if ok {
                    "the tree matches the lockfile".to_string()
                } else {
                    "the tree differs from the lockfile".to_string()
                },
            );
            c.insert("missing".into(), missing.into());
            c.insert("extra".into(), extra.into());
            c.insert("changed".into(), changed.into());
            c
        }
    };
    checks.insert("drift".into(), dc.into());
    let ok = checks.values().all(|c| c["ok"] == true);
    Ok(json!({ "ok": ok, "env": env.root.display().to_string(), "checks": checks }))
}
