/*
 * Asynchronous jobs on standalone VMs: waiting (with and without a limit, repeatedly and
 * from several threads), status words, submission order, job failures (TIMEOUT,
 * MEMORY_LIMIT), cancelling queued and running jobs, and what freeing a VM or a job does
 * to jobs in flight.
 */
#include "check.h"

#include <stdbool.h>

#define BUSY_300MS "local t = os.clock() while os.clock() - t < 0.3 do end return 'busy done'"

static int job_status_is(uint64_t job, const char *expected)
{
    const char *status = NULL;
    if (bioxen_vm_job_status(job, &status) != BIOXEN_VM_STATUS_OK || status == NULL) {
        return 0;
    }
    return strcmp(status, expected) == 0;
}

/* Interrupts until the VM says it stopped running code; returns whether it did. */
static int interrupt_until_stopped(uint64_t vm)
{
    bool was_running = false;
    int tries;
    for (tries = 0; tries < 2000 && !was_running; tries++) {
        if (bioxen_vm_interrupt(vm, &was_running) != BIOXEN_VM_STATUS_OK) {
            return 0;
        }
        if (!was_running) {
            sleep_ms(5);
        }
    }
    return was_running;
}

/*
 * Waits until the VM reports that it runs code, then a little longer so that the code is
 * well inside its loop (the VM reports "running" just before its Lua code starts).
 */
static int wait_until_running(uint64_t vm)
{
    int i;
    for (i = 0; i < 2000; i++) {
        bioxen_vm_bytes info = {NULL, 0};
        int running;
        if (bioxen_vm_info(vm, &info) != BIOXEN_VM_STATUS_OK) {
            return 0;
        }
        running = strstr(info.data, "\"running\":true") != NULL;
        bioxen_vm_bytes_free(&info);
        if (running) {
            sleep_ms(50);
            return 1;
        }
        sleep_ms(5);
    }
    return 0;
}

static void test_wait_and_status(uint64_t vm)
{
    bioxen_vm_result r1 = empty_result();
    bioxen_vm_result r2 = empty_result();
    uint64_t job = 0;

    CHECK_OK(bioxen_vm_execute_async(vm, LIT("return 6 * 7, ..."), "[\"arg\"]", 0, &job));
    CHECK(job != 0);
    CHECK_OK(bioxen_vm_job_wait(job, 0, &r1));
    CHECK(r1.success && r1.return_code == 0);
    CHECK_TEXT(r1.stdout_text, "42\targ\n");
    CHECK_TEXT(r1.values_json, "[42,\"arg\"]");
    CHECK(job_status_is(job, "done"));

    /* Waiting again gives an independent copy. */
    CHECK_OK(bioxen_vm_job_wait(job, 1, &r2));
    CHECK_TEXT(r2.stdout_text, "42\targ\n");
    CHECK(r1.stdout_text.data != r2.stdout_text.data);
    bioxen_vm_result_free(&r1);
    CHECK_TEXT(r2.values_json, "[42,\"arg\"]");
    bioxen_vm_result_free(&r2);
    CHECK_OK(bioxen_vm_job_free(job));

    /* A Lua error is a finished job with success == false. */
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("error('async boom')"), NULL, 0, &job));
    CHECK_OK(bioxen_vm_job_wait(job, 0, &r1));
    CHECK(!r1.success && r1.return_code == 1);
    CHECK_CONTAINS(r1.error_message.data, "async boom");
    CHECK(job_status_is(job, "done"));
    bioxen_vm_result_free(&r1);
    CHECK_OK(bioxen_vm_job_free(job));

    /* A wait that ends before the job does: WAIT_TIMEOUT, and the job goes on... */
    r1 = empty_result();
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("while true do end"), NULL, 10000, &job));
    CHECK_ERROR(bioxen_vm_job_wait(job, 20, &r1), BIOXEN_VM_STATUS_WAIT_TIMEOUT, "did not finish");
    CHECK(r1.stdout_text.data == NULL);
    CHECK(job_status_is(job, "running"));
    CHECK_ERROR(bioxen_vm_job_wait(job, 1, &r1), BIOXEN_VM_STATUS_WAIT_TIMEOUT, "did not finish");
    /* ...until it ends (here: interrupted), which a waiter without limit sees. */
    CHECK(interrupt_until_stopped(vm));
    CHECK_ERROR(bioxen_vm_job_wait(job, 0, &r1), BIOXEN_VM_STATUS_INTERRUPTED, "interrupted");
    CHECK(job_status_is(job, "done"));
    CHECK(r1.stdout_text.data == NULL);
    CHECK_OK(bioxen_vm_job_free(job));

    /* A slow job that ends by itself. */
    CHECK_OK(bioxen_vm_execute_async(vm, LIT(BUSY_300MS), NULL, 0, &job));
    CHECK_OK(bioxen_vm_job_wait(job, 0, &r1));
    CHECK_TEXT(r1.stdout_text, "busy done\n");
    bioxen_vm_result_free(&r1);
    CHECK_OK(bioxen_vm_job_free(job));
}

static void test_submission_order(uint64_t vm)
{
    enum { JOBS = 20 };
    uint64_t jobs[JOBS];
    bioxen_vm_result r = empty_result();
    char expected[256] = "";
    int i;

    CHECK_OK(run_lua(vm, "order = ''", &r));
    bioxen_vm_result_free(&r);
    for (i = 0; i < JOBS; i++) {
        char args[32];
        char piece[16];
        snprintf(args, sizeof args, "[%d]", i);
        snprintf(piece, sizeof piece, "%d,", i);
        strcat(expected, piece);
        jobs[i] = 0;
        CHECK_OK(bioxen_vm_execute_async(vm, LIT("order = order .. ... .. ','"), args, 0,
                                         &jobs[i]));
    }
    for (i = 0; i < JOBS; i++) {
        CHECK_OK(bioxen_vm_job_wait(jobs[i], 0, &r));
        CHECK(r.success);
        bioxen_vm_result_free(&r);
        CHECK_OK(bioxen_vm_job_free(jobs[i]));
    }
    CHECK_OK(run_lua(vm, "return order", &r));
    CHECK(r.stdout_text.len == strlen(expected) + 1 &&
          strncmp(r.stdout_text.data, expected, strlen(expected)) == 0);
    bioxen_vm_result_free(&r);
}

static void test_job_failures(uint64_t vm)
{
    bioxen_vm_result r = empty_result();
    uint64_t job = 0;
    uint64_t limited = 0;

    CHECK_OK(bioxen_vm_execute_async(vm, LIT("while true do end"), NULL, 100, &job));
    CHECK_ERROR(bioxen_vm_job_wait(job, 0, &r), BIOXEN_VM_STATUS_TIMEOUT, "timed out");
    /* The failure is the job's outcome: waiting again gives it again. */
    CHECK_ERROR(bioxen_vm_job_wait(job, 0, &r), BIOXEN_VM_STATUS_TIMEOUT, "timed out");
    CHECK(job_status_is(job, "done"));
    CHECK(r.stdout_text.data == NULL);
    CHECK_OK(bioxen_vm_job_free(job));

    CHECK_OK(bioxen_vm_new("{\"memory_limit\": 1048576}", &limited));
    CHECK_OK(bioxen_vm_execute_async(limited, LIT("local t = {} while true do t[#t + 1] = {} end"),
                                     NULL, 0, &job));
    CHECK_ERROR(bioxen_vm_job_wait(job, 0, &r), BIOXEN_VM_STATUS_MEMORY_LIMIT, "memory limit");
    CHECK_OK(bioxen_vm_job_free(job));
    CHECK_OK(run_lua(limited, "return 'usable'", &r));
    CHECK_TEXT(r.stdout_text, "usable\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(limited));
}

static void test_cancel(uint64_t vm)
{
    bioxen_vm_result r = empty_result();
    uint64_t looping = 0, queued = 0;
    bool cancelled = false;

    CHECK_OK(run_lua(vm, "before_cancel = 'kept'", &r));
    bioxen_vm_result_free(&r);
    r = empty_result();

    /* An endless job (10 s limit as a safety net), and one queued behind it. */
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("while true do end"), NULL, 10000, &looping));
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("return 'never runs'"), NULL, 0, &queued));
    CHECK(job_status_is(queued, "running")); /* the original's word for queued, too */

    /* The queued job will not run. */
    CHECK_OK(bioxen_vm_job_cancel(queued, &cancelled));
    CHECK(cancelled);
    CHECK(job_status_is(queued, "cancelled"));
    CHECK_ERROR(bioxen_vm_job_wait(queued, 0, &r), BIOXEN_VM_STATUS_CANCELLED, "cancelled");

    /* The running one is interrupted. */
    CHECK(wait_until_running(vm));
    cancelled = false;
    CHECK_OK(bioxen_vm_job_cancel(looping, &cancelled));
    CHECK(cancelled);
    CHECK_ERROR(bioxen_vm_job_wait(looping, 5000, &r), BIOXEN_VM_STATUS_CANCELLED, "cancelled");
    CHECK(job_status_is(looping, "cancelled"));
    CHECK(r.stdout_text.data == NULL);

    /* Cancelling again, or a finished job, cancels nothing. */
    cancelled = true;
    CHECK_OK(bioxen_vm_job_cancel(looping, &cancelled));
    CHECK(!cancelled);
    CHECK_OK(bioxen_vm_job_cancel(queued, &cancelled));
    CHECK(!cancelled);
    CHECK_OK(bioxen_vm_job_free(looping));
    CHECK_OK(bioxen_vm_job_free(queued));

    CHECK_OK(bioxen_vm_execute_async(vm, LIT("return 1"), NULL, 0, &looping));
    CHECK_OK(bioxen_vm_job_wait(looping, 0, &r));
    bioxen_vm_result_free(&r);
    cancelled = true;
    CHECK_OK(bioxen_vm_job_cancel(looping, &cancelled));
    CHECK(!cancelled);
    CHECK(job_status_is(looping, "done"));
    CHECK_OK(bioxen_vm_job_free(looping));

    /* The VM keeps its state after a cancellation. */
    CHECK_OK(run_lua(vm, "return before_cancel", &r));
    CHECK_TEXT(r.stdout_text, "kept\n");
    bioxen_vm_result_free(&r);
}

/* Interrupting the VM stops the job that runs; the jobs queued behind it still run. */
static void test_interrupt_running_job(uint64_t vm)
{
    bioxen_vm_result r = empty_result();
    uint64_t looping = 0, queued = 0;

    CHECK_OK(bioxen_vm_execute_async(vm, LIT("while true do end"), NULL, 10000, &looping));
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("return 'queued job ran'"), NULL, 0, &queued));
    CHECK(interrupt_until_stopped(vm));
    CHECK_ERROR(bioxen_vm_job_wait(looping, 5000, &r), BIOXEN_VM_STATUS_INTERRUPTED,
                "interrupted");
    CHECK(job_status_is(looping, "done"));
    CHECK_OK(bioxen_vm_job_wait(queued, 5000, &r));
    CHECK_TEXT(r.stdout_text, "queued job ran\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_job_free(looping));
    CHECK_OK(bioxen_vm_job_free(queued));
}

static void test_free_with_jobs_in_flight(void)
{
    bioxen_vm_result r = empty_result();
    uint64_t vm = 0, running = 0, queued = 0, orphan = 0;

    /*
     * Freeing a VM cancels its queued jobs; the running one is not interrupted: it goes on
     * to its end (here: its 1 s timeout).
     */
    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("while true do end"), NULL, 1000, &running));
    CHECK(wait_until_running(vm));
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("return 'queued'"), NULL, 0, &queued));
    CHECK_OK(bioxen_vm_free(vm));
    CHECK_ERROR(bioxen_vm_job_wait(queued, 0, &r), BIOXEN_VM_STATUS_CANCELLED, "cancelled");
    CHECK_ERROR(bioxen_vm_job_wait(running, 0, &r), BIOXEN_VM_STATUS_TIMEOUT,
                "timed out after 1 seconds");
    CHECK(r.stdout_text.data == NULL);
    CHECK_OK(bioxen_vm_job_free(running));
    CHECK_OK(bioxen_vm_job_free(queued));

    /* Freeing an unfinished job's handle: the job goes on, the VM serves the next call. */
    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("local t = os.clock() while os.clock() - t < 0.1 "
                                             "do end flag = 'set by the orphan'"),
                                     NULL, 0, &orphan));
    CHECK_OK(bioxen_vm_job_free(orphan));
    CHECK_ERROR(bioxen_vm_job_wait(orphan, 0, &r), BIOXEN_VM_STATUS_INVALID_HANDLE,
                "is not a live job handle");
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("return flag"), NULL, 0, &queued));
    CHECK_OK(bioxen_vm_job_wait(queued, 0, &r));
    CHECK_TEXT(r.stdout_text, "set by the orphan\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_job_free(queued));
    CHECK_OK(bioxen_vm_free(vm));
}

/* Several threads wait on one job; each gets its own copy of the outcome. */
struct waiter {
    uint64_t job;
    int32_t status;
    int same_text;
};

static void *wait_for_job(void *arg)
{
    struct waiter *w = arg;
    bioxen_vm_result r = empty_result();
    w->status = bioxen_vm_job_wait(w->job, 0, &r);
    w->same_text = w->status == BIOXEN_VM_STATUS_OK && r.stdout_text.len == 10 &&
                   memcmp(r.stdout_text.data, "busy done\n", 10) == 0;
    bioxen_vm_result_free(&r);
    return NULL;
}

static void test_many_waiters(uint64_t vm)
{
    enum { WAITERS = 6 };
    pthread_t threads[WAITERS];
    struct waiter waiters[WAITERS];
    uint64_t job = 0;
    int i;

    CHECK_OK(bioxen_vm_execute_async(vm, LIT(BUSY_300MS), NULL, 0, &job));
    for (i = 0; i < WAITERS; i++) {
        waiters[i].job = job;
        waiters[i].status = -1;
        waiters[i].same_text = 0;
        CHECK(pthread_create(&threads[i], NULL, wait_for_job, &waiters[i]) == 0);
    }
    for (i = 0; i < WAITERS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(waiters[i].status == BIOXEN_VM_STATUS_OK);
        CHECK(waiters[i].same_text);
    }
    CHECK_OK(bioxen_vm_job_free(job));
}

/* Jobs on different VMs run in parallel on the worker pool. */
static void test_many_vms(void)
{
    enum { VMS = 8, PER_VM = 5 };
    uint64_t vms[VMS];
    uint64_t jobs[VMS][PER_VM];
    bioxen_vm_result r = empty_result();
    int i, j;

    for (i = 0; i < VMS; i++) {
        char code[64];
        vms[i] = 0;
        CHECK_OK(bioxen_vm_new(NULL, &vms[i]));
        snprintf(code, sizeof code, "id = %d n = 0", i);
        CHECK_OK(run_lua(vms[i], code, &r));
        bioxen_vm_result_free(&r);
    }
    for (j = 0; j < PER_VM; j++) {
        for (i = 0; i < VMS; i++) {
            jobs[i][j] = 0;
            CHECK_OK(bioxen_vm_execute_async(vms[i], LIT("n = n + 1 return id, n"), NULL, 0,
                                             &jobs[i][j]));
        }
    }
    for (i = 0; i < VMS; i++) {
        for (j = 0; j < PER_VM; j++) {
            char expected[32];
            snprintf(expected, sizeof expected, "%d\t%d\n", i, j + 1);
            CHECK_OK(bioxen_vm_job_wait(jobs[i][j], 0, &r));
            CHECK_TEXT(r.stdout_text, expected);
            bioxen_vm_result_free(&r);
            CHECK_OK(bioxen_vm_job_free(jobs[i][j]));
        }
        CHECK_OK(bioxen_vm_free(vms[i]));
    }
}

/* What one completion callback saw. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    int32_t status;
    uint64_t job;
    int32_t wait_status;
    char stdout_copy[64];
    pthread_t thread;
} done_record;

static void on_done(uint64_t job, int32_t status, void *user_data)
{
    done_record *d = (done_record *)user_data;
    bioxen_vm_result r = {0};
    int32_t ws = bioxen_vm_job_wait(job, 0, &r);
    pthread_mutex_lock(&d->lock);
    d->calls++;
    d->status = status;
    d->job = job;
    d->wait_status = ws;
    d->thread = pthread_self();
    if (ws == BIOXEN_VM_STATUS_OK && r.stdout_text.data != NULL) {
        snprintf(d->stdout_copy, sizeof d->stdout_copy, "%s", r.stdout_text.data);
    }
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    bioxen_vm_result_free(&r);
}

static void done_init(done_record *d)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
}

static void done_destroy(done_record *d)
{
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
}

/* Waits (bounded: 10 s) until the callback ran; returns how often it ran. */
static int done_wait(done_record *d)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&d->lock);
    while (d->calls == 0) {
        if (pthread_cond_timedwait(&d->cond, &d->lock, &until) != 0) {
            break;
        }
    }
    int calls = d->calls;
    pthread_mutex_unlock(&d->lock);
    return calls;
}

static void test_on_done(uint64_t vm)
{
    done_record d;
    uint64_t job = 0;

    /* A job that runs: the callback comes on a worker thread, once, and may wait. */
    done_init(&d);
    CHECK_OK(bioxen_vm_execute_async(vm, LIT(BUSY_300MS), NULL, 0, &job));
    CHECK_OK(bioxen_vm_job_on_done(job, on_done, &d));
    CHECK(done_wait(&d) == 1);
    CHECK(d.status == BIOXEN_VM_STATUS_OK && d.job == job);
    CHECK(d.wait_status == BIOXEN_VM_STATUS_OK);
    CHECK(strcmp(d.stdout_copy, "busy done\n") == 0);
    CHECK(!pthread_equal(d.thread, pthread_self()));
    /* Registered after it finished: called at once, on this thread. */
    done_destroy(&d);
    done_init(&d);
    CHECK_OK(bioxen_vm_job_on_done(job, on_done, &d));
    CHECK(d.calls == 1 && d.status == BIOXEN_VM_STATUS_OK);
    CHECK(pthread_equal(d.thread, pthread_self()));
    CHECK_OK(bioxen_vm_job_free(job));
    done_destroy(&d);

    /* A failing job reports its status; freeing the handle first keeps the callback. */
    done_init(&d);
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("local t = os.clock() while os.clock() - t < 0.1 do end while true do end"), NULL, 300, &job));
    CHECK_OK(bioxen_vm_job_on_done(job, on_done, &d));
    CHECK_OK(bioxen_vm_job_free(job));
    CHECK(done_wait(&d) == 1);
    CHECK(d.status == BIOXEN_VM_STATUS_TIMEOUT);
    CHECK(d.wait_status == BIOXEN_VM_STATUS_INVALID_HANDLE);
    done_destroy(&d);

    /* A queued job that is cancelled: called on the cancelling thread with CANCELLED. */
    done_record first, second;
    uint64_t blocker = 0;
    done_init(&first);
    done_init(&second);
    CHECK_OK(bioxen_vm_execute_async(vm, LIT(BUSY_300MS), NULL, 0, &blocker));
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("return 1"), NULL, 0, &job));
    CHECK_OK(bioxen_vm_job_on_done(job, on_done, &first));
    CHECK_OK(bioxen_vm_job_on_done(job, on_done, &second));
    CHECK_OK(bioxen_vm_job_cancel(job, NULL));
    CHECK(first.calls == 1 && second.calls == 1);
    CHECK(first.status == BIOXEN_VM_STATUS_CANCELLED);
    CHECK(first.wait_status == BIOXEN_VM_STATUS_CANCELLED);
    CHECK(pthread_equal(first.thread, pthread_self()));
    CHECK_OK(bioxen_vm_job_cancel(job, NULL));
    CHECK(first.calls == 1);
    CHECK_OK(bioxen_vm_job_free(job));
    bioxen_vm_result br = {0};
    CHECK_OK(bioxen_vm_job_wait(blocker, 0, &br));
    CHECK_TEXT(br.stdout_text, "busy done\n");
    bioxen_vm_result_free(&br);
    CHECK_OK(bioxen_vm_job_free(blocker));
    done_destroy(&first);
    done_destroy(&second);

    /* Bad input. */
    CHECK_ERROR(bioxen_vm_job_on_done(job, on_done, NULL), BIOXEN_VM_STATUS_INVALID_HANDLE, "");
    CHECK_ERROR(bioxen_vm_job_on_done(0, on_done, NULL), BIOXEN_VM_STATUS_INVALID_HANDLE, "");
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("return 1"), NULL, 0, &job));
    CHECK_ERROR(bioxen_vm_job_on_done(job, NULL, NULL), BIOXEN_VM_STATUS_NULL_POINTER, "callback");
    CHECK_OK(bioxen_vm_job_free(job));
}

int main(void)
{
    uint64_t vm = 0;
    CHECK_OK(bioxen_vm_new(NULL, &vm));
    test_wait_and_status(vm);
    test_submission_order(vm);
    test_job_failures(vm);
    test_cancel(vm);
    test_many_waiters(vm);
    test_interrupt_running_job(vm);
    test_free_with_jobs_in_flight();
    test_many_vms();
    test_on_done(vm);
    CHECK_OK(bioxen_vm_free(vm));
    return check_summary();
}
