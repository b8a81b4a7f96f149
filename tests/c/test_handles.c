/*
 * Handles: 0, made-up numbers, stale (freed), double-freed and wrong-kind handles give
 * INVALID_HANDLE from every function that takes a handle, never a crash, and leave the
 * object they name (if any) alive. Handles are never reused.
 */
#include "check.h"

#include <stdbool.h>

#define SENTINEL UINT64_C(0x5EEDF00D)
#define CODE "return 1"
#define CODE_LEN (sizeof CODE - 1)
#define KIND_VM (UINT64_C(1) << 56)
#define KIND_MANAGER (UINT64_C(2) << 56)
#define KIND_JOB (UINT64_C(3) << 56)

/* Every function that takes a VM handle refuses `h`. Freeing is tried only if asked. */
static void expect_not_vm(uint64_t h, bool try_free)
{
    bioxen_vm_result r = empty_result();
    bioxen_vm_bytes b = {NULL, 0};
    uint64_t out = SENTINEL;
    bool flag = true;

    CHECK_ERROR(bioxen_vm_execute(h, CODE, CODE_LEN, NULL, 0, &r),
                BIOXEN_VM_STATUS_INVALID_HANDLE, "is not a live VM handle");
    CHECK_ERROR(bioxen_vm_execute_async(h, CODE, CODE_LEN, NULL, 0, &out),
                BIOXEN_VM_STATUS_INVALID_HANDLE, "is not a live VM handle");
    CHECK_ERROR(bioxen_vm_interrupt(h, &flag), BIOXEN_VM_STATUS_INVALID_HANDLE,
                "is not a live VM handle");
    CHECK_ERROR(bioxen_vm_interrupt(h, NULL), BIOXEN_VM_STATUS_INVALID_HANDLE,
                "is not a live VM handle");
    CHECK_ERROR(bioxen_vm_info(h, &b), BIOXEN_VM_STATUS_INVALID_HANDLE,
                "is not a live VM handle");
    if (try_free) {
        CHECK_ERROR(bioxen_vm_free(h), BIOXEN_VM_STATUS_INVALID_HANDLE,
                    "is not a live VM handle");
    }
    CHECK(r.stdout_text.data == NULL && out == SENTINEL && flag && b.data == NULL);
}

static void expect_not_manager(uint64_t h, bool try_free)
{
    bioxen_vm_result r = empty_result();
    bioxen_vm_bytes b = {NULL, 0};
    uint64_t out = SENTINEL;
    bool flag = true;
    const char *m = "is not a live manager handle";

    CHECK_ERROR(bioxen_vm_manager_create_vm(h, "x", NULL), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_manager_remove_vm(h, "x"), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_manager_execute(h, "x", CODE, CODE_LEN, NULL, 0, &r),
                BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_manager_execute_async(h, "x", CODE, CODE_LEN, NULL, 0, &out),
                BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_manager_interrupt(h, "x", &flag), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_manager_vm_info(h, "x", &b), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_manager_list_vms(h, &b), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_manager_stats(h, &b), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    if (try_free) {
        CHECK_ERROR(bioxen_vm_manager_free(h), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    }
    CHECK(r.stdout_text.data == NULL && out == SENTINEL && flag && b.data == NULL);
}

static void expect_not_job(uint64_t h, bool try_free)
{
    bioxen_vm_result r = empty_result();
    const char *status = "sentinel";
    bool flag = true;
    const char *m = "is not a live job handle";

    CHECK_ERROR(bioxen_vm_job_wait(h, 0, &r), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_job_wait(h, 1, &r), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_job_status(h, &status), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_job_cancel(h, &flag), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    CHECK_ERROR(bioxen_vm_job_cancel(h, NULL), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    if (try_free) {
        CHECK_ERROR(bioxen_vm_job_free(h), BIOXEN_VM_STATUS_INVALID_HANDLE, m);
    }
    CHECK(r.stdout_text.data == NULL && strcmp(status, "sentinel") == 0 && flag);
}

static void expect_nothing(uint64_t h)
{
    expect_not_vm(h, true);
    expect_not_manager(h, true);
    expect_not_job(h, true);
}

/* The VM still runs code (a wrong-kind call did not free or break it). */
static void expect_vm_alive(uint64_t vm)
{
    bioxen_vm_result r = empty_result();
    CHECK_OK(bioxen_vm_execute(vm, CODE, CODE_LEN, NULL, 0, &r));
    CHECK_TEXT(r.stdout_text, "1\n");
    bioxen_vm_result_free(&r);
}

static void test_made_up_handles(void)
{
    static const uint64_t made_up[] = {
        1, 2, 3, 0xdeadbeef, UINT64_MAX, UINT64_MAX - 1,
        KIND_VM | UINT64_C(0xffffffffffff), KIND_MANAGER | UINT64_C(0xffffffffffff),
        KIND_JOB | UINT64_C(0xffffffffffff), KIND_VM, KIND_MANAGER, KIND_JOB,
        UINT64_C(4) << 56 | 1, UINT64_C(0xff) << 56 | 1,
    };
    size_t i;
    /* 0: every function refuses it, except the `_free` functions, which ignore it. */
    expect_not_vm(0, false);
    expect_not_manager(0, false);
    expect_not_job(0, false);
    CHECK_OK(bioxen_vm_free(0));
    CHECK_OK(bioxen_vm_manager_free(0));
    CHECK_OK(bioxen_vm_job_free(0));
    for (i = 0; i < sizeof made_up / sizeof made_up[0]; i++) {
        expect_nothing(made_up[i]);
    }
}

static void test_stale_and_double_free(void)
{
    uint64_t vm = 0, vm2 = 0, manager = 0, job = 0;
    bioxen_vm_result r = empty_result();

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK(vm != 0);
    CHECK_OK(bioxen_vm_free(vm));
    expect_nothing(vm);
    CHECK_ERROR(bioxen_vm_free(vm), BIOXEN_VM_STATUS_INVALID_HANDLE, "is not a live VM handle");

    /* Handles are never reused. */
    CHECK_OK(bioxen_vm_new(NULL, &vm2));
    CHECK(vm2 != vm);
    expect_not_vm(vm, true);
    expect_vm_alive(vm2);
    CHECK_OK(bioxen_vm_free(vm2));

    CHECK_OK(bioxen_vm_manager_new(NULL, &manager));
    CHECK(manager != 0);
    CHECK_OK(bioxen_vm_manager_free(manager));
    expect_nothing(manager);

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(bioxen_vm_execute_async(vm, CODE, CODE_LEN, NULL, 0, &job));
    CHECK(job != 0);
    CHECK_OK(bioxen_vm_job_wait(job, 0, &r));
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_job_free(job));
    expect_nothing(job);
    CHECK_OK(bioxen_vm_free(vm));
}

static void test_wrong_kinds(void)
{
    uint64_t vm = 0, manager = 0, job = 0;
    bioxen_vm_result r = empty_result();
    const char *status = NULL;

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(bioxen_vm_manager_new(NULL, &manager));
    CHECK_OK(bioxen_vm_manager_create_vm(manager, "x", NULL));
    CHECK_OK(bioxen_vm_execute_async(vm, CODE, CODE_LEN, NULL, 0, &job));
    CHECK_OK(bioxen_vm_job_wait(job, 0, &r));
    bioxen_vm_result_free(&r);

    /* Three live handles, three kinds: each is refused where another kind is expected. */
    CHECK(vm != manager && manager != job && vm != job);
    expect_not_manager(vm, true);
    expect_not_job(vm, true);
    expect_not_vm(manager, true);
    expect_not_job(manager, true);
    expect_not_vm(job, true);
    expect_not_manager(job, true);

    /* None of them was freed or broken by the wrong-kind calls. */
    expect_vm_alive(vm);
    CHECK_OK(bioxen_vm_manager_execute(manager, "x", CODE, CODE_LEN, NULL, 0, &r));
    CHECK_TEXT(r.stdout_text, "1\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_job_status(job, &status));
    CHECK(status != NULL && strcmp(status, "done") == 0);

    CHECK_OK(bioxen_vm_job_free(job));
    CHECK_OK(bioxen_vm_manager_free(manager));
    CHECK_OK(bioxen_vm_free(vm));
    expect_nothing(vm);
    expect_nothing(manager);
    expect_nothing(job);
}

/* A job handle outlives its VM and its manager: it keeps the outcome until freed. */
static void test_jobs_outlive_owners(void)
{
    uint64_t vm = 0, manager = 0, job1 = 0, job2 = 0;
    bioxen_vm_result r = empty_result();
    const char *status = NULL;

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(bioxen_vm_execute_async(vm, LIT("return 'standalone'"), NULL, 0, &job1));
    CHECK_OK(bioxen_vm_job_wait(job1, 0, &r));
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));

    CHECK_OK(bioxen_vm_manager_new(NULL, &manager));
    CHECK_OK(bioxen_vm_manager_create_vm(manager, "m", NULL));
    CHECK_OK(bioxen_vm_manager_execute_async(manager, "m", LIT("return 'managed'"), NULL, 0,
                                             &job2));
    CHECK_OK(bioxen_vm_job_wait(job2, 0, &r));
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_manager_free(manager));

    CHECK_OK(bioxen_vm_job_status(job1, &status));
    CHECK(status != NULL && strcmp(status, "done") == 0);
    CHECK_OK(bioxen_vm_job_wait(job1, 0, &r));
    CHECK_TEXT(r.stdout_text, "standalone\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_job_wait(job2, 0, &r));
    CHECK_TEXT(r.stdout_text, "managed\n");
    bioxen_vm_result_free(&r);

    CHECK_OK(bioxen_vm_job_free(job1));
    CHECK_OK(bioxen_vm_job_free(job2));
    CHECK_ERROR(bioxen_vm_job_free(job1), BIOXEN_VM_STATUS_INVALID_HANDLE,
                "is not a live job handle");
    CHECK_ERROR(bioxen_vm_job_free(job2), BIOXEN_VM_STATUS_INVALID_HANDLE,
                "is not a live job handle");
}

int main(void)
{
    test_made_up_handles();
    test_stale_and_double_free();
    test_wrong_kinds();
    test_jobs_outlive_owners();
    return check_summary();
}
