//! Named environments under the data directory ($BIOXEN_VM_DATA_DIR): created only when an
//! environment is created, listed, opened and removed by name. One test: the variable is
//! set once for this binary.

mod common;

use common::rocks::*;
use serde_json::json;

#[test]
fn named_environments_live_under_the_data_directory() {
    let s = Scratch::new("named");
    let data = s.dir.join("data");
    std::env::set_var("BIOXEN_VM_DATA_DIR", &data);
    assert_eq!(ok("environments", &json!({})), json!([]));
    assert!(!data.exists(), "listing creates nothing");
    fails("open", &json!({ "env": "alpha" }), "ENVIRONMENT_ERROR");
    assert!(!data.exists(), "a failed open creates nothing");
    let d = ok(
        "create",
        &json!({ "name": "alpha", "servers": [main_server()] }),
    );
    assert_eq!(d["path"], data.join("envs/alpha").display().to_string());
    assert_eq!(d["cache"], data.join("cache").display().to_string());
    ok("create", &json!({ "env": "beta" }));
    let l = ok("environments", &json!({}));
    let names: Vec<&str> = l
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    ok("install", &json!({ "env": "alpha", "rock": "bxt-base" }));
    assert!(
        data.join("cache/objects").is_dir(),
        "the shared cache is in the data directory"
    );
    assert_eq!(
        ok("list", &json!({ "env": "alpha" }))[0]["name"],
        "bxt-base"
    );
    // BIOXEN_VM_ENV names the environment of VMs created without an `env` option.
    std::env::set_var("BIOXEN_VM_ENV", "alpha");
    let vm = common::TestVm::new("{}");
    assert_eq!(vm.info()["env"], "alpha");
    assert_eq!(
        vm.exec("return require('bxt_base').version").values,
        json!(["2.0"])
    );
    let process = common::TestVm::new(r#"{"vm_type": "process"}"#);
    assert_eq!(
        process.exec("return require('bxt_base').version").values,
        json!(["2.0"])
    );
    let explicit = common::TestVm::new(&json!({ "env": "beta" }).to_string());
    assert!(!explicit.exec("return require('bxt_base')").success);
    std::env::remove_var("BIOXEN_VM_ENV");
    let plain = common::TestVm::new("{}");
    assert_eq!(plain.info()["env"], serde_json::Value::Null);
    assert_eq!(plain.exec("return require").values, json!([null]));
    ok("remove_env", &json!({ "env": "beta" }));
    assert!(!data.join("envs/beta").exists());
    fails(
        "create",
        &json!({ "name": "../escape" }),
        "INVALID_ARGUMENT",
    );
    fails("open", &json!({ "env": "no such" }), "INVALID_ARGUMENT");
}
