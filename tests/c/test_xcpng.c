/*
 * XAPI sessions and xcpng VMs through the C API, against the fake XAPI that
 * tests/rig/fake_xapi.py starts (BIOXEN_TEST_XAPI_SESSION: a session's config on it;
 * BIOXEN_TEST_XCPNG_OPTIONS: an xcpng VM's options). A session: calls, typed errors,
 * info, bad input. A deploy with a progress callback that sees every step, Lua on the
 * guest, then freeing it leaves no tagged object on the pool; cancelling from the callback
 * tears the deploy down; sweep. Without the fake's options the test fails: it is never
 * skipped.
 */
#include "check.h"

static const char *env_json(const char *name)
{
    const char *o = getenv(name);
    return o != NULL && o[0] == '{' ? o : NULL;
}

/* The JSON result of a call that must succeed (the caller frees it). */
static bioxen_vm_bytes call_ok(uint64_t s, const char *method, const char *params)
{
    bioxen_vm_bytes out = {0};
    CHECK_OK(bioxen_vm_xapi_call(s, method, params, &out, NULL));
    return out;
}

/* Whether any VM or VDI on the pool still carries a deploy tag. */
static int tagged_left(uint64_t s)
{
    int left = 0;
    const char *classes[] = {"VM.get_all_records", "VDI.get_all_records", "VBD.get_all_records",
                             "VIF.get_all_records"};
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        bioxen_vm_bytes all = call_ok(s, classes[i], NULL);
        if (all.data != NULL && strstr(all.data, "bioxen_vm:deploy_id") != NULL) {
            left = 1;
        }
        bioxen_vm_bytes_free(&all);
    }
    return left;
}

static void test_session(const char *cfg)
{
    uint64_t s = 0;
    bioxen_vm_bytes out = {0}, err = {0};

    CHECK_OK(bioxen_vm_xapi_open(cfg, &s));
    out = call_ok(s, "VM.get_all_records", "[]");
    CHECK_CONTAINS(out.data, "\"is_a_template\":true");
    CHECK_CONTAINS(out.data, "\"HVM_shadow_multiplier\":\"Infinity\"");
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_xapi_call(s, "VM.get_record", "[\"OpaqueRef:nope\"]", &out, &err),
                BIOXEN_VM_STATUS_VM_MANAGER_ERROR, "HANDLE_INVALID");
    CHECK_CONTAINS(err.data, "{\"code\":\"HANDLE_INVALID\",\"params\":[\"VM\",\"OpaqueRef:nope\"]}");
    bioxen_vm_bytes_free(&err);
    CHECK(out.len == 0);
    CHECK_ERROR(bioxen_vm_xapi_call(s, "VM.get_all", "{\"a\": 1}", &out, NULL),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "array");
    CHECK_ERROR(bioxen_vm_xapi_call(s, NULL, NULL, &out, NULL), BIOXEN_VM_STATUS_NULL_POINTER,
                "method");
    CHECK_ERROR(bioxen_vm_xapi_call(s, "VM.get_all", NULL, NULL, NULL),
                BIOXEN_VM_STATUS_NULL_POINTER, "out_result");
    CHECK_ERROR(bioxen_vm_xapi_call(0, "VM.get_all", NULL, &out, NULL),
                BIOXEN_VM_STATUS_INVALID_HANDLE, "XAPI session");
    CHECK_OK(bioxen_vm_xapi_info(s, &out));
    CHECK_CONTAINS(out.data, "\"protocol\":\"json-rpc\"");
    CHECK_CONTAINS(out.data, "\"open\":true");
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_xapi_close(s));
    CHECK_ERROR(bioxen_vm_xapi_close(s), BIOXEN_VM_STATUS_INVALID_HANDLE, "XAPI session");
    CHECK_OK(bioxen_vm_xapi_close(0));
    CHECK_ERROR(bioxen_vm_xapi_open("{\"url\": \"h\"}", &s), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "username");
    CHECK_ERROR(bioxen_vm_xapi_open(NULL, &s), BIOXEN_VM_STATUS_NULL_POINTER, "config_json");
    CHECK_ERROR(bioxen_vm_xapi_open(cfg, NULL), BIOXEN_VM_STATUS_NULL_POINTER, "out_session");
}

struct progress {
    int starts;
    int dones;
    int saw_agent;
    const char *cancel_at; /* a step whose start cancels the deploy, or NULL */
};

static int32_t on_progress(const char *event_json, void *user_data)
{
    struct progress *p = user_data;
    if (strstr(event_json, "\"state\":\"start\"") != NULL) {
        p->starts++;
        if (p->cancel_at != NULL && strstr(event_json, p->cancel_at) != NULL) {
            return 1;
        }
    }
    if (strstr(event_json, "\"state\":\"done\"") != NULL) {
        p->dones++;
        if (strstr(event_json, "\"step\":\"start the agent\"") != NULL) {
            p->saw_agent = 1;
        }
    }
    return 0;
}

static void test_deploy(const char *cfg, const char *vm_options)
{
    uint64_t s = 0, vm = 0;
    struct progress p = {0, 0, 0, NULL};
    bioxen_vm_result r = empty_result();
    bioxen_vm_bytes info = {0}, report = {0};

    CHECK_OK(bioxen_vm_xapi_open(cfg, &s));
    CHECK_OK(bioxen_vm_xcpng_new(vm_options, on_progress, &p, &vm));
    CHECK(p.starts == 11 && p.dones == 11 && p.saw_agent);
    CHECK_OK(bioxen_vm_execute(vm, "return 6 * 7", 12, NULL, 0, &r));
    CHECK(r.success);
    CHECK_TEXT(r.values_json, "[42]");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_info(vm, &info));
    CHECK_CONTAINS(info.data, "\"vm_type\":\"xcpng\"");
    CHECK_CONTAINS(info.data, "\"vm_ip\":\"127.0.0.");
    CHECK_CONTAINS(info.data, "\"deploy_timings\":{");
    bioxen_vm_bytes_free(&info);
    CHECK(tagged_left(s));
    CHECK_OK(bioxen_vm_free(vm));
    CHECK(!tagged_left(s));

    /* Cancelled from the callback once the VM exists: torn down. */
    struct progress c = {0, 0, 0, "\"step\":\"wait for an IP\""};
    CHECK_ERROR(bioxen_vm_xcpng_new(vm_options, on_progress, &c, &vm), BIOXEN_VM_STATUS_CANCELLED,
                "wait for an IP");
    CHECK(!tagged_left(s));
    /* Without a callback, bioxen_vm_new deploys too. */
    CHECK_OK(bioxen_vm_new(vm_options, &vm));
    CHECK_OK(bioxen_vm_free(vm));
    CHECK(!tagged_left(s));
    CHECK_ERROR(bioxen_vm_xcpng_new("{\"vm_type\": \"ssh\"}", NULL, NULL, &vm),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "xcpng");
    CHECK_ERROR(bioxen_vm_xcpng_new(NULL, NULL, NULL, &vm), BIOXEN_VM_STATUS_NULL_POINTER,
                "options_json");

    /* A manager's interactive xcpng VM: one state for the session and executions. */
    uint64_t m = 0;
    bioxen_vm_bytes out = {0};
    struct progress mp = {0, 0, 0, NULL};
    CHECK_OK(bioxen_vm_manager_new(NULL, &m));
    CHECK_OK(bioxen_vm_manager_create_xcpng_vm(m, "x1", vm_options, true, on_progress, &mp));
    CHECK(mp.saw_agent);
    CHECK_OK(bioxen_vm_manager_execute_interactive_command(m, "x1", "y = 21", 6, 5000, &out));
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_manager_execute_interactive_command(m, "x1", "print(y * 2)", 12, 5000, &out));
    CHECK_TEXT(out, "42\n");
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_manager_create_xcpng_vm(m, "x1", vm_options, false, NULL, NULL),
                BIOXEN_VM_STATUS_VM_ALREADY_EXISTS, "x1");
    CHECK_OK(bioxen_vm_manager_free(m));
    CHECK(!tagged_left(s));

    CHECK_OK(bioxen_vm_xcpng_sweep(s, false, &report));
    CHECK_CONTAINS(report.data, "\"vms\":[]");
    bioxen_vm_bytes_free(&report);
    CHECK_ERROR(bioxen_vm_xcpng_sweep(0, false, &report), BIOXEN_VM_STATUS_INVALID_HANDLE,
                "XAPI session");
    CHECK_OK(bioxen_vm_xapi_close(s));
}

int main(void)
{
    const char *cfg = env_json("BIOXEN_TEST_XAPI_SESSION");
    const char *vm = env_json("BIOXEN_TEST_XCPNG_OPTIONS");
    /* Run under tests/rig/fake_xapi.py run -- (make test-c does). */
    CHECK(cfg != NULL && vm != NULL);
    if (cfg != NULL && vm != NULL) {
        test_session(cfg);
        test_deploy(cfg, vm);
    }
    return check_summary();
}
