/*
 * Regression test: bioxen_vm_job_cancel() on a job that a worker has taken but whose Lua
 * code has not started yet (the job waits for its VM, or is between being taken and
 * entering Lua) must end the job with CANCELLED; the job must not run afterwards.
 */
#include "check.h"

#include <stdbool.h>

struct runner {
    uint64_t vm;
    int32_t status;
};

/* Holds the VM for about 0.5 s with a synchronous call. */
static void *hold_vm(void *arg)
{
    struct runner *run = arg;
    bioxen_vm_result r = empty_result();
    run->status = run_lua(run->vm, "local t = os.clock() while os.clock() - t < 0.5 do end", &r);
    bioxen_vm_result_free(&r);
    return NULL;
}

/* Case 1: the job waits for a VM that a synchronous call holds. */
static void cancel_while_waiting_for_the_vm(void)
{
    struct runner run;
    pthread_t thread;
    bioxen_vm_result r = empty_result();
    uint64_t vm = 0, job = 0;
    bool cancelled = false;
    int32_t s;

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    run.vm = vm;
    run.status = -1;
    CHECK(pthread_create(&thread, NULL, hold_vm, &run) == 0);
    sleep_ms(100); /* the synchronous call holds the VM */
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("while true do end"), NULL, 0, &job));
    sleep_ms(100); /* a worker has taken the job and waits for the VM */
    CHECK_OK(bioxen_vm_job_cancel(job, &cancelled));
    CHECK(cancelled);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(run.status == BIOXEN_VM_STATUS_OK);

    s = bioxen_vm_job_wait(job, 2000, &r);
    CHECK_STATUS(s, BIOXEN_VM_STATUS_CANCELLED); /* the bug: WAIT_TIMEOUT, still looping */
    if (s == BIOXEN_VM_STATUS_WAIT_TIMEOUT) {
        bool was_running = false;
        CHECK_OK(bioxen_vm_interrupt(vm, &was_running)); /* stop the runaway job */
        CHECK(!was_running);                            /* the bug: it was running */
        s = bioxen_vm_job_wait(job, 0, &r);
    }
    if (s == BIOXEN_VM_STATUS_OK) {
        bioxen_vm_result_free(&r);
    }
    CHECK_OK(bioxen_vm_job_free(job));
    CHECK_OK(bioxen_vm_free(vm));
}

/* Case 2: cancel right after submitting; sometimes the cancel falls in the window. */
static void cancel_right_after_submit(void)
{
    enum { ROUNDS = 300 };
    bioxen_vm_result r = empty_result();
    uint64_t vm = 0;
    int i, lost = 0;

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    for (i = 0; i < ROUNDS; i++) {
        uint64_t job = 0;
        bool cancelled = false;
        int32_t s;
        volatile int spin;
        if (bioxen_vm_execute_async(vm, LIT("while true do end"), NULL, 0, &job) != 0) {
            break;
        }
        for (spin = 0; spin < (i % 50) * 100; spin++) {
        }
        if (bioxen_vm_job_cancel(job, &cancelled) != 0) {
            break;
        }
        s = bioxen_vm_job_wait(job, 500, &r);
        if (cancelled && s == BIOXEN_VM_STATUS_WAIT_TIMEOUT) {
            lost++;
            bioxen_vm_interrupt(vm, NULL);
            s = bioxen_vm_job_wait(job, 0, &r);
        }
        if (s == BIOXEN_VM_STATUS_OK) {
            bioxen_vm_result_free(&r);
        }
        bioxen_vm_job_free(job);
    }
    printf("cancel right after submit: %d of %d cancels reported true but did not stop the "
           "job\n",
           lost, ROUNDS);
    CHECK(lost == 0);
    CHECK_OK(bioxen_vm_free(vm));
}

int main(void)
{
    cancel_while_waiting_for_the_vm();
    cancel_right_after_submit();
    return check_summary();
}
