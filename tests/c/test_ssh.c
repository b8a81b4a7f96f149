/*
 * ssh VMs through the C API, against the private sshd that tests/rig/sshd_rig.py starts
 * (BIOXEN_TEST_SSH_OPTIONS holds an ssh VM's JSON options for it): executions with
 * values and arguments, execute_into, a manager session, an async job, a timeout and an
 * interrupt (the state is lost and said so), a second VM on the shared connection, and bad
 * options. Without the rig's options the test fails: it is never skipped.
 */
#include "check.h"

#include <unistd.h>

static const char *options(void)
{
    const char *o = getenv("BIOXEN_TEST_SSH_OPTIONS");
    return o != NULL && o[0] == '{' ? o : NULL;
}

/* Runs a NUL-terminated chunk with JSON arguments and a per-call limit. */
static int32_t exec_text(uint64_t vm, const char *code, const char *args, uint64_t timeout_ms,
                         bioxen_vm_result *out)
{
    return bioxen_vm_execute(vm, code, strlen(code), args, timeout_ms, out);
}

static void test_execute(const char *o)
{
    uint64_t vm = 0, vm2 = 0;
    bioxen_vm_result r = empty_result();
    bioxen_vm_bytes info = {0};

    CHECK_OK(bioxen_vm_new(o, &vm));
    CHECK_OK(exec_text(vm, "x = 40 return x + 2, 'two'", NULL, 0, &r));
    CHECK(r.success);
    CHECK_TEXT(r.values_json, "[42,\"two\"]");
    CHECK_TEXT(r.stdout_text, "42\ttwo\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(exec_text(vm, "return x, ...", "[1, {\"k\": [true]}]", 0, &r));
    CHECK_TEXT(r.values_json, "[40,1,{\"k\":[true]}]");
    bioxen_vm_result_free(&r);
    CHECK_OK(exec_text(vm, "error('boom')", NULL, 0, &r));
    CHECK(!r.success);
    CHECK(r.return_code == 1);
    CHECK_CONTAINS(r.error_message.data, "boom");
    bioxen_vm_result_free(&r);

    bioxen_vm_result_buffer *buf = NULL;
    const bioxen_vm_result *view = NULL;
    CHECK_OK(bioxen_vm_result_buffer_new(&buf));
    for (int i = 0; i < 50; i++) {
        CHECK_OK(bioxen_vm_execute_into(vm, "return x", 8, NULL, 0, buf, &view));
    }
    CHECK(view != NULL && view->success);
    CHECK_TEXT(view->values_json, "[40]");
    bioxen_vm_result_buffer_free(buf);

    CHECK_OK(bioxen_vm_info(vm, &info));
    CHECK_CONTAINS(info.data, "\"vm_type\":\"ssh\"");
    CHECK_CONTAINS(info.data, "\"host_key_fingerprint\":\"SHA256:");
    CHECK_CONTAINS(info.data, "\"lua_version\":\"Lua 5.4\"");
    bioxen_vm_bytes_free(&info);

    /* A second VM shares the connection. */
    CHECK_OK(bioxen_vm_new(o, &vm2));
    CHECK_OK(exec_text(vm2, "return x", NULL, 0, &r));
    CHECK_TEXT(r.values_json, "[null]");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm2));

    /* A timeout: the interpreter is restarted, which the status says. */
    CHECK_ERROR(exec_text(vm, "while true do end", NULL, 500, &r), BIOXEN_VM_STATUS_TIMEOUT,
                "the ssh VM was restarted and its state was lost");
    CHECK_OK(exec_text(vm, "return x", NULL, 0, &r));
    CHECK_TEXT(r.values_json, "[null]");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));
}

struct interrupter {
    uint64_t vm;
};

static void *interrupt_later(void *arg)
{
    struct interrupter *it = arg;
    sleep_ms(300);
    CHECK_OK(bioxen_vm_interrupt(it->vm, NULL));
    return NULL;
}

static void test_interrupt_and_job(const char *o)
{
    uint64_t vm = 0, job = 0;
    pthread_t t;
    struct interrupter it;
    bioxen_vm_result r = empty_result();

    CHECK_OK(bioxen_vm_new(o, &vm));
    it.vm = vm;
    CHECK(pthread_create(&t, NULL, interrupt_later, &it) == 0);
    CHECK_STATUS(exec_text(vm, "while true do end", NULL, 0, &r), BIOXEN_VM_STATUS_INTERRUPTED);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_OK(bioxen_vm_execute_async(vm, "return 6 * 7", 12, NULL, 0, &job));
    CHECK_OK(bioxen_vm_job_wait(job, 10000, &r));
    CHECK_TEXT(r.values_json, "[42]");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_job_free(job));
    CHECK_OK(bioxen_vm_free(vm));
}

static void test_session(const char *o)
{
    uint64_t m = 0;
    bioxen_vm_bytes out = {0};

    CHECK_OK(bioxen_vm_manager_new(NULL, &m));
    CHECK_OK(bioxen_vm_manager_create_interactive_vm(m, "remote", o, false));
    CHECK_OK(bioxen_vm_manager_send_input(m, "remote", "y = 5\n", 6));
    CHECK_OK(bioxen_vm_manager_send_input(m, "remote", "print(y * 2)\n", 13));
    bool has = false;
    CHECK_OK(bioxen_vm_manager_read_output(m, "remote", 10000, 0, &out, &has));
    CHECK(has);
    CHECK_TEXT(out, "10\n");
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_manager_free(m));
}

static void test_bad_options(void)
{
    uint64_t vm = 0;
    char bad[4096];
    const char *port = getenv("BIOXEN_TEST_SSH_PORT");
    const char *known = getenv("BIOXEN_TEST_SSH_KNOWN_HOSTS");

    CHECK_ERROR(bioxen_vm_new("{\"vm_type\": \"ssh\"}", &vm), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "host");
    CHECK_ERROR(bioxen_vm_new("{\"vm_type\": \"ssh\", \"host\": \"h\", \"username\": \"u\", "
                              "\"no_such_key\": 1}",
                              &vm),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "no_such_key");
    CHECK(port != NULL && known != NULL);
    if (port == NULL || known == NULL) {
        return;
    }
    /* A wrong password: refused, naming what was tried, never the password. */
    snprintf(bad, sizeof bad,
             "{\"vm_type\": \"ssh\", \"host\": \"127.0.0.1\", \"port\": %s, \"username\": "
             "\"bxuser\", \"known_hosts\": \"%s\", \"use_agent\": false, \"password\": "
             "\"s3cr3t-never-shown\", \"lua_executable\": \"lua5.4\"}",
             port, known);
    CHECK_ERROR(bioxen_vm_new(bad, &vm), BIOXEN_VM_STATUS_VM_CONNECTION_ERROR,
                "password (refused)");
    CHECK(strstr(bioxen_vm_last_error_message(), "s3cr3t") == NULL);
}

int main(void)
{
    const char *o = options();
    CHECK(o != NULL);
    if (o != NULL) {
        test_execute(o);
        test_interrupt_and_job(o);
        test_session(o);
        test_bad_options();
    }
    return check_summary();
}
