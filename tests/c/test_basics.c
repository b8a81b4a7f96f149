/*
 * Version, ABI, status names, the per-thread last error message, freeing library memory
 * (NULL, zeroed and already freed values are no-ops), `_free(0)` no-ops, log callbacks.
 */
#include "check.h"

#include <stdbool.h>

static void test_version(void)
{
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", BIOXEN_VM_VERSION_MAJOR,
             BIOXEN_VM_VERSION_MINOR, BIOXEN_VM_VERSION_PATCH);
    CHECK(bioxen_vm_version() != NULL);
    CHECK(strcmp(bioxen_vm_version(), expected) == 0);
    CHECK(bioxen_vm_abi_version() == BIOXEN_VM_ABI_VERSION);
    /* Static strings: the same pointer every time. */
    CHECK(bioxen_vm_version() == bioxen_vm_version());
}

static void test_status_names(void)
{
    static const struct {
        int32_t code;
        const char *name;
    } names[] = {
        {BIOXEN_VM_STATUS_OK, "OK"},
        {BIOXEN_VM_STATUS_NULL_POINTER, "NULL_POINTER"},
        {BIOXEN_VM_STATUS_INVALID_UTF8, "INVALID_UTF8"},
        {BIOXEN_VM_STATUS_INVALID_HANDLE, "INVALID_HANDLE"},
        {BIOXEN_VM_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT"},
        {BIOXEN_VM_STATUS_UNSUPPORTED, "UNSUPPORTED"},
        {BIOXEN_VM_STATUS_TIMEOUT, "TIMEOUT"},
        {BIOXEN_VM_STATUS_INTERRUPTED, "INTERRUPTED"},
        {BIOXEN_VM_STATUS_MEMORY_LIMIT, "MEMORY_LIMIT"},
        {BIOXEN_VM_STATUS_PANIC, "PANIC"},
        {BIOXEN_VM_STATUS_VM_POISONED, "VM_POISONED"},
        {BIOXEN_VM_STATUS_CANCELLED, "CANCELLED"},
        {BIOXEN_VM_STATUS_WAIT_TIMEOUT, "WAIT_TIMEOUT"},
        {BIOXEN_VM_STATUS_INTERNAL, "INTERNAL"},
        {BIOXEN_VM_STATUS_VM_NOT_FOUND, "VM_NOT_FOUND"},
        {BIOXEN_VM_STATUS_VM_ALREADY_EXISTS, "VM_ALREADY_EXISTS"},
        {BIOXEN_VM_STATUS_FILE_NOT_FOUND, "FILE_NOT_FOUND"},
        {BIOXEN_VM_STATUS_LUA_VM_ERROR, "LUA_VM_ERROR"},
        {BIOXEN_VM_STATUS_LUA_PROCESS_ERROR, "LUA_PROCESS_ERROR"},
        {BIOXEN_VM_STATUS_NETWORKING_ERROR, "NETWORKING_ERROR"},
        {BIOXEN_VM_STATUS_LUA_NOT_FOUND, "LUA_NOT_FOUND"},
        {BIOXEN_VM_STATUS_PTY_ERROR, "PTY_ERROR"},
        {BIOXEN_VM_STATUS_LUA_SOCKET_NOT_FOUND, "LUA_SOCKET_NOT_FOUND"},
        {BIOXEN_VM_STATUS_VM_CONNECTION_ERROR, "VM_CONNECTION_ERROR"},
        {BIOXEN_VM_STATUS_SCRIPT_GENERATION_ERROR, "SCRIPT_GENERATION_ERROR"},
        {BIOXEN_VM_STATUS_XCPNG_CONNECTION_ERROR, "XCPNG_CONNECTION_ERROR"},
        {BIOXEN_VM_STATUS_INTERACTIVE_SESSION_ERROR, "INTERACTIVE_SESSION_ERROR"},
        {BIOXEN_VM_STATUS_ATTACH_ERROR, "ATTACH_ERROR"},
        {BIOXEN_VM_STATUS_DETACH_ERROR, "DETACH_ERROR"},
        {BIOXEN_VM_STATUS_SESSION_NOT_FOUND, "SESSION_NOT_FOUND"},
        {BIOXEN_VM_STATUS_SESSION_ALREADY_EXISTS, "SESSION_ALREADY_EXISTS"},
        {BIOXEN_VM_STATUS_SESSION_STATE_ERROR, "SESSION_STATE_ERROR"},
        {BIOXEN_VM_STATUS_IO_THREAD_ERROR, "IO_THREAD_ERROR"},
        {BIOXEN_VM_STATUS_VM_MANAGER_ERROR, "VM_MANAGER_ERROR"},
        {BIOXEN_VM_STATUS_PROCESS_REGISTRY_ERROR, "PROCESS_REGISTRY_ERROR"},
    };
    static const int32_t unknown[] = {-1, 17, 18, 19, 38, 100, INT32_MIN, INT32_MAX};
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *got = bioxen_vm_status_name(names[i].code);
        check_record(got != NULL && strcmp(got, names[i].name) == 0, __FILE__, __LINE__,
                     "bioxen_vm_status_name", names[i].name, NULL);
    }
    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *got = bioxen_vm_status_name(unknown[i]);
        CHECK(got != NULL && strcmp(got, "UNKNOWN") == 0);
    }
}

static void test_last_error(void)
{
    uint64_t vm = 0;
    /* Nothing failed on this thread yet. */
    CHECK(bioxen_vm_last_error_message() == NULL);

    CHECK_ERROR(bioxen_vm_free(12345), BIOXEN_VM_STATUS_INVALID_HANDLE, "not a live VM handle");
    /* The message stays until the next call... */
    CHECK(bioxen_vm_last_error_message() != NULL);
    CHECK(bioxen_vm_last_error_message() != NULL);
    /* ...and a successful call clears it. */
    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK(bioxen_vm_last_error_message() == NULL);
    CHECK_OK(bioxen_vm_free(vm));
    CHECK(bioxen_vm_last_error_message() == NULL);
}

static void test_free_no_ops(void)
{
    uint64_t vm = 0;
    bioxen_vm_bytes info;
    bioxen_vm_bytes zero_bytes;
    bioxen_vm_result r = empty_result();

    /* NULL pointers are documented no-ops. */
    bioxen_vm_bytes_free(NULL);
    bioxen_vm_result_free(NULL);
    /* Zeroed values too. */
    memset(&zero_bytes, 0, sizeof zero_bytes);
    bioxen_vm_bytes_free(&zero_bytes);
    CHECK(zero_bytes.len == 0);
    bioxen_vm_result_free(&r);
    bioxen_vm_result_free(&r);
    CHECK(r.stdout_text.len == 0 && r.values_json.len == 0);

    /* Handle 0 is never a handle: freeing it is a no-op. */
    CHECK_OK(bioxen_vm_free(0));
    CHECK_OK(bioxen_vm_manager_free(0));
    CHECK_OK(bioxen_vm_job_free(0));

    /* Freeing real bytes and results twice is harmless; they are empty afterwards. */
    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(bioxen_vm_info(vm, &info));
    CHECK(info.len > 0 && info.data != NULL && info.data[0] == '{');
    bioxen_vm_bytes_free(&info);
    CHECK(info.len == 0 && info.data != NULL && info.data[0] == '\0');
    bioxen_vm_bytes_free(&info);
    CHECK(info.len == 0);

    CHECK_OK(run_lua(vm, "io.write('out') io.stderr:write('err') return 'value'", &r));
    CHECK_TEXT(r.stdout_text, "outvalue\n");
    CHECK_TEXT(r.stderr_text, "err");
    bioxen_vm_result_free(&r);
    CHECK(r.stdout_text.len == 0 && r.stderr_text.len == 0 && r.values_json.len == 0 &&
          r.error_message.len == 0);
    CHECK(r.stdout_text.data != NULL && r.stdout_text.data[0] == '\0');
    bioxen_vm_result_free(&r);
    /* A single field freed with bytes_free, then the whole result: still harmless. */
    CHECK_OK(run_lua(vm, "return 1", &r));
    bioxen_vm_bytes_free(&r.stdout_text);
    bioxen_vm_result_free(&r);
    bioxen_vm_bytes_free(&r.values_json);

    CHECK_OK(bioxen_vm_free(vm));
}

/* Log records reach the callback; the counters are shared between threads. */
struct log_sink {
    pthread_mutex_t lock;
    int records;
    int bad_records;
    int execution_records;
};

static void on_log(int32_t level, const char *target, const char *message, void *user_data)
{
    struct log_sink *sink = user_data;
    if (pthread_mutex_lock(&sink->lock) != 0) {
        abort();
    }
    sink->records++;
    if (level < 1 || level > 5 || target == NULL || message == NULL ||
        strncmp(target, "bioxen_vm", 9) != 0) {
        sink->bad_records++;
    } else if (strstr(message, "executed") != NULL) {
        sink->execution_records++;
    }
    if (pthread_mutex_unlock(&sink->lock) != 0) {
        abort();
    }
}

static void test_log_callback(void)
{
    struct log_sink sink;
    uint64_t vm = 0;
    bioxen_vm_result r = empty_result();
    int records_after_removal;

    memset(&sink, 0, sizeof sink);
    if (pthread_mutex_init(&sink.lock, NULL) != 0) {
        abort();
    }
    CHECK_ERROR(bioxen_vm_set_log_callback(on_log, &sink, 6), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "not in 0..5");
    CHECK_ERROR(bioxen_vm_set_log_callback(on_log, &sink, -1),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "not in 0..5");

    CHECK_OK(bioxen_vm_set_log_callback(on_log, &sink, 5));
    CHECK_OK(bioxen_vm_new("{\"debug_mode\": true}", &vm));
    CHECK_OK(run_lua(vm, "return 1", &r));
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));
    /* NULL removes the callback (user_data NULL is allowed). */
    CHECK_OK(bioxen_vm_set_log_callback(NULL, NULL, 0));

    if (pthread_mutex_lock(&sink.lock) != 0) {
        abort();
    }
    CHECK(sink.records > 0);
    CHECK(sink.bad_records == 0);
    CHECK(sink.execution_records >= 1);
    records_after_removal = sink.records;
    if (pthread_mutex_unlock(&sink.lock) != 0) {
        abort();
    }

    /* No more records once removed. */
    CHECK_OK(bioxen_vm_new("{\"debug_mode\": true}", &vm));
    CHECK_OK(run_lua(vm, "return 2", &r));
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));
    CHECK(sink.records == records_after_removal);

    /* Level 0 (off) is valid. */
    CHECK_OK(bioxen_vm_set_log_callback(on_log, &sink, 0));
    CHECK_OK(bioxen_vm_new("{\"debug_mode\": true}", &vm));
    CHECK_OK(run_lua(vm, "return 3", &r));
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));
    CHECK_OK(bioxen_vm_set_log_callback(NULL, NULL, 0));
    CHECK(sink.records == records_after_removal);

    if (pthread_mutex_destroy(&sink.lock) != 0) {
        abort();
    }
}

int main(void)
{
    test_last_error(); /* first: it checks the state before any call */
    test_version();
    test_status_names();
    test_free_no_ops();
    test_log_callback();
    return check_summary();
}
