/*
 * Scripts from files: bioxen_vm_execute_file and bioxen_vm_execute_temp_script, on a
 * basic and a process VM, standalone and in a manager; the original's errors; bad input.
 * Programs run from their own directory: the script is written to the system temp dir.
 */
#include "check.h"

#include <unistd.h>

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        abort();
    }
    fputs(text, f);
    fclose(f);
}

static void test_vm(uint64_t vm, const char *script)
{
    bioxen_vm_result r = empty_result();
    CHECK_OK(bioxen_vm_execute_file(vm, script, 0, &r));
    CHECK(r.success);
    CHECK_TEXT(r.stdout_text, "in file\t1\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_execute_temp_script(vm, LIT("return n + 1"), 0, &r));
    CHECK_TEXT(r.values_json, "[2]");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_execute_temp_script(vm, LIT("error('temp')"), 0, &r));
    CHECK(!r.success && r.return_code == 1);
    CHECK_CONTAINS(r.error_message.data, ".lua:1: temp");
    bioxen_vm_result_free(&r);
    CHECK_ERROR(bioxen_vm_execute_file(vm, "/nonexistent/x.lua", 0, &r),
                BIOXEN_VM_STATUS_FILE_NOT_FOUND, "Lua script not found: /nonexistent/x.lua");
    CHECK_ERROR(bioxen_vm_execute_file(vm, "/", 0, &r), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "is not a file");
    CHECK_ERROR(bioxen_vm_execute_file(vm, NULL, 0, &r), BIOXEN_VM_STATUS_NULL_POINTER, "path");
    CHECK_ERROR(bioxen_vm_execute_file(vm, script, 0, NULL), BIOXEN_VM_STATUS_NULL_POINTER,
                "out_result");
    CHECK_ERROR(bioxen_vm_execute_temp_script(vm, NULL, 2, 0, &r),
                BIOXEN_VM_STATUS_NULL_POINTER, "code");
    r = empty_result();
    CHECK_ERROR(bioxen_vm_execute_temp_script(vm, LIT("while true do end"), 50, &r),
                BIOXEN_VM_STATUS_TIMEOUT, "timed out");
    CHECK(r.stdout_text.data == NULL);
}

int main(void)
{
    char script[64];
    snprintf(script, sizeof script, "/tmp/bioxen_vm-test-files-%ld.lua", (long)getpid());
    write_file(script, "n = 1\nprint('in file', n)\n");

    uint64_t vm = 0;
    CHECK_OK(bioxen_vm_new(NULL, &vm));
    test_vm(vm, script);
    CHECK_OK(bioxen_vm_free(vm));
    CHECK_OK(bioxen_vm_new("{\"vm_type\": \"process\", \"lua_executable\": \"lua5.4\"}", &vm));
    test_vm(vm, script);
    CHECK_OK(bioxen_vm_free(vm));

    uint64_t m = 0;
    bioxen_vm_result r = empty_result();
    CHECK_OK(bioxen_vm_manager_new(NULL, &m));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "a", NULL));
    CHECK_OK(bioxen_vm_manager_execute_file(m, "a", script, 0, &r));
    CHECK_TEXT(r.stdout_text, "in file\t1\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_manager_execute_temp_script(m, "a", LIT("return n * 10"), 0, &r));
    CHECK_TEXT(r.values_json, "[10]");
    bioxen_vm_result_free(&r);
    CHECK_ERROR(bioxen_vm_manager_execute_file(m, "b", script, 0, &r),
                BIOXEN_VM_STATUS_VM_NOT_FOUND, "VM 'b' not found");
    CHECK_ERROR(bioxen_vm_manager_execute_temp_script(m, "b", LIT("return 1"), 0, &r),
                BIOXEN_VM_STATUS_VM_NOT_FOUND, "VM 'b' not found");
    CHECK_ERROR(bioxen_vm_manager_execute_file(m, "\xff", script, 0, &r),
                BIOXEN_VM_STATUS_INVALID_UTF8, "vm_id");
    CHECK_OK(bioxen_vm_manager_free(m));
    CHECK_ERROR(bioxen_vm_execute_file(vm, script, 0, &r), BIOXEN_VM_STATUS_INVALID_HANDLE, "");
    remove(script);
    return check_summary();
}
