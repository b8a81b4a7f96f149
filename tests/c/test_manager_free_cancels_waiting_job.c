/*
 * Regression test: bioxen_vm_manager_free() interrupts code running on the manager's VMs,
 * cancels queued jobs, and also cancels a job that a worker has taken and that waits for
 * its VM (held by a synchronous call): after the free returns, that job has ended
 * (INTERRUPTED or CANCELLED) instead of running on.
 */
#include "check.h"

#include <stdbool.h>

struct runner {
    uint64_t manager;
    int32_t status;
};

static void *hold_vm(void *arg)
{
    struct runner *run = arg;
    bioxen_vm_result r = empty_result();
    run->status = bioxen_vm_manager_execute(run->manager, "a", LIT("while true do end"), NULL,
                                            0, &r);
    bioxen_vm_result_free(&r);
    return NULL;
}

int main(void)
{
    struct runner run;
    pthread_t thread;
    bioxen_vm_result r = empty_result();
    uint64_t m = 0, job = 0;
    int tries;
    int32_t s;

    CHECK_OK(bioxen_vm_manager_new(NULL, &m));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "a", NULL));
    run.manager = m;
    run.status = -1;
    CHECK(pthread_create(&thread, NULL, hold_vm, &run) == 0);
    /* Make sure the synchronous call runs Lua (an interrupt would stop it; so poll info). */
    for (tries = 0; tries < 2000; tries++) {
        bioxen_vm_bytes info = {NULL, 0};
        int running = 0;
        if (bioxen_vm_manager_vm_info(m, "a", &info) == BIOXEN_VM_STATUS_OK) {
            running = strstr(info.data, "\"running\":true") != NULL;
            bioxen_vm_bytes_free(&info);
        }
        if (running) {
            break;
        }
        sleep_ms(5);
    }
    sleep_ms(100);
    CHECK_OK(bioxen_vm_manager_execute_async(m, "a", LIT("while true do end"), NULL, 0, &job));
    sleep_ms(100); /* a worker has taken the job and waits for the VM */

    CHECK_OK(bioxen_vm_manager_free(m));
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(run.status == BIOXEN_VM_STATUS_INTERRUPTED);

    s = bioxen_vm_job_wait(job, 2000, &r);
    CHECK(s == BIOXEN_VM_STATUS_INTERRUPTED || s == BIOXEN_VM_STATUS_CANCELLED);
    if (s == BIOXEN_VM_STATUS_WAIT_TIMEOUT) {
        /* The bug: the job still runs on a VM that nothing can reach any more. */
        printf("the job still runs after bioxen_vm_manager_free; cancelling it\n");
        CHECK_OK(bioxen_vm_job_cancel(job, NULL));
        s = bioxen_vm_job_wait(job, 5000, &r);
        printf("after cancel: %s\n", bioxen_vm_status_name(s));
    }
    if (s == BIOXEN_VM_STATUS_OK) {
        bioxen_vm_result_free(&r);
    }
    CHECK_OK(bioxen_vm_job_free(job));
    return check_summary();
}
