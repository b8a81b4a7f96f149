/*
 * Hostile code against basic VMs: library functions that loop in C (where no Lua hook
 * can fire) are stopped by a timeout and by an interrupt from another thread, and the VM
 * keeps its state; results and errors are cut to max_output; a DAG of shared tables
 * ends at the deadline; colliding keys come back as {"$lua_pairs": ...}. Under valgrind
 * this also checks that stopping inside those loops leaks nothing and reads nothing it
 * should not.
 */
#include "check.h"

#include <stdbool.h>

/* Calls that run for minutes (or for ever) in one C call without their stop checks. */
static const char *const ESCAPES[] = {
    "table.move({}, 1, math.maxinteger - 1, 2)",
    "table.insert(setmetatable({}, {__len = function() return math.maxinteger - 1 end}), 1, 1)",
    "table.remove(setmetatable({}, {__len = function() return math.maxinteger - 1 end}), 1)",
    "return #table.concat(setmetatable({}, {__index = type}), '', 1, 1 << 40)",
    "return string.rep('(', 1 << 20):find('%b()')",
    "return #os.date(string.rep('%c', 1 << 24))",
    "local h = string.rep('a', 1 << 26) return h:find(string.rep('a', 1 << 16) .. 'b', 1, true)",
    "return #string.pack(string.rep('x', 1 << 26))",
    "local t = {} for i = 1, 30000 do t[i] = 'goto l' .. i .. ' ::l' .. i .. '::' end "
    "return load(table.concat(t, ' '), '=labels') ~= nil",
};
#define N_ESCAPES (sizeof ESCAPES / sizeof ESCAPES[0])

/* How long a stopped call may take to return: generous, for valgrind. */
#define BOUND_MS 20000.0

static void check_kept(uint64_t vm)
{
    bioxen_vm_result r = empty_result();
    CHECK_OK(run_lua(vm, "local s = 0 for i = 1, 1000 do s = s + i end return kept, s", &r));
    CHECK_TEXT(r.values_json, "[\"yes\",500500]");
    bioxen_vm_result_free(&r);
}

/* A new VM with the global that check_kept looks for. */
static uint64_t new_vm_keeping(void)
{
    uint64_t vm = 0;
    bioxen_vm_result r = empty_result();
    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(run_lua(vm, "kept = 'yes'", &r));
    bioxen_vm_result_free(&r);
    return vm;
}

static void test_timeouts(void)
{
    uint64_t vm = new_vm_keeping();
    bioxen_vm_result r;
    size_t i;

    for (i = 0; i < N_ESCAPES; i++) {
        double started = now_ms();
        double elapsed;
        r = empty_result();
        CHECK_ERROR(bioxen_vm_execute(vm, ESCAPES[i], strlen(ESCAPES[i]), NULL, 100, &r),
                    BIOXEN_VM_STATUS_TIMEOUT, "timed out after 0.1 seconds");
        elapsed = now_ms() - started;
        CHECK(elapsed < BOUND_MS);
        CHECK(r.stdout_text.data == NULL);
        if (elapsed >= BOUND_MS) {
            fprintf(stderr, "    escape %zu took %.0f ms: %s\n", i, elapsed, ESCAPES[i]);
        }
        check_kept(vm);
    }
    CHECK_OK(bioxen_vm_free(vm));
}

struct running {
    uint64_t vm;
    const char *code;
    int32_t status;
    bioxen_vm_result result;
};

static void *run_escape(void *arg)
{
    struct running *run = arg;
    run->status = bioxen_vm_execute(run->vm, run->code, strlen(run->code), NULL, 0,
                                    &run->result);
    return NULL;
}

/* Whether the VM's info says code runs on it now. */
static bool is_running(uint64_t vm)
{
    bioxen_vm_bytes info = {NULL, 0};
    bool running;
    CHECK_OK(bioxen_vm_info(vm, &info));
    running = info.data != NULL && strstr(info.data, "\"running\":true") != NULL;
    bioxen_vm_bytes_free(&info);
    return running;
}

static void test_interrupts(void)
{
    uint64_t vm = new_vm_keeping();
    size_t i;

    for (i = 0; i < N_ESCAPES; i++) {
        struct running run;
        pthread_t thread;
        bool was_running = false;
        double waited = now_ms();
        double interrupted;
        run.vm = vm;
        run.code = ESCAPES[i];
        run.status = -1;
        run.result = empty_result();
        CHECK(pthread_create(&thread, NULL, run_escape, &run) == 0);
        while (!is_running(vm) && now_ms() - waited < BOUND_MS) {
            sleep_ms(2);
        }
        /* Into the long call (under valgrind, building its input takes a while). */
        sleep_ms(300);
        CHECK_OK(bioxen_vm_interrupt(vm, &was_running));
        interrupted = now_ms();
        CHECK(pthread_join(thread, NULL) == 0);
        CHECK(now_ms() - interrupted < BOUND_MS);
        CHECK(was_running);
        CHECK_STATUS(run.status, BIOXEN_VM_STATUS_INTERRUPTED);
        bioxen_vm_result_free(&run.result);
        check_kept(vm);
    }
    CHECK_OK(bioxen_vm_free(vm));
}

static void test_bounded_results(void)
{
    uint64_t vm = 0;
    bioxen_vm_result r = empty_result();
    const char *line =
        "bioxen_vm: the returned values do not fit in max_output (1024 bytes) as JSON";
    size_t i;
    bool all_x = true;

    CHECK_OK(bioxen_vm_new("{\"max_output\": 1024}", &vm));
    /* Values that do not fit: a failed result, the REPL text capped as usual. */
    CHECK_OK(run_lua(vm, "local s = string.rep('x', 1 << 20) return s, s, s", &r));
    CHECK(!r.success);
    CHECK(r.return_code == 1);
    CHECK_TEXT(r.values_json, "[]");
    CHECK_TEXT(r.error_message, line);
    CHECK(r.stderr_text.len == strlen(line) + 1);
    CHECK(r.stdout_text.len == 1024);
    for (i = 0; i < r.stdout_text.len; i++) {
        all_x = all_x && r.stdout_text.data[i] == 'x';
    }
    CHECK(all_x);
    CHECK(r.output_dropped >= 3 * (1u << 20) - 1024);
    bioxen_vm_result_free(&r);

    /* A huge error: message and its stderr copy cut to max_output, the cut counted. */
    CHECK_OK(run_lua(vm, "error(string.rep('e', 1 << 22))", &r));
    CHECK(!r.success);
    CHECK(r.error_message.len == 1024);
    CHECK(r.stderr_text.len == 1024);
    CHECK(strncmp(r.error_message.data, "(bioxen_vm):1: eeee", 19) == 0);
    CHECK(r.output_dropped >= 2 * ((1u << 22) - 1024));
    bioxen_vm_result_free(&r);

    /* What fits is as before. */
    CHECK_OK(run_lua(vm, "return 1, 'two', {3}", &r));
    CHECK(r.success);
    CHECK_TEXT(r.values_json, "[1,\"two\",[3]]");
    CHECK(r.output_dropped == 0);
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));

    /* A DAG of shared tables, with a cap it cannot reach: the deadline ends it. */
    CHECK_OK(bioxen_vm_new("{\"max_output\": 4294967296}", &vm));
    CHECK_ERROR(bioxen_vm_execute(vm, LIT("local t = {} for i = 1, 40 do t = {t, t} end "
                                          "return t"),
                                  NULL, 200, &r),
                BIOXEN_VM_STATUS_TIMEOUT, "timed out after 0.2 seconds");
    CHECK_OK(run_lua(vm, "return 'usable'", &r));
    CHECK_TEXT(r.values_json, "[\"usable\"]");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));
}

static void test_colliding_keys(void)
{
    uint64_t vm = 0;
    bioxen_vm_result r = empty_result();

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(run_lua(vm, "return {[1] = 'a', ['1'] = 'b'}, {[true] = 1, ['true'] = 2}", &r));
    CHECK_TEXT(r.values_json, "[{\"$lua_pairs\":[[\"1\",\"b\"],[1,\"a\"]]},"
                              "{\"$lua_pairs\":[[\"true\",2],[true,1]]}]");
    bioxen_vm_result_free(&r);
    CHECK_OK(run_lua(vm, "return {1, 2, n = 2}", &r));
    CHECK_TEXT(r.values_json, "[{\"1\":1,\"2\":2,\"n\":2}]");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));
}

int main(void)
{
    test_timeouts();
    test_interrupts();
    test_bounded_results();
    test_colliding_keys();
    return check_summary();
}
