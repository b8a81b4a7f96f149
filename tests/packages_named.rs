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
    ok("remove_env", &json!({ "env": "beta" }));
    assert!(!data.join("envs/beta").exists());
    fails(
        "create",
        &json!({ "name": "../escape" }),
        "INVALID_ARGUMENT",
    );
    fails("open", &json!({ "env": "no such" }), "INVALID_ARGUMENT");
    std::env::remove_var("BIOXEN_VM_DATA_DIR");
}
