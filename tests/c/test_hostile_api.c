/*
 * Arguments a hostile or careless C caller passes, and the promises about shutdown and
 * on-done callbacks:
 * - timeouts of 0 ("no limit"), 1 and UINT64_MAX on every kind of call that takes one:
 *   never PANIC, 1 ms is a real limit, 0 and UINT64_MAX wait for the work;
 * - bioxen_vm_manager_free waits its 5 s grace once (not twice), and returns at once when
 *   called from an on-done callback of its own worker;
 * - an on-done callback may wait for the next job of its own VM, with one worker;
 * - duplicate JSON keys and max_output 0 are refused; a huge script file is refused
 *   without being read; NULL messages name the parameter; a live process VM is running.
 */
#include "check.h"

#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>

static const uint64_t timeouts[] = {0, 1, UINT64_MAX, UINT64_MAX - 1, 3153600000000ULL,
                                    86400000ULL};
#define N_TIMEOUTS (sizeof timeouts / sizeof timeouts[0])

/* OK, or for the 1 ms limit also a timeout (short code may outlast a millisecond). */
static void check_timeout_status(const char *what, uint64_t t, int32_t s)
{
    int ok = s == BIOXEN_VM_STATUS_OK ||
             (t == 1 && (s == BIOXEN_VM_STATUS_TIMEOUT || s == BIOXEN_VM_STATUS_WAIT_TIMEOUT));
    char detail[200];
    snprintf(detail, sizeof detail, "%s with timeout %llu: %s", what, (unsigned long long)t,
             bioxen_vm_status_name(s));
    check_record(ok, __FILE__, __LINE__, "status for the timeout", detail,
                 bioxen_vm_last_error_message());
}

static void every_timeout(void)
{
    uint64_t m = 0, vm = 0;
    size_t i;
    char script[] = "/tmp/bioxen-hostile-XXXXXX";
    int fd = mkstemp(script);
    CHECK(fd >= 0);
    CHECK(write(fd, "return 42", 9) == 9);
    close(fd);

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(bioxen_vm_manager_new("{\"max_workers\": 2}", &m));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "v", NULL));
    CHECK_OK(bioxen_vm_manager_create_interactive_vm(m, "s", NULL, true));
    for (i = 0; i < N_TIMEOUTS; i++) {
        uint64_t t = timeouts[i], job = 0;
        bioxen_vm_result r = empty_result();
        bioxen_vm_bytes b = {NULL, 0};
        bool has = false;
        int32_t s;
        char jobs[64];

        s = bioxen_vm_execute(vm, LIT("return 1"), NULL, t, &r);
        check_timeout_status("bioxen_vm_execute", t, s);
        bioxen_vm_result_free(&r);

        s = bioxen_vm_execute_file(vm, script, t, &r);
        check_timeout_status("bioxen_vm_execute_file", t, s);
        if (s == BIOXEN_VM_STATUS_OK) {
            CHECK_TEXT(r.values_json, "[42]");
        }
        bioxen_vm_result_free(&r);

        s = bioxen_vm_manager_execute(m, "v", LIT("return 1"), NULL, t, &r);
        check_timeout_status("bioxen_vm_manager_execute", t, s);
        bioxen_vm_result_free(&r);

        CHECK_OK(bioxen_vm_manager_execute_async(m, "v", LIT("return 2"), NULL, t, &job));
        s = bioxen_vm_job_wait(job, UINT64_MAX, &r);
        check_timeout_status("bioxen_vm_manager_execute_async", t, s);
        bioxen_vm_result_free(&r);
        s = bioxen_vm_job_wait(job, t, &r);
        CHECK(s != BIOXEN_VM_STATUS_PANIC);
        bioxen_vm_result_free(&r);
        s = bioxen_vm_manager_wait_for_vm(m, "v", t, &r);
        CHECK(s != BIOXEN_VM_STATUS_PANIC);
        bioxen_vm_result_free(&r);
        snprintf(jobs, sizeof jobs, "{\"v\": %llu}", (unsigned long long)job);
        CHECK_OK(bioxen_vm_wait_for_cluster(jobs, t, &b));
        bioxen_vm_bytes_free(&b);
        CHECK_OK(bioxen_vm_job_free(job));

        CHECK_OK(bioxen_vm_manager_send_input(m, "s", LIT("y = 1")));
        CHECK_OK(bioxen_vm_manager_read_output(m, "s", t, 0, &b, &has));
        bioxen_vm_bytes_free(&b);

        /* The two calls that answered PANIC for 0 before. */
        s = bioxen_vm_manager_execute_interactive_command(m, "s", LIT("return 6 * 7"), t, &b);
        CHECK(s != BIOXEN_VM_STATUS_PANIC);
        CHECK(s == BIOXEN_VM_STATUS_OK);
        if (t != 1) {
            CHECK_CONTAINS(b.data, "42");
        }
        bioxen_vm_bytes_free(&b);
        s = bioxen_vm_manager_broadcast_to_sessions(m, "s*", LIT("return 6 * 7"), t, &b);
        CHECK(s != BIOXEN_VM_STATUS_PANIC);
        CHECK(s == BIOXEN_VM_STATUS_OK);
        if (t != 1) {
            CHECK_CONTAINS(b.data, "42");
        }
        bioxen_vm_bytes_free(&b);
    }
    CHECK_OK(bioxen_vm_manager_free(m));
    CHECK_OK(bioxen_vm_free(vm));
    unlink(script);
}

static void timeouts_mean_what_they_say(void)
{
    uint64_t vm = 0, job = 0;
    bioxen_vm_result r = empty_result();
    double t0;
    int32_t s;

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    t0 = now_ms();
    CHECK_STATUS(bioxen_vm_execute(vm, LIT("while true do end"), NULL, 1, &r),
                 BIOXEN_VM_STATUS_TIMEOUT);
    CHECK(now_ms() - t0 < 1 + 1000);

    CHECK_OK(bioxen_vm_execute_async(
        vm, LIT("local t = os.clock() while os.clock() - t < 0.3 do end return 'late'"), NULL,
        0, &job));
    t0 = now_ms();
    CHECK_STATUS(bioxen_vm_job_wait(job, 1, &r), BIOXEN_VM_STATUS_WAIT_TIMEOUT);
    CHECK(now_ms() - t0 < 250);
    s = bioxen_vm_job_wait(job, UINT64_MAX, &r);
    CHECK_OK(s);
    if (s == BIOXEN_VM_STATUS_OK) {
        CHECK_TEXT(r.values_json, "[\"late\"]");
        bioxen_vm_result_free(&r);
    }
    CHECK_OK(bioxen_vm_job_free(job));
    CHECK_OK(bioxen_vm_free(vm));
}

/* ---- callbacks ---------------------------------------------------------------------- */

struct report {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int32_t status;
    double took_ms;
    uint64_t manager;
    uint64_t other_job;
    long sleep_ms;
    char values[64];
};

static void report_init(struct report *rep)
{
    memset(rep, 0, sizeof *rep);
    pthread_mutex_init(&rep->lock, NULL);
    pthread_cond_init(&rep->cond, NULL);
}

static void report_done(struct report *rep, int32_t status, double took)
{
    pthread_mutex_lock(&rep->lock);
    rep->status = status;
    rep->took_ms = took;
    rep->done = 1;
    pthread_cond_broadcast(&rep->cond);
    pthread_mutex_unlock(&rep->lock);
}

/* Waits up to `ms` for the callback's report; whether it came. */
static int report_wait(struct report *rep, long ms)
{
    struct timespec until;
    int done;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&rep->lock);
    while (!rep->done) {
        if (pthread_cond_timedwait(&rep->cond, &rep->lock, &until) != 0) {
            break;
        }
    }
    done = rep->done;
    pthread_mutex_unlock(&rep->lock);
    return done;
}

static void report_destroy(struct report *rep)
{
    pthread_mutex_destroy(&rep->lock);
    pthread_cond_destroy(&rep->cond);
}

static void free_manager_cb(uint64_t job, int32_t status, void *user_data)
{
    struct report *rep = user_data;
    double t0 = now_ms();
    int32_t s = bioxen_vm_manager_free(rep->manager);
    (void)job;
    (void)status;
    report_done(rep, s, now_ms() - t0);
}

static void wait_other_cb(uint64_t job, int32_t status, void *user_data)
{
    struct report *rep = user_data;
    bioxen_vm_result r = empty_result();
    double t0 = now_ms();
    int32_t s = bioxen_vm_job_wait(rep->other_job, 0, &r);
    (void)job;
    (void)status;
    if (s == BIOXEN_VM_STATUS_OK) {
        snprintf(rep->values, sizeof rep->values, "%s", r.values_json.data);
        bioxen_vm_result_free(&r);
    }
    report_done(rep, s, now_ms() - t0);
}

static void sleep_cb(uint64_t job, int32_t status, void *user_data)
{
    struct report *rep = user_data;
    (void)job;
    (void)status;
    report_done(rep, BIOXEN_VM_STATUS_OK, 0);
    sleep_ms(rep->sleep_ms);
}

#define BUSY_200MS "local t = os.clock() while os.clock() - t < 0.2 do end return 'a'"

static void a_callback_may_free_its_manager(void)
{
    struct report rep;
    uint64_t m = 0, job = 0;
    report_init(&rep);
    CHECK_OK(bioxen_vm_manager_new("{\"max_workers\": 1}", &m));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "f", NULL));
    CHECK_OK(bioxen_vm_manager_execute_async(m, "f", LIT(BUSY_200MS), NULL, 0, &job));
    rep.manager = m;
    CHECK_OK(bioxen_vm_job_on_done(job, free_manager_cb, &rep));
    CHECK(report_wait(&rep, 30000));
    CHECK_OK(rep.status);
    /* It waited 10 s (5 s for its own worker, then 5 s again in the drop). */
    CHECK(rep.took_ms < 2000);
    CHECK_STATUS(bioxen_vm_manager_free(m), BIOXEN_VM_STATUS_INVALID_HANDLE);
    CHECK_OK(bioxen_vm_job_free(job));
    report_destroy(&rep);
}

static void a_callback_may_wait_for_the_next_job_of_its_vm(void)
{
    struct report rep;
    uint64_t m = 0, a = 0, b = 0;
    report_init(&rep);
    CHECK_OK(bioxen_vm_manager_new("{\"max_workers\": 1}", &m));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "same", NULL));
    CHECK_OK(bioxen_vm_manager_execute_async(m, "same", LIT(BUSY_200MS), NULL, 0, &a));
    CHECK_OK(bioxen_vm_manager_execute_async(m, "same", LIT("return 'b'"), NULL, 0, &b));
    rep.other_job = b;
    CHECK_OK(bioxen_vm_job_on_done(a, wait_other_cb, &rep));
    /* It deadlocked: the callback held the VM's lane that job b waits for. */
    CHECK(report_wait(&rep, 20000));
    CHECK_OK(rep.status);
    CHECK(strcmp(rep.values, "[\"b\"]") == 0);
    CHECK(rep.took_ms < 5000);
    CHECK_OK(bioxen_vm_job_free(a));
    CHECK_OK(bioxen_vm_job_free(b));
    if (rep.done) {
        CHECK_OK(bioxen_vm_manager_free(m));
    }
    report_destroy(&rep);
}

static void freeing_waits_the_grace_once(void)
{
    static struct report rep; /* the callback may outlive this function */
    uint64_t m = 0, job = 0;
    bioxen_vm_result r = empty_result();
    double t0, took;
    report_init(&rep);
    rep.sleep_ms = 8000;
    CHECK_OK(bioxen_vm_manager_new("{\"max_workers\": 2}", &m));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "g", NULL));
    CHECK_OK(bioxen_vm_manager_execute_async(m, "g", LIT(BUSY_200MS), NULL, 0, &job));
    CHECK_OK(bioxen_vm_job_on_done(job, sleep_cb, &rep));
    CHECK(report_wait(&rep, 30000)); /* the callback now holds its worker for 8 s */
    t0 = now_ms();
    CHECK_OK(bioxen_vm_manager_free(m));
    took = now_ms() - t0;
    /* One grace (5 s), not 5 s and then the rest of the callback's 8 s. */
    CHECK(took < 5000 + 1500);
    CHECK(took > 4000);
    CHECK_OK(bioxen_vm_job_wait(job, 0, &r));
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_job_free(job));
    /* Let the callback end before the process does (valgrind then sees no live thread). */
    sleep_ms(8000 - (long)took);
}

/* ---- input taken exactly or refused ---------------------------------------------------- */

static void input_is_taken_exactly_or_refused(void)
{
    uint64_t vm = 0, m = 0;
    bioxen_vm_result r = empty_result();
    bioxen_vm_bytes b = {NULL, 0};
    char big[] = "/tmp/bioxen-hostile-big-XXXXXX";
    int fd;
    double t0;

    CHECK_ERROR(bioxen_vm_new("{\"sandbox\":\"default\",\"sandbox\":\"trusted\"}", &vm),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "duplicate key \"sandbox\"");
    CHECK(vm == 0);
    CHECK_ERROR(bioxen_vm_manager_new("{\"timeout\":1,\"timeout\":0}", &m),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "duplicate key");
    CHECK_ERROR(bioxen_vm_new("{\"max_output\": 0}", &vm), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "option 'max_output' must be at least 1 byte; there is no unlimited setting");
    CHECK_ERROR(bioxen_vm_new("{\"timeout\": 1e300}", &vm), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "option 'timeout' must be a non-negative number of seconds");

    CHECK_OK(bioxen_vm_new("{\"memory_limit\": 1048576}", &vm));
    CHECK_ERROR(bioxen_vm_execute(vm, LIT("return ..."), "[{\"a\":1,\"a\":2}]", 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "duplicate key \"a\"");

    /* A 3 GiB sparse file: refused before a byte is read. */
    fd = mkstemp(big);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)3 << 30) == 0);
    close(fd);
    t0 = now_ms();
    CHECK_ERROR(bioxen_vm_execute_file(vm, big, 0, &r), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "is too large: 3221225472 bytes");
    CHECK(now_ms() - t0 < 1000);
    unlink(big);
    CHECK_ERROR(bioxen_vm_execute_file(vm, "/dev/zero", 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "not a file");

    /* NULL messages name the parameter. */
    CHECK_STATUS(bioxen_vm_execute_file(vm, NULL, 0, &r), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK(strcmp(bioxen_vm_last_error_message(), "script_path must not be NULL") == 0);
    CHECK_STATUS(bioxen_vm_job_on_done(1, NULL, NULL), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK(strcmp(bioxen_vm_last_error_message(), "callback must not be NULL") == 0);
    CHECK_OK(bioxen_vm_free(vm));

    /* A live process VM is running. */
    CHECK_OK(bioxen_vm_manager_new(NULL, &m));
    CHECK_OK(bioxen_vm_manager_create_vm(
        m, "p", "{\"vm_type\": \"process\", \"lua_executable\": \"lua5.4\"}"));
    CHECK_OK(bioxen_vm_manager_execute(m, "p", LIT("x = 1"), NULL, 0, &r));
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_manager_vm_info(m, "p", &b));
    CHECK_CONTAINS(b.data, "\"process_running\":true");
    bioxen_vm_bytes_free(&b);
    CHECK_OK(bioxen_vm_manager_free(m));
}

int main(void)
{
    every_timeout();
    timeouts_mean_what_they_say();
    a_callback_may_free_its_manager();
    a_callback_may_wait_for_the_next_job_of_its_vm();
    input_is_taken_exactly_or_refused();
    freeing_waits_the_grace_once();
    return check_summary();
}
