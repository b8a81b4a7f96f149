/*
 * Per-VM job tracking (wait_for_vm, cancel_vm, vm_status), clusters and broadcasts,
 * shutdown_all and list_persistent_vms over the C ABI, with NULL pointers and bad input.
 */
#include "check.h"

#include <stdbool.h>
#include <stdlib.h>

/* Frees every job handle of a {"id": handle, ...} object. */
static void free_jobs(const char *json)
{
    const char *p = json;
    while ((p = strchr(p, ':')) != NULL) {
        p++;
        CHECK_OK(bioxen_vm_job_free(strtoull(p, NULL, 10)));
    }
}

static void test_job_tracking(uint64_t m)
{
    uint64_t j1 = 0, j2 = 0, spin = 0;
    bioxen_vm_result r = empty_result();
    const char *status = NULL;
    bool cancelled = false;

    CHECK_OK(bioxen_vm_manager_create_vm(m, "v", NULL));
    CHECK_OK(bioxen_vm_manager_vm_status(m, "v", &status));
    CHECK(strcmp(status, "idle") == 0);
    CHECK_ERROR(bioxen_vm_manager_wait_for_vm(m, "v", 0, &r), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "No running operation found for VM 'v'");
    CHECK_OK(bioxen_vm_manager_execute_async(m, "v", LIT("return 1"), NULL, 0, &j1));
    CHECK_OK(bioxen_vm_manager_execute_async(m, "v", LIT("return 2"), NULL, 0, &j2));
    CHECK_OK(bioxen_vm_manager_wait_for_vm(m, "v", 5000, &r));
    CHECK_TEXT(r.values_json, "[2]");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_manager_vm_status(m, "v", &status));
    CHECK(strcmp(status, "done") == 0);

    CHECK_OK(bioxen_vm_manager_execute_async(m, "v", LIT("while true do end"), NULL, 0, &spin));
    CHECK_OK(bioxen_vm_manager_vm_status(m, "v", &status));
    CHECK(strcmp(status, "running") == 0);
    CHECK_OK(bioxen_vm_manager_cancel_vm(m, "v", &cancelled));
    CHECK(cancelled);
    CHECK_ERROR(bioxen_vm_job_wait(spin, 5000, &r), BIOXEN_VM_STATUS_CANCELLED, "cancelled");
    CHECK_OK(bioxen_vm_manager_vm_status(m, "v", &status));
    CHECK(strcmp(status, "cancelled") == 0);
    CHECK_OK(bioxen_vm_job_free(j1));
    CHECK_OK(bioxen_vm_job_free(j2));
    CHECK_OK(bioxen_vm_job_free(spin));

    CHECK_STATUS(bioxen_vm_manager_wait_for_vm(m, "v", 0, NULL), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_cancel_vm(m, NULL, NULL), BIOXEN_VM_STATUS_NULL_POINTER);
    CHECK_STATUS(bioxen_vm_manager_vm_status(m, "v", NULL), BIOXEN_VM_STATUS_NULL_POINTER);
}

static void test_clusters(uint64_t m)
{
    bioxen_vm_bytes ids = {NULL, 0}, jobs = {NULL, 0}, results = {NULL, 0}, status = {NULL, 0};
    size_t removed = 0;

    CHECK_OK(bioxen_vm_manager_create_cluster(m, "c", 3, NULL, &ids));
    CHECK_TEXT(ids, "[\"c_000\",\"c_001\",\"c_002\"]");
    bioxen_vm_bytes_free(&ids);
    CHECK_ERROR(bioxen_vm_manager_create_cluster(m, "c", 2, NULL, &ids),
                BIOXEN_VM_STATUS_VM_ALREADY_EXISTS, "VM with ID 'c_000' already exists");
    CHECK_STATUS(bioxen_vm_manager_create_cluster(m, "z", 0, NULL, &ids),
                 BIOXEN_VM_STATUS_INVALID_ARGUMENT);

    CHECK_OK(bioxen_vm_manager_broadcast(m, "c_00[01]", LIT("return (...) + 1"), "[41]", 0, &jobs));
    CHECK_CONTAINS(jobs.data, "\"c_000\":");
    CHECK_CONTAINS(jobs.data, "\"c_001\":");
    CHECK_OK(bioxen_vm_wait_for_cluster(jobs.data, 5000, &results));
    CHECK_CONTAINS(results.data, "\"values\":[42]");
    bioxen_vm_bytes_free(&results);
    free_jobs(jobs.data);
    bioxen_vm_bytes_free(&jobs);
    CHECK_ERROR(bioxen_vm_manager_broadcast(m, "q*", LIT("return 1"), NULL, 0, &jobs),
                BIOXEN_VM_STATUS_VM_NOT_FOUND, "No VMs found matching pattern: q*");
    CHECK_STATUS(bioxen_vm_wait_for_cluster("nope", 0, &results), BIOXEN_VM_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bioxen_vm_wait_for_cluster(NULL, 0, &results), BIOXEN_VM_STATUS_NULL_POINTER);

    CHECK_OK(bioxen_vm_manager_cluster_status(m, "c_*", &status));
    CHECK_TEXT(status, "{\"c_000\":\"done\",\"c_001\":\"done\",\"c_002\":\"idle\"}");
    bioxen_vm_bytes_free(&status);

    CHECK_OK(bioxen_vm_manager_cleanup_cluster(m, "c_00?", &removed));
    CHECK(removed == 3);
    CHECK_STATUS(bioxen_vm_manager_cleanup_cluster(m, NULL, &removed), BIOXEN_VM_STATUS_NULL_POINTER);
}

static void test_sessions_and_shutdown(uint64_t m)
{
    bioxen_vm_bytes ids = {NULL, 0}, out = {NULL, 0};
    size_t removed = 0;
    uint64_t spin = 0;
    bioxen_vm_result r = empty_result();

    CHECK_OK(bioxen_vm_manager_create_interactive_cluster(m, "i", 2, NULL, &ids));
    CHECK_TEXT(ids, "[\"i_000\",\"i_001\"]");
    bioxen_vm_bytes_free(&ids);
    CHECK_ERROR(bioxen_vm_manager_broadcast_to_sessions(m, "i_*", LIT("1"), 1000, &out),
                BIOXEN_VM_STATUS_VM_NOT_FOUND, "No attached sessions found matching pattern: i_*");
    CHECK_OK(bioxen_vm_manager_attach(m, "i_001", NULL, NULL));
    CHECK_OK(bioxen_vm_manager_broadcast_to_sessions(m, "i_*", LIT("6 * 7"), 5000, &out));
    CHECK_TEXT(out, "{\"i_001\":\"42\\n\"}");
    bioxen_vm_bytes_free(&out);

    CHECK_OK(bioxen_vm_manager_list_persistent_vms(m, &out));
    CHECK_CONTAINS(out.data, "\"i_000\":{");
    CHECK_CONTAINS(out.data, "\"session_active\":true");
    bioxen_vm_bytes_free(&out);
    CHECK_STATUS(bioxen_vm_manager_list_persistent_vms(m, NULL), BIOXEN_VM_STATUS_NULL_POINTER);

    CHECK_OK(bioxen_vm_manager_execute_async(m, "v", LIT("while true do end"), NULL, 0, &spin));
    sleep_ms(30);
    {
        double t0 = now_ms();
        CHECK_OK(bioxen_vm_manager_shutdown_all(m, &removed));
        CHECK(now_ms() - t0 < 500.0);
    }
    CHECK(removed == 3);
    CHECK(bioxen_vm_job_wait(spin, 5000, &r) == BIOXEN_VM_STATUS_CANCELLED);
    CHECK_OK(bioxen_vm_job_free(spin));
    CHECK_OK(bioxen_vm_manager_list_vms(m, &out));
    CHECK_TEXT(out, "[]");
    bioxen_vm_bytes_free(&out);
    CHECK_STATUS(bioxen_vm_manager_shutdown_all(0, NULL), BIOXEN_VM_STATUS_INVALID_HANDLE);
}

int main(void)
{
    uint64_t m = 0;
    CHECK_OK(bioxen_vm_manager_new(NULL, &m));
    test_job_tracking(m);
    test_clusters(m);
    test_sessions_and_shutdown(m);
    CHECK_OK(bioxen_vm_manager_free(m));
    return check_summary();
}
