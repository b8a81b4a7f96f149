/*
 * bioxen_vm_execute_into with a reused bioxen_vm_result_buffer: results alike those of
 * bioxen_vm_execute, views that follow the buffer from call to call (growing, shrinking,
 * errors, NUL bytes), a failed call leaving an empty result, the manager variant, bad
 * input, and a buffer used by two threads at once.
 */
#include "check.h"

/* The same code through bioxen_vm_execute: both results must agree field by field. */
static void check_same_as_execute(uint64_t vm, bioxen_vm_result_buffer *buf, const char *code)
{
    bioxen_vm_result owned = empty_result();
    const bioxen_vm_result *view = NULL;
    CHECK_OK(bioxen_vm_execute(vm, code, strlen(code), NULL, 0, &owned));
    CHECK_OK(bioxen_vm_execute_into(vm, code, strlen(code), NULL, 0, buf, &view));
    CHECK(view != NULL);
    if (view == NULL) {
        bioxen_vm_result_free(&owned);
        return;
    }
    CHECK(view->success == owned.success);
    CHECK(view->return_code == owned.return_code);
    CHECK(view->output_dropped == owned.output_dropped);
    CHECK_BYTES(view->stdout_text, owned.stdout_text.data, owned.stdout_text.len);
    CHECK_BYTES(view->values_json, owned.values_json.data, owned.values_json.len);
    /* Tracebacks name the same lines; the error text is the same. */
    CHECK_BYTES(view->error_message, owned.error_message.data, owned.error_message.len);
    CHECK_BYTES(view->stderr_text, owned.stderr_text.data, owned.stderr_text.len);
    /* Every view is NUL-terminated, empty ones included. */
    CHECK(view->stdout_text.data != NULL && view->stdout_text.data[view->stdout_text.len] == 0);
    CHECK(view->stderr_text.data != NULL && view->stderr_text.data[view->stderr_text.len] == 0);
    CHECK(view->values_json.data != NULL && view->values_json.data[view->values_json.len] == 0);
    CHECK(view->error_message.data != NULL &&
          view->error_message.data[view->error_message.len] == 0);
    bioxen_vm_result_free(&owned);
}

typedef struct {
    uint64_t vm;
    bioxen_vm_result_buffer *buf;
    int32_t status;
} racer;

static void *race_loop(void *arg)
{
    racer *r = arg;
    const bioxen_vm_result *view = NULL;
    r->status = bioxen_vm_execute_into(r->vm, LIT("while loop do end"), NULL, 0, r->buf, &view);
    return NULL;
}

int main(void)
{
    uint64_t vm = 0;
    CHECK_OK(bioxen_vm_new(NULL, &vm));
    bioxen_vm_result_buffer *buf = NULL;
    CHECK_OK(bioxen_vm_result_buffer_new(&buf));
    CHECK(buf != NULL);

    /* Many calls on one buffer: the values follow each call. */
    const bioxen_vm_result *view = NULL;
    CHECK_OK(bioxen_vm_execute_into(vm, LIT("n = 0"), NULL, 0, buf, &view));
    CHECK(view != NULL && view->success && view->stdout_text.len == 0);
    int all_right = 1;
    for (int i = 1; i <= 2000; i++) {
        char expect[32];
        snprintf(expect, sizeof expect, "[%d]", i);
        if (bioxen_vm_execute_into(vm, LIT("n = n + 1 return n"), NULL, 0, buf, &view) !=
                BIOXEN_VM_STATUS_OK ||
            view->values_json.len != strlen(expect) ||
            memcmp(view->values_json.data, expect, view->values_json.len) != 0) {
            all_right = 0;
        }
    }
    CHECK(all_right);
    CHECK(view->duration_ns > 0);

    /* Growing, shrinking, output, errors, arguments, NUL bytes: as bioxen_vm_execute. */
    check_same_as_execute(vm, buf, "return string.rep('x', 100000)");
    check_same_as_execute(vm, buf, "return 1");
    check_same_as_execute(vm, buf, "print('a', 1) io.write('b') io.stderr:write('e') return 'x', 2");
    CHECK_OK(bioxen_vm_execute_into(vm, LIT("return {1, 2}, {k = 'v'}"), NULL, 0, buf, &view));
    CHECK_TEXT(view->values_json, "[[1,2],{\"k\":\"v\"}]");
    check_same_as_execute(vm, buf, "error('boom')");
    check_same_as_execute(vm, buf, "return 'a\\0b'");
    check_same_as_execute(vm, buf, "return +");
    check_same_as_execute(vm, buf, "print(string.rep('y', 5000)) return nil, true");
    CHECK_OK(bioxen_vm_execute_into(vm, LIT("return ... + 1"), "[41]", 0, buf, &view));
    CHECK_TEXT(view->values_json, "[42]");
    CHECK_TEXT(view->stdout_text, "42\n");

    /* A status other than OK: the out pointer is left alone, the buffer reads as empty,
     * and the next call works. */
    const bioxen_vm_result *kept = view;
    const bioxen_vm_result *untouched = (const bioxen_vm_result *)&buf;
    view = untouched;
    CHECK_ERROR(bioxen_vm_execute_into(vm, LIT("while true do end"), NULL, 30, buf, &view),
                BIOXEN_VM_STATUS_TIMEOUT, "timed out");
    CHECK(view == untouched);
    CHECK(kept->stdout_text.len == 0 && kept->values_json.len == 0 && !kept->success);
    CHECK_ERROR(bioxen_vm_execute_into(vm, LIT("  "), NULL, 0, buf, &view),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Lua code cannot be empty");
    CHECK_OK(bioxen_vm_execute_into(vm, LIT("return n"), NULL, 0, buf, &view));
    CHECK(view == kept);
    CHECK_TEXT(view->values_json, "[2000]");

    /* Bad input. */
    CHECK_ERROR(bioxen_vm_execute_into(vm, LIT("return 1"), NULL, 0, NULL, &view),
                BIOXEN_VM_STATUS_NULL_POINTER, "buffer");
    CHECK_ERROR(bioxen_vm_execute_into(vm, LIT("return 1"), NULL, 0, buf, NULL),
                BIOXEN_VM_STATUS_NULL_POINTER, "out_result");
    CHECK_ERROR(bioxen_vm_execute_into(vm, NULL, 3, NULL, 0, buf, &view),
                BIOXEN_VM_STATUS_NULL_POINTER, "code");
    CHECK_ERROR(bioxen_vm_execute_into(vm, LIT("return 1"), "{", 0, buf, &view),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "");
    CHECK_ERROR(bioxen_vm_execute_into(vm, LIT("return '\xff'"), "[\"\xff\"]", 0, buf, &view),
                BIOXEN_VM_STATUS_INVALID_UTF8, "args_json");
    CHECK_ERROR(bioxen_vm_execute_into(12345, LIT("return 1"), NULL, 0, buf, &view),
                BIOXEN_VM_STATUS_INVALID_HANDLE, "");
    CHECK_ERROR(bioxen_vm_result_buffer_new(NULL), BIOXEN_VM_STATUS_NULL_POINTER, "out_buffer");
    CHECK_OK(bioxen_vm_result_buffer_free(NULL));

    /* One buffer, two threads: while a call runs on it, another call and a free are
     * refused and change nothing. */
    uint64_t vm2 = 0;
    CHECK_OK(bioxen_vm_new(NULL, &vm2));
    racer looping = {vm, buf, -1};
    pthread_t t;
    bioxen_vm_result set = empty_result();
    CHECK_OK(bioxen_vm_execute(vm, LIT("loop = true"), NULL, 0, &set));
    bioxen_vm_result_free(&set);
    if (pthread_create(&t, NULL, race_loop, &looping) != 0) {
        abort();
    }
    int running = 0;
    for (int i = 0; i < 500 && !running; i++) {
        bioxen_vm_bytes info = {0};
        if (bioxen_vm_info(vm, &info) == BIOXEN_VM_STATUS_OK) {
            running = strstr(info.data, "\"running\":true") != NULL;
            bioxen_vm_bytes_free(&info);
        }
        if (!running) {
            sleep_ms(10);
        }
    }
    CHECK(running);
    const bioxen_vm_result *other = NULL;
    CHECK_ERROR(bioxen_vm_execute_into(vm2, LIT("return 1"), NULL, 0, buf, &other),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "in use");
    CHECK(other == NULL);
    CHECK_ERROR(bioxen_vm_result_buffer_free(buf), BIOXEN_VM_STATUS_INVALID_ARGUMENT, "in use");
    CHECK_OK(bioxen_vm_interrupt(vm, NULL));
    pthread_join(t, NULL);
    CHECK(looping.status == BIOXEN_VM_STATUS_INTERRUPTED);
    CHECK_OK(bioxen_vm_execute_into(vm2, LIT("return 7"), NULL, 0, buf, &other));
    CHECK(other != NULL && other->values_json.len == 3);
    CHECK_OK(bioxen_vm_free(vm2));

    /* The manager variant. */
    uint64_t m = 0;
    CHECK_OK(bioxen_vm_manager_new(NULL, &m));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "a", NULL));
    CHECK_OK(bioxen_vm_manager_execute_into(m, "a", LIT("x = 5 return x * 2"), NULL, 0, buf, &view));
    CHECK_TEXT(view->values_json, "[10]");
    CHECK_TEXT(view->stdout_text, "10\n");
    CHECK_ERROR(bioxen_vm_manager_execute_into(m, "nope", LIT("return 1"), NULL, 0, buf, &view),
                BIOXEN_VM_STATUS_VM_NOT_FOUND, "VM 'nope' not found");
    CHECK_ERROR(bioxen_vm_manager_execute_into(m, NULL, LIT("return 1"), NULL, 0, buf, &view),
                BIOXEN_VM_STATUS_NULL_POINTER, "vm_id");
    CHECK_OK(bioxen_vm_manager_free(m));

    CHECK_OK(bioxen_vm_result_buffer_free(buf));
    CHECK_OK(bioxen_vm_free(vm));
    return check_summary();
}
