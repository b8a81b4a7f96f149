/*
 * quickstart.c: run Lua code in an embedded VM through the bioxen_vm C API.
 *
 * It creates a standalone VM, runs two chunks and prints what they wrote, shows what a
 * Lua error looks like (a result with success == false), shows what an API error looks
 * like (a status plus bioxen_vm_last_error_message()), and frees everything.
 * Exit status: 0 when every step behaved as expected, 1 otherwise.
 *
 * Build from the project root after `cargo build --release`:
 *   cc -std=c99 -Iinclude examples/c/quickstart.c -Ltarget/release -lbioxen_vm \
 *      -Wl,-rpath,"$PWD/target/release" -o quickstart
 * or against an installed library:
 *   cc -std=c99 quickstart.c $(pkg-config --cflags --libs bioxen_vm) -o quickstart
 */
#include <stdio.h>
#include <string.h>

#include "bioxen_vm.h"

/* Reports a call that did not return the status we expected. */
static int report(const char *what, int32_t status)
{
    const char *message = bioxen_vm_last_error_message();
    fprintf(stderr, "quickstart: %s returned %s: %s\n", what, bioxen_vm_status_name(status),
            message != NULL ? message : "(no message)");
    return 1;
}

/* Runs a NUL-terminated chunk: code is passed as pointer + length. */
static int32_t run(uint64_t vm, const char *code, bioxen_vm_result *result)
{
    printf("> %s\n", code);
    return bioxen_vm_execute(vm, code, strlen(code), NULL /* no arguments */,
                             0 /* no time limit */, result);
}

/* Library bytes may hold NUL bytes: write them with their length. */
static void print_bytes(bioxen_vm_bytes bytes)
{
    fwrite(bytes.data, 1, bytes.len, stdout);
}

int main(void)
{
    uint64_t vm = 0;
    bioxen_vm_result result;
    int32_t status;
    int failed = 0;

    memset(&result, 0, sizeof result);

    /* The header and the library must belong together. */
    if (bioxen_vm_abi_version() != BIOXEN_VM_ABI_VERSION) {
        fprintf(stderr, "quickstart: library ABI %u, header ABI %d\n",
                (unsigned)bioxen_vm_abi_version(), BIOXEN_VM_ABI_VERSION);
        return 1;
    }
    printf("bioxen_vm %s (ABI %u)\n", bioxen_vm_version(), (unsigned)bioxen_vm_abi_version());

    /* 1. A standalone VM with the default options (NULL): the safe sandbox, no limits. */
    status = bioxen_vm_new(NULL, &vm);
    if (status != BIOXEN_VM_STATUS_OK) {
        return report("bioxen_vm_new", status);
    }

    /* 2. Returned values are printed to stdout the way the Lua REPL prints them. */
    status = run(vm, "return 2 + 2", &result);
    if (status != BIOXEN_VM_STATUS_OK) {
        failed = report("bioxen_vm_execute", status);
        goto done;
    }
    print_bytes(result.stdout_text);
    printf("  (values as JSON: %s)\n", result.values_json.data);
    if (!result.success || strcmp(result.stdout_text.data, "4\n") != 0) {
        fprintf(stderr, "quickstart: expected stdout \"4\\n\"\n");
        failed = 1;
    }
    bioxen_vm_result_free(&result);

    /* 3. What the code prints is captured, not written to the process's stdout. */
    status = run(vm, "print(\"hello from Lua\", _VERSION)", &result);
    if (status != BIOXEN_VM_STATUS_OK) {
        failed = report("bioxen_vm_execute", status);
        goto done;
    }
    print_bytes(result.stdout_text);
    if (!result.success || strcmp(result.stdout_text.data, "hello from Lua\tLua 5.4\n") != 0) {
        fprintf(stderr, "quickstart: unexpected output of print\n");
        failed = 1;
    }
    bioxen_vm_result_free(&result);

    /* 4. A Lua error is not an API error: the call succeeds, the result says what failed. */
    status = run(vm, "error(\"something went wrong\")", &result);
    if (status != BIOXEN_VM_STATUS_OK) {
        failed = report("bioxen_vm_execute", status);
        goto done;
    }
    printf("success = %s, return_code = %d, error_message:\n%s\n",
           result.success ? "true" : "false", (int)result.return_code,
           result.error_message.data);
    if (result.success || result.return_code != 1 ||
        strstr(result.error_message.data, "something went wrong") == NULL) {
        fprintf(stderr, "quickstart: expected a failed result\n");
        failed = 1;
    }
    bioxen_vm_result_free(&result);

    /* 5. An API error: a status, and a message for this thread. Here, a freed handle. */
    status = bioxen_vm_free(vm);
    if (status != BIOXEN_VM_STATUS_OK) {
        return report("bioxen_vm_free", status);
    }
    printf("> (bioxen_vm_execute on the freed VM handle)\n");
    status = bioxen_vm_execute(vm, "return 1", strlen("return 1"), NULL, 0, &result);
    printf("status %s: %s\n", bioxen_vm_status_name(status),
           status != BIOXEN_VM_STATUS_OK ? bioxen_vm_last_error_message() : "(none)");
    if (status != BIOXEN_VM_STATUS_INVALID_HANDLE) {
        fprintf(stderr, "quickstart: expected INVALID_HANDLE\n");
        bioxen_vm_result_free(&result);
        return 1;
    }
    vm = 0; /* freed: freeing 0 below is a no-op */

done:
    bioxen_vm_result_free(&result); /* harmless when already freed or never filled */
    status = bioxen_vm_free(vm);
    if (status != BIOXEN_VM_STATUS_OK) {
        failed = report("bioxen_vm_free", status);
    }
    if (failed) {
        fprintf(stderr, "quickstart: FAILED\n");
        return 1;
    }
    printf("quickstart: every step behaved as expected\n");
    return 0;
}
