/*
 * VM managers: creating and removing VMs by id (VM_ALREADY_EXISTS, VM_NOT_FOUND, empty
 * ids, unknown and unsupported kinds), executing with persistence and arguments, manager
 * defaults for its VMs, async jobs on the manager's pool, interrupt, list/info/stats JSON,
 * and what freeing a manager does to work in flight.
 */
#include "check.h"

#include <stdbool.h>

static void test_create_remove(uint64_t m)
{
    bioxen_vm_bytes list = {NULL, 0};

    CHECK_OK(bioxen_vm_manager_create_vm(m, "alpha", NULL));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "beta", "{\"vm_type\": \"basic\"}"));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "gamma", ""));
    CHECK_ERROR(bioxen_vm_manager_create_vm(m, "alpha", NULL), BIOXEN_VM_STATUS_VM_ALREADY_EXISTS,
                "VM with ID 'alpha' already exists");
    CHECK_ERROR(bioxen_vm_manager_create_vm(m, "", NULL), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "VM id must not be empty");
    CHECK_ERROR(bioxen_vm_manager_create_vm(m, "delta", "{\"vm_type\": \"nope\"}"),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Unknown VM type: nope");
    CHECK_ERROR(bioxen_vm_manager_create_vm(m, "delta", "{\"vm_type\": \"xcpng\"}"),
                BIOXEN_VM_STATUS_VM_MANAGER_ERROR, "Missing required configuration: xcp_host");
    CHECK_ERROR(bioxen_vm_manager_create_vm(m, "delta", "{\"bogus\": true}"),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "bogus");
    CHECK_ERROR(bioxen_vm_manager_create_vm(m, "delta", "[]"), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "must be a JSON object");

    /* Creation order; failed creations left nothing behind. */
    CHECK_OK(bioxen_vm_manager_list_vms(m, &list));
    CHECK_TEXT(list, "[\"alpha\",\"beta\",\"gamma\"]");
    bioxen_vm_bytes_free(&list);

    CHECK_OK(bioxen_vm_manager_remove_vm(m, "beta"));
    CHECK_ERROR(bioxen_vm_manager_remove_vm(m, "beta"), BIOXEN_VM_STATUS_VM_NOT_FOUND,
                "VM 'beta' not found");
    CHECK_ERROR(bioxen_vm_manager_remove_vm(m, "never"), BIOXEN_VM_STATUS_VM_NOT_FOUND,
                "VM 'never' not found");
    CHECK_OK(bioxen_vm_manager_list_vms(m, &list));
    CHECK_TEXT(list, "[\"alpha\",\"gamma\"]");
    bioxen_vm_bytes_free(&list);

    /* The id is free again, for a fresh VM. */
    CHECK_OK(bioxen_vm_manager_create_vm(m, "beta", NULL));
    CHECK_OK(bioxen_vm_manager_list_vms(m, &list));
    CHECK_TEXT(list, "[\"alpha\",\"gamma\",\"beta\"]");
    bioxen_vm_bytes_free(&list);
}

static void test_execute(uint64_t m)
{
    bioxen_vm_result r = empty_result();
    const char *sum = "local s = 0 for _, v in ipairs((...)) do s = s + v end "
                      "return s, select(2, ...)";

    CHECK_OK(bioxen_vm_manager_execute(m, "alpha", LIT("return 2 + 2"), NULL, 0, &r));
    CHECK(r.success);
    CHECK_TEXT(r.stdout_text, "4\n");
    bioxen_vm_result_free(&r);

    /* Globals persist per VM, and VMs are isolated from each other. */
    CHECK_OK(bioxen_vm_manager_execute(m, "alpha", LIT("greeting = 'hi from alpha'"), NULL, 0,
                                       &r));
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_manager_execute(m, "alpha", LIT("return greeting"), NULL, 0, &r));
    CHECK_TEXT(r.stdout_text, "hi from alpha\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_manager_execute(m, "gamma", LIT("return greeting"), NULL, 0, &r));
    CHECK_TEXT(r.stdout_text, "nil\n");
    bioxen_vm_result_free(&r);

    /* Arguments arrive as `...`. */
    CHECK_OK(bioxen_vm_manager_execute(m, "gamma", sum, strlen(sum), "[[1, 2, 3.5], \"label\"]",
                                       0, &r));
    CHECK_TEXT(r.stdout_text, "6.5\tlabel\n");
    CHECK_TEXT(r.values_json, "[6.5,\"label\"]");
    bioxen_vm_result_free(&r);

    /* Lua errors are results; a missing VM and empty code are statuses. */
    CHECK_OK(bioxen_vm_manager_execute(m, "gamma", LIT("error('managed boom')"), NULL, 0, &r));
    CHECK(!r.success && r.return_code == 1);
    CHECK_CONTAINS(r.error_message.data, "managed boom");
    bioxen_vm_result_free(&r);
    r = empty_result();
    CHECK_ERROR(bioxen_vm_manager_execute(m, "nope", LIT("return 1"), NULL, 0, &r),
                BIOXEN_VM_STATUS_VM_NOT_FOUND, "VM 'nope' not found");
    CHECK_ERROR(bioxen_vm_manager_execute(m, "alpha", LIT(" \n "), NULL, 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Lua code cannot be empty");
    CHECK(r.stdout_text.data == NULL);

    /* Timeouts and interrupts keep the VM's state. */
    CHECK_ERROR(bioxen_vm_manager_execute(m, "alpha", LIT("while true do end"), NULL, 100, &r),
                BIOXEN_VM_STATUS_TIMEOUT, "timed out");
    CHECK_OK(bioxen_vm_manager_execute(m, "alpha", LIT("return greeting"), NULL, 0, &r));
    CHECK_TEXT(r.stdout_text, "hi from alpha\n");
    bioxen_vm_result_free(&r);
}

static void test_defaults(void)
{
    uint64_t m = 0;
    bioxen_vm_result r = empty_result();
    bioxen_vm_bytes info = {NULL, 0};

    CHECK_OK(bioxen_vm_manager_new("{\"max_workers\": 2, \"memory_limit\": 2097152, "
                                   "\"timeout\": 0.2, \"sandbox\": \"default\"}",
                                   &m));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "limited", NULL));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "roomy", "{\"memory_limit\": 0, \"timeout\": 0}"));

    CHECK_OK(bioxen_vm_manager_vm_info(m, "limited", &info));
    CHECK_CONTAINS(info.data, "\"memory_limit\":2097152");
    bioxen_vm_bytes_free(&info);
    CHECK_OK(bioxen_vm_manager_vm_info(m, "roomy", &info));
    CHECK_CONTAINS(info.data, "\"memory_limit\":null");
    bioxen_vm_bytes_free(&info);

    /* The manager's defaults apply... */
    CHECK_ERROR(bioxen_vm_manager_execute(m, "limited", LIT("while true do end"), NULL, 0, &r),
                BIOXEN_VM_STATUS_TIMEOUT, "timed out after 0.2 seconds");
    CHECK_ERROR(bioxen_vm_manager_execute(m, "limited",
                                          LIT("local t = {} while true do t[#t + 1] = {} end"),
                                          NULL, 0, &r),
                BIOXEN_VM_STATUS_MEMORY_LIMIT, "memory limit");
    CHECK_OK(bioxen_vm_manager_execute(m, "limited", LIT("return 'fine'"), NULL, 0, &r));
    CHECK_TEXT(r.stdout_text, "fine\n");
    bioxen_vm_result_free(&r);
    /* ...unless the VM's own options override them. */
    CHECK_OK(bioxen_vm_manager_execute(m, "roomy",
                                       LIT("local t = {} for i = 1, 300000 do t[i] = i end "
                                           "return #t"),
                                       NULL, 0, &r));
    CHECK_TEXT(r.stdout_text, "300000\n");
    bioxen_vm_result_free(&r);

    CHECK_OK(bioxen_vm_manager_stats(m, &info));
    CHECK_CONTAINS(info.data, "\"max_workers\":2");
    bioxen_vm_bytes_free(&info);
    CHECK_OK(bioxen_vm_manager_free(m));
}

static void test_async(uint64_t m)
{
    enum { JOBS = 6 };
    static const char *ids[] = {"alpha", "beta", "gamma"};
    uint64_t jobs[JOBS];
    bioxen_vm_result r = empty_result();
    uint64_t job = 0;
    int i;

    for (i = 0; i < JOBS; i++) {
        char args[32];
        snprintf(args, sizeof args, "[%d]", i);
        jobs[i] = 0;
        CHECK_OK(bioxen_vm_manager_execute_async(m, ids[i % 3], LIT("return ... * 10"), args, 0,
                                                 &jobs[i]));
    }
    for (i = 0; i < JOBS; i++) {
        char expected[16];
        snprintf(expected, sizeof expected, "%d\n", i * 10);
        CHECK_OK(bioxen_vm_job_wait(jobs[i], 0, &r));
        CHECK_TEXT(r.stdout_text, expected);
        bioxen_vm_result_free(&r);
        CHECK_OK(bioxen_vm_job_free(jobs[i]));
    }
    CHECK_ERROR(bioxen_vm_manager_execute_async(m, "nope", LIT("return 1"), NULL, 0, &job),
                BIOXEN_VM_STATUS_VM_NOT_FOUND, "VM 'nope' not found");
    CHECK_ERROR(bioxen_vm_manager_execute_async(m, "alpha", LIT("\t"), NULL, 0, &job),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Lua code cannot be empty");
    CHECK(job == 0);

    /* A job's own timeout. */
    CHECK_OK(bioxen_vm_manager_execute_async(m, "beta", LIT("while true do end"), NULL, 100,
                                             &job));
    CHECK_ERROR(bioxen_vm_job_wait(job, 0, &r), BIOXEN_VM_STATUS_TIMEOUT, "timed out");
    CHECK_OK(bioxen_vm_job_free(job));
}

struct runner {
    uint64_t manager;
    const char *vm_id;
    const char *code;
    uint64_t timeout_ms;
    int32_t status;
    bioxen_vm_result result;
};

static void *run_on_manager(void *arg)
{
    struct runner *run = arg;
    run->status = bioxen_vm_manager_execute(run->manager, run->vm_id, run->code,
                                            strlen(run->code), NULL, run->timeout_ms,
                                            &run->result);
    return NULL;
}

static void test_interrupt(uint64_t m)
{
    struct runner run;
    pthread_t thread;
    bool was_running = true;
    int tries;

    CHECK_OK(bioxen_vm_manager_interrupt(m, "gamma", &was_running));
    CHECK(!was_running);
    CHECK_ERROR(bioxen_vm_manager_interrupt(m, "nope", &was_running),
                BIOXEN_VM_STATUS_VM_NOT_FOUND, "VM 'nope' not found");

    memset(&run, 0, sizeof run);
    run.manager = m;
    run.vm_id = "gamma";
    run.code = "while true do end";
    run.status = -1;
    CHECK(pthread_create(&thread, NULL, run_on_manager, &run) == 0);
    /* Interrupt until it reports that it stopped running code. */
    was_running = false;
    for (tries = 0; tries < 4000 && !was_running; tries++) {
        if (bioxen_vm_manager_interrupt(m, "gamma", &was_running) != BIOXEN_VM_STATUS_OK) {
            break;
        }
        if (!was_running) {
            sleep_ms(5);
        }
    }
    CHECK(was_running);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(run.status == BIOXEN_VM_STATUS_INTERRUPTED);
    CHECK(run.result.stdout_text.data == NULL);
}

static void test_info_list_stats(uint64_t m)
{
    bioxen_vm_bytes json = {NULL, 0};

    CHECK_OK(bioxen_vm_manager_vm_info(m, "alpha", &json));
    CHECK(json.len > 2 && json.data[0] == '{' && json.data[json.len - 1] == '}');
    CHECK_CONTAINS(json.data, "\"vm_id\":\"alpha\"");
    CHECK_CONTAINS(json.data, "\"vm_name\":\"alpha\"");
    CHECK_CONTAINS(json.data, "\"vm_type\":\"basic\"");
    CHECK_CONTAINS(json.data, "\"session_exists\":false");
    CHECK_CONTAINS(json.data, "\"session_attached\":false");
    CHECK_CONTAINS(json.data, "\"process_running\":false");
    CHECK_CONTAINS(json.data, "\"interactive_capable\":true");
    CHECK_CONTAINS(json.data, "\"executions\":");
    bioxen_vm_bytes_free(&json);
    CHECK_ERROR(bioxen_vm_manager_vm_info(m, "nope", &json), BIOXEN_VM_STATUS_VM_NOT_FOUND,
                "VM 'nope' not found");
    CHECK(json.len == 0);

    CHECK_OK(bioxen_vm_manager_stats(m, &json));
    CHECK(json.len > 2 && json.data[0] == '{');
    CHECK_CONTAINS(json.data, "\"total_vms\":3");
    CHECK_CONTAINS(json.data, "\"basic_vms\":3");
    CHECK_CONTAINS(json.data, "\"networked_vms\":0");
    CHECK_CONTAINS(json.data, "\"persistent_vms\":");
    CHECK_CONTAINS(json.data, "\"interactive_sessions\":0");
    CHECK_CONTAINS(json.data, "\"attached_sessions\":0");
    CHECK_CONTAINS(json.data, "\"running_operations\":0");
    CHECK_CONTAINS(json.data, "\"completed_operations\":7");
    CHECK_CONTAINS(json.data, "\"max_workers\":10");
    CHECK_CONTAINS(json.data, "\"lua_executable\":\"lua\"");
    bioxen_vm_bytes_free(&json);

    /* An empty manager. */
    {
        uint64_t empty = 0;
        CHECK_OK(bioxen_vm_manager_new(NULL, &empty));
        CHECK_OK(bioxen_vm_manager_list_vms(empty, &json));
        CHECK_TEXT(json, "[]");
        bioxen_vm_bytes_free(&json);
        CHECK_OK(bioxen_vm_manager_stats(empty, &json));
        CHECK_CONTAINS(json.data, "\"total_vms\":0");
        bioxen_vm_bytes_free(&json);
        CHECK_OK(bioxen_vm_manager_free(empty));
    }
}

/* Removing a VM while it runs: the call is not interrupted, the id is free at once. */
static void test_remove_while_running(uint64_t m)
{
    struct runner run;
    pthread_t thread;
    bioxen_vm_bytes info = {NULL, 0};
    bioxen_vm_result r = empty_result();
    int i, running = 0;

    CHECK_OK(bioxen_vm_manager_create_vm(m, "doomed", NULL));
    memset(&run, 0, sizeof run);
    run.manager = m;
    run.vm_id = "doomed";
    run.code = "while true do end";
    run.timeout_ms = 1000;
    run.status = -1;
    CHECK(pthread_create(&thread, NULL, run_on_manager, &run) == 0);
    for (i = 0; i < 2000 && !running; i++) {
        if (bioxen_vm_manager_vm_info(m, "doomed", &info) == BIOXEN_VM_STATUS_OK) {
            running = strstr(info.data, "\"running\":true") != NULL;
            bioxen_vm_bytes_free(&info);
        }
        if (!running) {
            sleep_ms(5);
        }
    }
    CHECK(running);
    CHECK_OK(bioxen_vm_manager_remove_vm(m, "doomed"));
    CHECK_ERROR(bioxen_vm_manager_execute(m, "doomed", LIT("return 1"), NULL, 0, &r),
                BIOXEN_VM_STATUS_VM_NOT_FOUND, "VM 'doomed' not found");
    CHECK_OK(bioxen_vm_manager_create_vm(m, "doomed", NULL));
    CHECK_OK(bioxen_vm_manager_execute(m, "doomed", LIT("return 'new one'"), NULL, 0, &r));
    CHECK_TEXT(r.stdout_text, "new one\n");
    bioxen_vm_result_free(&r);
    /* The call that was running went on to its end: its 1 s timeout. */
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(run.status == BIOXEN_VM_STATUS_TIMEOUT);
    CHECK_OK(bioxen_vm_manager_remove_vm(m, "doomed"));
}

/* Freeing a manager interrupts what runs on its VMs and cancels what is queued. */
static void test_free_in_flight(void)
{
    uint64_t m = 0, running = 0, queued = 0;
    struct runner run;
    pthread_t thread;
    bioxen_vm_result r = empty_result();
    bioxen_vm_bytes info = {NULL, 0};
    int i, busy = 0;

    CHECK_OK(bioxen_vm_manager_new("{\"max_workers\": 1}", &m));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "sync", NULL));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "async", NULL));
    CHECK_OK(bioxen_vm_manager_execute_async(m, "async", LIT("while true do end"), NULL, 10000,
                                             &running));
    CHECK_OK(bioxen_vm_manager_execute_async(m, "async", LIT("return 'queued'"), NULL, 0,
                                             &queued));
    memset(&run, 0, sizeof run);
    run.manager = m;
    run.vm_id = "sync";
    run.code = "while true do end";
    run.status = -1;
    CHECK(pthread_create(&thread, NULL, run_on_manager, &run) == 0);
    for (i = 0; i < 2000 && busy < 2; i++) {
        busy = 0;
        if (bioxen_vm_manager_vm_info(m, "sync", &info) == BIOXEN_VM_STATUS_OK) {
            busy += strstr(info.data, "\"running\":true") != NULL;
            bioxen_vm_bytes_free(&info);
        }
        if (bioxen_vm_manager_vm_info(m, "async", &info) == BIOXEN_VM_STATUS_OK) {
            busy += strstr(info.data, "\"running\":true") != NULL;
            bioxen_vm_bytes_free(&info);
        }
        sleep_ms(5);
    }
    CHECK(busy == 2);
    sleep_ms(50); /* well inside their loops */

    CHECK_OK(bioxen_vm_manager_free(m));
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(run.status == BIOXEN_VM_STATUS_INTERRUPTED);
    CHECK_ERROR(bioxen_vm_job_wait(running, 5000, &r), BIOXEN_VM_STATUS_INTERRUPTED,
                "interrupted");
    CHECK_ERROR(bioxen_vm_job_wait(queued, 5000, &r), BIOXEN_VM_STATUS_CANCELLED, "cancelled");
    CHECK_OK(bioxen_vm_job_free(running));
    CHECK_OK(bioxen_vm_job_free(queued));
    CHECK_ERROR(bioxen_vm_manager_list_vms(m, &info), BIOXEN_VM_STATUS_INVALID_HANDLE,
                "is not a live manager handle");
}

int main(void)
{
    uint64_t m = 0;
    CHECK_OK(bioxen_vm_manager_new(NULL, &m));
    test_create_remove(m);
    test_execute(m);
    test_defaults();
    test_async(m);
    test_interrupt(m);
    test_info_list_stats(m);
    test_remove_while_running(m);
    CHECK_OK(bioxen_vm_manager_free(m));
    test_free_in_flight();
    return check_summary();
}
