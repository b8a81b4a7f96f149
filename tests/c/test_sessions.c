/*
 * Interactive sessions over the C ABI: the REPL semantics (values of bare expressions,
 * multi-line chunks, errors on stderr), reading merged and per stream, the output
 * callback, attach/detach and their errors, interrupt and terminate while evaluating,
 * clone, list, NULL pointers, and sessions fed from several threads at once.
 */
#include "check.h"

#include <stdbool.h>

/* Reads the session's output (waiting up to timeout_ms) into buf; returns has_output. */
static bool read_into(uint64_t m, const char *id, uint64_t timeout_ms, int32_t flags, char *buf,
                      size_t size)
{
    bioxen_vm_bytes out = {NULL, 0};
    bool has = false;
    CHECK_OK(bioxen_vm_manager_read_output(m, id, timeout_ms, flags, &out, &has));
    buf[0] = '\0';
    if (out.len > 0 && out.len < size) {
        memcpy(buf, out.data, out.len + 1);
    }
    bioxen_vm_bytes_free(&out);
    return has;
}

static void command(uint64_t m, const char *id, const char *cmd, const char *expected)
{
    bioxen_vm_bytes out = {NULL, 0};
    CHECK_OK(bioxen_vm_manager_execute_interactive_command(m, id, cmd, strlen(cmd), 5000, &out));
    CHECK_TEXT(out, expected);
    bioxen_vm_bytes_free(&out);
}

static void test_repl(uint64_t m)
{
    char buf[256];

    CHECK_OK(bioxen_vm_manager_create_interactive_vm(m, "repl", NULL, true));
    CHECK_OK(bioxen_vm_manager_send_input(m, "repl", LIT("x = 42\n")));
    CHECK_OK(bioxen_vm_manager_send_input(m, "repl", LIT("print('Value:', x)\n")));
    CHECK(read_into(m, "repl", 5000, 0, buf, sizeof buf));
    CHECK(strcmp(buf, "Value:\t42\n") == 0);
    CHECK(!read_into(m, "repl", 0, 0, buf, sizeof buf));

    command(m, "repl", "x + 1", "43\n");
    command(m, "repl", "=x", "42\n");
    command(m, "repl", "local unused = 1", "");

    /* A function typed line by line. */
    CHECK_OK(bioxen_vm_manager_send_input(m, "repl", LIT("function sq(n)\n")));
    CHECK_OK(bioxen_vm_manager_send_input(m, "repl", LIT("  return n * n\n")));
    CHECK_OK(bioxen_vm_manager_send_input(m, "repl", LIT("end\n")));
    command(m, "repl", "sq(9)", "81\n");

    /* Errors: on stderr, and the session goes on. */
    CHECK_OK(bioxen_vm_manager_send_input(m, "repl", LIT("error('boom')\nprint('still here')\n")));
    CHECK(read_into(m, "repl", 5000, BIOXEN_VM_READ_STDERR, buf, sizeof buf));
    CHECK_CONTAINS(buf, "stdin:1: boom");
    CHECK(read_into(m, "repl", 0, BIOXEN_VM_READ_STDOUT, buf, sizeof buf));
    CHECK(strcmp(buf, "still here\n") == 0);

    /* Output with NUL and invalid UTF-8 bytes comes back exactly. */
    {
        bioxen_vm_bytes out = {NULL, 0};
        CHECK_OK(bioxen_vm_manager_execute_interactive_command(
            m, "repl", LIT("do io.write('a\\0b\\255') end"), 5000, &out));
        CHECK_BYTES(out, "a\0b\xff", 4);
        bioxen_vm_bytes_free(&out);
    }
}

static size_t seen_bytes;
static int seen_streams;

static void on_output(const char *vm_id, int32_t stream, const char *data, size_t len,
                      void *user_data)
{
    (void)data;
    if (strcmp(vm_id, "cb") == 0 && user_data == &seen_bytes) {
        seen_bytes += len;
        seen_streams |= stream;
    }
}

static void test_attach_and_callback(uint64_t m)
{
    bool attached = true;

    CHECK_OK(bioxen_vm_manager_create_interactive_vm(m, "cb", "{\"sandbox\": \"default\"}", false));
    CHECK_OK(bioxen_vm_manager_is_attached(m, "cb", &attached));
    CHECK(!attached);
    CHECK_ERROR(bioxen_vm_manager_detach(m, "cb"), BIOXEN_VM_STATUS_DETACH_ERROR, "not attached");
    CHECK_OK(bioxen_vm_manager_attach(m, "cb", on_output, &seen_bytes));
    CHECK_ERROR(bioxen_vm_manager_attach(m, "cb", NULL, NULL), BIOXEN_VM_STATUS_ATTACH_ERROR,
                "already attached");
    command(m, "cb", "print('12345')", "12345\n");
    {
        bioxen_vm_bytes out = {NULL, 0};
        CHECK_OK(bioxen_vm_manager_execute_interactive_command(m, "cb", LIT("error('x')"), 5000, &out));
        CHECK_CONTAINS(out.data, "stdin:1: x\nstack traceback:");
        bioxen_vm_bytes_free(&out);
    }
    CHECK(seen_bytes > 6);
    CHECK(seen_streams == (BIOXEN_VM_STREAM_STDOUT | BIOXEN_VM_STREAM_STDERR));
    CHECK_OK(bioxen_vm_manager_detach(m, "cb"));
    seen_bytes = 0;
    command(m, "cb", "print('not seen')", "not seen\n");
    CHECK(seen_bytes == 0);

    CHECK_ERROR(bioxen_vm_manager_attach(m, "missing", NULL, NULL),
                BIOXEN_VM_STATUS_SESSION_NOT_FOUND, "VM 'missing' not found");
    CHECK_OK(bioxen_vm_manager_create_vm(m, "plain", NULL));
    CHECK_ERROR(bioxen_vm_manager_send_input(m, "plain", LIT("1")),
                BIOXEN_VM_STATUS_SESSION_NOT_FOUND, "No interactive session for VM 'plain'");
}

static void test_interrupt_terminate_clone_list(uint64_t m)
{
    char buf[256];
    bool was = false;
    bioxen_vm_bytes list = {NULL, 0};

    CHECK_OK(bioxen_vm_manager_create_interactive_vm(m, "loop", NULL, true));
    command(m, "loop", "kept = 'yes'", "");
    CHECK_OK(bioxen_vm_manager_send_input(m, "loop", LIT("while true do end\nprint('dropped')\n")));
    sleep_ms(50);
    CHECK_OK(bioxen_vm_manager_interrupt_session(m, "loop", &was));
    CHECK(was);
    CHECK(read_into(m, "loop", 5000, 0, buf, sizeof buf));
    CHECK(strcmp(buf, "Lua execution interrupted\n") == 0);
    command(m, "loop", "kept", "yes\n");

    CHECK_OK(bioxen_vm_manager_send_input(m, "loop", LIT("while true do end\n")));
    sleep_ms(20);
    CHECK_OK(bioxen_vm_manager_terminate_session(m, "loop"));
    CHECK_ERROR(bioxen_vm_manager_terminate_session(m, "loop"), BIOXEN_VM_STATUS_SESSION_NOT_FOUND,
                "No interactive session for VM 'loop'");

    CHECK_OK(bioxen_vm_manager_clone_session(m, "repl", "repl2"));
    command(m, "repl2", "x", "nil\n");
    CHECK_ERROR(bioxen_vm_manager_clone_session(m, "ghost", "g2"), BIOXEN_VM_STATUS_SESSION_NOT_FOUND,
                "Source VM 'ghost' not found");

    CHECK_OK(bioxen_vm_manager_list_sessions(m, &list));
    CHECK_CONTAINS(list.data, "\"repl\":{");
    CHECK_CONTAINS(list.data, "\"executions\":");
    bioxen_vm_bytes_free(&list);
}

static void test_null_pointers(uint64_t m)
{
    bioxen_vm_bytes out = {NULL, 0};
    bool b = false;

    CHECK_STATUS(bioxen_vm_manager_create_interactive_vm(m, NULL, NULL, true),
                 BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_attach(m, NULL, NULL, NULL), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_detach(m, NULL), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_is_attached(m, "repl", NULL), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_send_input(m, "repl", NULL, 3), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_read_output(m, "repl", 0, 0, NULL, &b),
                 BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_read_output(m, "repl", 0, 0, &out, NULL),
                 BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_read_output(m, "repl", 0, 64, &out, &b),
                 BIOXEN_VM_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bioxen_vm_manager_execute_interactive_command(m, "repl", LIT("1"), 0, NULL),
                 BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_interrupt_session(m, NULL, NULL), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_terminate_session(m, NULL), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_clone_session(m, "repl", NULL), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_list_sessions(m, NULL), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_send_input(m, "\xff", LIT("1")), BIOXEN_VM_STATUS_INVALID_UTF8);
    CHECK_STATUS(bioxen_vm_manager_send_input(0, "repl", LIT("1")), BIOXEN_VM_STATUS_INVALID_HANDLE);
    /* Nothing was lost. */
    command(m, "repl", "x", "42\n");
}

struct feeder {
    uint64_t m;
    char id[16];
    int sum_ok;
};

static void *feed(void *arg)
{
    struct feeder *f = arg;
    char line[64];
    int i;
    char buf[64];
    for (i = 1; i <= 50; i++) {
        snprintf(line, sizeof line, "n = (n or 0) + %d\n", i);
        if (bioxen_vm_manager_send_input(f->m, f->id, line, strlen(line)) != BIOXEN_VM_STATUS_OK) {
            return NULL;
        }
    }
    if (bioxen_vm_manager_send_input(f->m, f->id, LIT("n\n")) == BIOXEN_VM_STATUS_OK &&
        read_into(f->m, f->id, 10000, 0, buf, sizeof buf)) {
        f->sum_ok = strcmp(buf, "1275\n") == 0;
    }
    return NULL;
}

static void test_threads(uint64_t m)
{
    struct feeder f[8];
    pthread_t t[8];
    int i;
    for (i = 0; i < 8; i++) {
        f[i].m = m;
        f[i].sum_ok = 0;
        snprintf(f[i].id, sizeof f[i].id, "t%d", i);
        CHECK_OK(bioxen_vm_manager_create_interactive_vm(m, f[i].id, NULL, true));
        CHECK(pthread_create(&t[i], NULL, feed, &f[i]) == 0);
    }
    for (i = 0; i < 8; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(f[i].sum_ok);
    }
}

int main(void)
{
    uint64_t m = 0;
    CHECK_OK(bioxen_vm_manager_new("{\"max_workers\": 3}", &m));
    test_repl(m);
    test_attach_and_callback(m);
    test_interrupt_terminate_clone_list(m);
    test_null_pointers(m);
    test_threads(m);
    CHECK_OK(bioxen_vm_manager_free(m));
    return check_summary();
}
