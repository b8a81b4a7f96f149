/*
 * async.c: asynchronous executions (jobs) on several VMs.
 *
 * Queues work on three VMs at once and waits for each job; cancels a job while it runs an
 * endless loop; lets a job run into its timeout; and shows that waiting with a limit
 * (WAIT_TIMEOUT) leaves the job running.
 * Exit status: 0 when every step behaved as expected, 1 otherwise.
 *
 * Build from the project root after `cargo build --release`:
 *   cc -std=c99 -Iinclude examples/c/async.c -Ltarget/release -lbioxen_vm \
 *      -Wl,-rpath,"$PWD/target/release" -o async
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bioxen_vm.h"

#define VMS 3

static int failures = 0;

static void fail(const char *what, int32_t status)
{
    const char *message = bioxen_vm_last_error_message();
    fprintf(stderr, "async: %s: %s: %s\n", what, bioxen_vm_status_name(status),
            status != BIOXEN_VM_STATUS_OK && message != NULL ? message : "unexpected outcome");
    failures++;
}

static void sleep_ms(long ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

static const char *job_status(uint64_t job)
{
    const char *status = "?";
    int32_t s = bioxen_vm_job_status(job, &status);
    if (s != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_job_status", s);
    }
    return status;
}

/* Waits (up to about 10 s) until the VM reports that it is running code. */
static int wait_until_running(uint64_t vm)
{
    int i;
    for (i = 0; i < 1000; i++) {
        bioxen_vm_bytes info = {NULL, 0};
        int running;
        int32_t s = bioxen_vm_info(vm, &info);
        if (s != BIOXEN_VM_STATUS_OK) {
            fail("bioxen_vm_info", s);
            return 0;
        }
        running = strstr(info.data, "\"running\":true") != NULL;
        bioxen_vm_bytes_free(&info);
        if (running) {
            return 1;
        }
        sleep_ms(10);
    }
    return 0;
}

/* Several VMs, one job each: they run in parallel on the library's worker threads. */
static void parallel_jobs(const uint64_t *vms)
{
    const char *code = "local n = ... local sum = 0 for i = 1, n do sum = sum + i end "
                       "return sum";
    uint64_t jobs[VMS];
    int i;

    printf("-- one job per VM\n");
    for (i = 0; i < VMS; i++) {
        char args[32];
        int32_t s;
        snprintf(args, sizeof args, "[%d]", (i + 1) * 1000000);
        jobs[i] = 0;
        s = bioxen_vm_execute_async(vms[i], code, strlen(code), args, 0, &jobs[i]);
        if (s != BIOXEN_VM_STATUS_OK) {
            fail("bioxen_vm_execute_async", s);
        }
    }
    for (i = 0; i < VMS; i++) {
        bioxen_vm_result result;
        char expected[64];
        long long n = (long long)(i + 1) * 1000000;
        int32_t s;
        if (jobs[i] == 0) {
            continue;
        }
        memset(&result, 0, sizeof result);
        s = bioxen_vm_job_wait(jobs[i], 0 /* no limit */, &result);
        if (s != BIOXEN_VM_STATUS_OK) {
            fail("bioxen_vm_job_wait", s);
        } else {
            snprintf(expected, sizeof expected, "%lld\n", n * (n + 1) / 2);
            printf("VM %d: sum of 1..%lld = %s", i, n, result.stdout_text.data);
            printf("      job status \"%s\", ran for %.1f ms\n", job_status(jobs[i]),
                   (double)result.duration_ns / 1e6);
            if (!result.success || strcmp(result.stdout_text.data, expected) != 0) {
                fail("unexpected job result", s);
            }
            bioxen_vm_result_free(&result);
        }
        s = bioxen_vm_job_free(jobs[i]);
        if (s != BIOXEN_VM_STATUS_OK) {
            fail("bioxen_vm_job_free", s);
        }
    }
}

/* A job stuck in an endless loop, cancelled while it runs. */
static void cancel_running_job(uint64_t vm)
{
    const char *loop = "while true do end";
    bioxen_vm_result result;
    uint64_t job = 0;
    bool cancelled = false;
    int32_t s;

    printf("\n-- cancelling a running job\n");
    memset(&result, 0, sizeof result);
    /* A 10 s timeout is the safety net should the cancel not reach the loop. */
    s = bioxen_vm_execute_async(vm, loop, strlen(loop), NULL, 10000, &job);
    if (s != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_execute_async", s);
        return;
    }
    if (!wait_until_running(vm)) {
        fail("the endless job did not start", BIOXEN_VM_STATUS_OK);
    }
    sleep_ms(100); /* let it spin for a moment */
    printf("job status before cancel: \"%s\"\n", job_status(job));

    s = bioxen_vm_job_cancel(job, &cancelled);
    if (s != BIOXEN_VM_STATUS_OK || !cancelled) {
        fail("bioxen_vm_job_cancel", s);
    }
    s = bioxen_vm_job_wait(job, 0, &result);
    /* The message belongs to this thread's last call: print it before the next call. */
    printf("wait after cancel: %s (%s)\n", bioxen_vm_status_name(s),
           s != BIOXEN_VM_STATUS_OK ? bioxen_vm_last_error_message() : "");
    printf("job status after cancel: \"%s\"\n", job_status(job));
    if (s != BIOXEN_VM_STATUS_CANCELLED) {
        bioxen_vm_result_free(&result);
        fail("expected CANCELLED", s);
    }
    s = bioxen_vm_job_free(job);
    if (s != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_job_free", s);
    }
}

/* A job with its own time limit. */
static void job_timeout(uint64_t vm)
{
    const char *loop = "while true do end";
    bioxen_vm_result result;
    uint64_t job = 0;
    int32_t s;

    printf("\n-- a job that runs into its 200 ms timeout\n");
    memset(&result, 0, sizeof result);
    s = bioxen_vm_execute_async(vm, loop, strlen(loop), NULL, 200, &job);
    if (s != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_execute_async", s);
        return;
    }
    s = bioxen_vm_job_wait(job, 0, &result);
    printf("wait: %s (%s)\n", bioxen_vm_status_name(s),
           s != BIOXEN_VM_STATUS_OK ? bioxen_vm_last_error_message() : "");
    if (s != BIOXEN_VM_STATUS_TIMEOUT) {
        bioxen_vm_result_free(&result);
        fail("expected TIMEOUT", s);
    }
    s = bioxen_vm_job_free(job);
    if (s != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_job_free", s);
    }
}

/* Waiting with a limit: WAIT_TIMEOUT means "not yet", and the job goes on. */
static void wait_with_limit(uint64_t vm)
{
    const char *slow = "local t = os.clock() while os.clock() - t < 0.3 do end return 'slow done'";
    bioxen_vm_result result;
    uint64_t job = 0;
    int32_t s;

    printf("\n-- waiting with a limit\n");
    memset(&result, 0, sizeof result);
    s = bioxen_vm_execute_async(vm, slow, strlen(slow), NULL, 0, &job);
    if (s != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_execute_async", s);
        return;
    }
    s = bioxen_vm_job_wait(job, 10, &result);
    printf("wait 10 ms: %s; job status \"%s\"\n", bioxen_vm_status_name(s), job_status(job));
    if (s != BIOXEN_VM_STATUS_WAIT_TIMEOUT) {
        bioxen_vm_result_free(&result);
        fail("expected WAIT_TIMEOUT", s);
    }
    s = bioxen_vm_job_wait(job, 0, &result);
    if (s != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_job_wait", s);
    } else {
        printf("wait without limit: %s", result.stdout_text.data);
        if (strcmp(result.stdout_text.data, "slow done\n") != 0) {
            fail("unexpected output", s);
        }
        bioxen_vm_result_free(&result);
    }
    s = bioxen_vm_job_free(job);
    if (s != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_job_free", s);
    }
}

int main(void)
{
    uint64_t vms[VMS] = {0, 0, 0};
    bioxen_vm_result result;
    int i;
    int32_t s;

    for (i = 0; i < VMS; i++) {
        s = bioxen_vm_new(NULL, &vms[i]);
        if (s != BIOXEN_VM_STATUS_OK) {
            fail("bioxen_vm_new", s);
            goto done;
        }
    }

    parallel_jobs(vms);
    cancel_running_job(vms[0]);
    job_timeout(vms[1]);
    wait_with_limit(vms[2]);

    /* After a cancel and a timeout, the VMs still work (and keep their globals). */
    printf("\n-- the VMs are still usable\n");
    memset(&result, 0, sizeof result);
    for (i = 0; i < VMS; i++) {
        const char *code = "return 'VM ok'";
        s = bioxen_vm_execute(vms[i], code, strlen(code), NULL, 0, &result);
        if (s != BIOXEN_VM_STATUS_OK || !result.success) {
            fail("bioxen_vm_execute", s);
        } else {
            printf("VM %d: %s", i, result.stdout_text.data);
        }
        bioxen_vm_result_free(&result);
    }

done:
    for (i = 0; i < VMS; i++) {
        s = bioxen_vm_free(vms[i]); /* 0 (never created) is a no-op */
        if (s != BIOXEN_VM_STATUS_OK) {
            fail("bioxen_vm_free", s);
        }
    }
    if (failures > 0) {
        fprintf(stderr, "async: %d step(s) FAILED\n", failures);
        return 1;
    }
    printf("\nasync: every step behaved as expected\n");
    return 0;
}
