/*
 * Interactive sessions: a Lua REPL without a terminal.
 *
 * Creates an interactive VM, types a few lines into it (a multi-line function among
 * them), reads the clean output back (no echo, no prompt), streams output through a
 * callback, shows how errors read back, and runs the same command on a small cluster of
 * sessions. Exits non-zero if anything behaves unexpectedly.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bioxen_vm.h"

static int failures = 0;

#define EXPECT(cond, what)                                                                   \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "session: %s failed (%s)\n", what,                             \
                    bioxen_vm_last_error_message() ? bioxen_vm_last_error_message() : "");  \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* Sends a line (with its newline) to the session. */
static void type_line(uint64_t m, const char *id, const char *line)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s\n", line);
    EXPECT(n > 0 && (size_t)n < sizeof buf, "formatting a line");
    EXPECT(bioxen_vm_manager_send_input(m, id, buf, (size_t)n) == BIOXEN_VM_STATUS_OK,
           "send_input");
}

/* Waits (up to 5 s) for the session to be idle and prints what it wrote. */
static void show_output(uint64_t m, const char *id, const char *expected)
{
    bioxen_vm_bytes out = {NULL, 0};
    bool has = false;
    EXPECT(bioxen_vm_manager_read_output(m, id, 5000, 0, &out, &has) == BIOXEN_VM_STATUS_OK,
           "read_output");
    printf("[%s] %s", id, has ? out.data : "(no output)\n");
    EXPECT(has && strcmp(out.data, expected) == 0, "the expected output");
    bioxen_vm_bytes_free(&out);
}

/* Receives output as it is produced (data is not NUL-terminated). */
static void on_output(const char *vm_id, int32_t stream, const char *data, size_t len,
                      void *user_data)
{
    size_t *seen = user_data;
    *seen += len;
    printf("  callback: %s %s %.*s", vm_id, stream == BIOXEN_VM_STREAM_STDOUT ? "stdout" : "stderr",
           (int)len, data);
}

int main(void)
{
    uint64_t m = 0;
    size_t streamed = 0;
    bioxen_vm_bytes out = {NULL, 0};

    EXPECT(bioxen_vm_manager_new(NULL, &m) == BIOXEN_VM_STATUS_OK, "manager_new");
    EXPECT(bioxen_vm_manager_create_interactive_vm(m, "repl", NULL, true) == BIOXEN_VM_STATUS_OK,
           "create_interactive_vm");

    /* Statements print nothing; print() and bare expressions do. */
    type_line(m, "repl", "x = 42");
    type_line(m, "repl", "print('Value:', x)");
    show_output(m, "repl", "Value:\t42\n");
    type_line(m, "repl", "x * 2");
    show_output(m, "repl", "84\n");

    /* A function typed line by line: nothing runs until the chunk is complete. */
    type_line(m, "repl", "function greet(name)");
    type_line(m, "repl", "  return 'hello, ' .. name");
    type_line(m, "repl", "end");
    type_line(m, "repl", "greet('lua')");
    show_output(m, "repl", "hello, lua\n");

    /* An error reads back as the REPL shows it, and the session goes on. */
    EXPECT(bioxen_vm_manager_execute_interactive_command(m, "repl", "error('oops')", 13, 5000,
                                                         &out) == BIOXEN_VM_STATUS_OK,
           "execute_interactive_command");
    printf("[repl] error text starts: %.14s\n", out.data);
    EXPECT(strncmp(out.data, "stdin:1: oops\n", 14) == 0, "the error text");
    bioxen_vm_bytes_free(&out);

    /* Streaming: detach, then attach again with a callback. */
    EXPECT(bioxen_vm_manager_detach(m, "repl") == BIOXEN_VM_STATUS_OK, "detach");
    EXPECT(bioxen_vm_manager_attach(m, "repl", on_output, &streamed) == BIOXEN_VM_STATUS_OK,
           "attach with a callback");
    type_line(m, "repl", "for i = 1, 3 do print('tick', i) end");
    show_output(m, "repl", "tick\t1\ntick\t2\ntick\t3\n");
    EXPECT(streamed == strlen("tick\t1\ntick\t2\ntick\t3\n"), "the streamed bytes");

    /* The same command on every attached session of a small cluster. */
    EXPECT(bioxen_vm_manager_create_interactive_cluster(m, "node", 2, NULL, &out) ==
               BIOXEN_VM_STATUS_OK,
           "create_interactive_cluster");
    bioxen_vm_bytes_free(&out);
    EXPECT(bioxen_vm_manager_attach(m, "node_000", NULL, NULL) == BIOXEN_VM_STATUS_OK, "attach");
    EXPECT(bioxen_vm_manager_attach(m, "node_001", NULL, NULL) == BIOXEN_VM_STATUS_OK, "attach");
    EXPECT(bioxen_vm_manager_broadcast_to_sessions(m, "node_*", "_VERSION", 8, 5000, &out) ==
               BIOXEN_VM_STATUS_OK,
           "broadcast_to_sessions");
    printf("broadcast: %s\n", out.data);
    EXPECT(strcmp(out.data, "{\"node_000\":\"Lua 5.4\\n\",\"node_001\":\"Lua 5.4\\n\"}") == 0,
           "the broadcast outputs");
    bioxen_vm_bytes_free(&out);

    EXPECT(bioxen_vm_manager_list_sessions(m, &out) == BIOXEN_VM_STATUS_OK, "list_sessions");
    printf("sessions: %s\n", out.data);
    bioxen_vm_bytes_free(&out);

    EXPECT(bioxen_vm_manager_free(m) == BIOXEN_VM_STATUS_OK, "manager_free");
    if (failures == 0) {
        printf("session: every step behaved as expected\n");
    }
    return failures == 0 ? 0 : 1;
}
