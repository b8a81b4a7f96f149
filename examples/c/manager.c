/*
 * manager.c: a VM manager holding a few named VMs.
 *
 * Shows globals that persist across calls on one VM, VMs isolated from each other, JSON
 * arguments arriving as the chunk's `...`, per-VM options on top of the manager's
 * defaults, the list/info/stats JSON, and removing a VM.
 * Exit status: 0 when every step behaved as expected, 1 otherwise.
 *
 * Build from the project root after `cargo build --release`:
 *   cc -std=c99 -Iinclude examples/c/manager.c -Ltarget/release -lbioxen_vm \
 *      -Wl,-rpath,"$PWD/target/release" -o manager
 */
#include <stdio.h>
#include <string.h>

#include "bioxen_vm.h"

static int failures = 0;

/* Records a failed step. */
static void fail(const char *what, int32_t status)
{
    const char *message = bioxen_vm_last_error_message();
    fprintf(stderr, "manager: %s: %s: %s\n", what, bioxen_vm_status_name(status),
            status != BIOXEN_VM_STATUS_OK && message != NULL ? message : "unexpected outcome");
    failures++;
}

/*
 * Runs `code` on the manager's VM `vm_id` with `args_json` (NULL for none) and checks that
 * it succeeds and prints exactly `expected`.
 */
static void run(uint64_t manager, const char *vm_id, const char *code, const char *args_json,
                const char *expected)
{
    bioxen_vm_result result;
    int32_t status;

    memset(&result, 0, sizeof result);
    printf("[%s] %s", vm_id, code);
    if (args_json != NULL) {
        printf("    with ... = %s", args_json);
    }
    printf("\n");
    status = bioxen_vm_manager_execute(manager, vm_id, code, strlen(code), args_json, 0, &result);
    if (status != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_manager_execute", status);
        return;
    }
    fwrite(result.stdout_text.data, 1, result.stdout_text.len, stdout);
    if (!result.success) {
        printf("Lua error: %s\n", result.error_message.data);
        fail(code, status);
    } else if (strcmp(result.stdout_text.data, expected) != 0) {
        fprintf(stderr, "manager: expected output \"%s\"\n", expected);
        fail(code, status);
    }
    bioxen_vm_result_free(&result);
}

/* Prints JSON the library returned, then frees it. */
static void print_json(const char *label, int32_t status, bioxen_vm_bytes *json)
{
    if (status != BIOXEN_VM_STATUS_OK) {
        fail(label, status);
        return;
    }
    printf("%s: %s\n", label, json->data);
    bioxen_vm_bytes_free(json);
}

int main(void)
{
    uint64_t manager = 0;
    bioxen_vm_bytes json = {NULL, 0};
    bioxen_vm_result result;
    int32_t status;
    const char *bomb = "local t = {} while true do t[#t + 1] = {} end";
    const char *one = "return 1";

    memset(&result, 0, sizeof result);

    /* Defaults for every VM of this manager: a 2-second timeout per execution. */
    status = bioxen_vm_manager_new("{\"max_workers\": 4, \"timeout\": 2}", &manager);
    if (status != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_manager_new", status);
        return 1;
    }

    status = bioxen_vm_manager_create_vm(manager, "counter", NULL);
    if (status != BIOXEN_VM_STATUS_OK) {
        fail("create counter", status);
    }
    status = bioxen_vm_manager_create_vm(manager, "greeter", NULL);
    if (status != BIOXEN_VM_STATUS_OK) {
        fail("create greeter", status);
    }
    /* Per-VM options on top of the defaults: this one may use at most 8 MiB. */
    status = bioxen_vm_manager_create_vm(manager, "small", "{\"memory_limit\": 8388608}");
    if (status != BIOXEN_VM_STATUS_OK) {
        fail("create small", status);
    }
    /* Ids are unique within a manager. */
    status = bioxen_vm_manager_create_vm(manager, "counter", NULL);
    printf("creating 'counter' again: %s (%s)\n", bioxen_vm_status_name(status),
           status != BIOXEN_VM_STATUS_OK ? bioxen_vm_last_error_message() : "");
    if (status != BIOXEN_VM_STATUS_VM_ALREADY_EXISTS) {
        fail("duplicate id", status);
    }
    if (failures > 0) {
        bioxen_vm_manager_free(manager);
        return 1;
    }

    printf("\n-- globals persist across calls on one VM\n");
    run(manager, "counter", "count = 0", NULL, "");
    run(manager, "counter", "count = count + ... return count", "[5]", "5\n");
    run(manager, "counter", "count = count + ... return count", "[37]", "42\n");

    printf("\n-- VMs do not share state\n");
    run(manager, "greeter", "return count", NULL, "nil\n");

    printf("\n-- JSON arguments arrive as the chunk's ...\n");
    run(manager, "greeter",
        "local name, opts = ...\n"
        "return string.format('Hello, %s%s', name, string.rep(opts.punct, opts.times))",
        "[\"world\", {\"punct\": \"!\", \"times\": 3}]", "Hello, world!!!\n");
    run(manager, "greeter", "local list = ... return #list, table.concat(list, '+')",
        "[[\"a\", \"b\", \"c\"]]", "3\ta+b+c\n");

    printf("\n-- a memory limit stops the code, not the VM\n");
    status = bioxen_vm_manager_execute(manager, "small", bomb, strlen(bomb), NULL, 0, &result);
    printf("[small] endless allocation: %s (%s)\n", bioxen_vm_status_name(status),
           status != BIOXEN_VM_STATUS_OK ? bioxen_vm_last_error_message() : "");
    if (status != BIOXEN_VM_STATUS_MEMORY_LIMIT) {
        bioxen_vm_result_free(&result);
        fail("memory limit", status);
    }
    run(manager, "small", "return 'still usable'", NULL, "still usable\n");

    printf("\n-- what the manager knows\n");
    status = bioxen_vm_manager_list_vms(manager, &json);
    print_json("list_vms", status, &json);
    status = bioxen_vm_manager_vm_info(manager, "counter", &json);
    print_json("vm_info(counter)", status, &json);
    status = bioxen_vm_manager_stats(manager, &json);
    print_json("stats", status, &json);

    printf("\n-- removing a VM frees its id\n");
    status = bioxen_vm_manager_remove_vm(manager, "greeter");
    if (status != BIOXEN_VM_STATUS_OK) {
        fail("remove greeter", status);
    }
    status = bioxen_vm_manager_execute(manager, "greeter", one, strlen(one), NULL, 0, &result);
    printf("[greeter] after removal: %s (%s)\n", bioxen_vm_status_name(status),
           status != BIOXEN_VM_STATUS_OK ? bioxen_vm_last_error_message() : "");
    if (status != BIOXEN_VM_STATUS_VM_NOT_FOUND) {
        bioxen_vm_result_free(&result);
        fail("execute on a removed VM", status);
    }
    status = bioxen_vm_manager_list_vms(manager, &json);
    print_json("list_vms", status, &json);

    /* Frees the manager and every VM in it. */
    status = bioxen_vm_manager_free(manager);
    if (status != BIOXEN_VM_STATUS_OK) {
        fail("bioxen_vm_manager_free", status);
    }

    if (failures > 0) {
        fprintf(stderr, "manager: %d step(s) FAILED\n", failures);
        return 1;
    }
    printf("\nmanager: every step behaved as expected\n");
    return 0;
}
