// The header used from C++: it must compile warning-free, link, and work.
#include "bioxen_vm.h"

#include <cstdio>
#include <cstring>
#include <string>

static int checks = 0;
static int failed = 0;

static void check(bool ok, const char *what, int line)
{
    ++checks;
    if (!ok) {
        ++failed;
        const char *message = bioxen_vm_last_error_message();
        std::fprintf(stderr, "%s:%d: check failed: %s\n    last error: %s\n", __FILE__, line, what,
                     message != nullptr ? message : "(none)");
    }
}

#define CHECK(cond) check((cond), #cond, __LINE__)

int main()
{
    CHECK(bioxen_vm_abi_version() == BIOXEN_VM_ABI_VERSION);
    CHECK(std::string(bioxen_vm_version()) == std::to_string(BIOXEN_VM_VERSION_MAJOR) + "." +
                                                   std::to_string(BIOXEN_VM_VERSION_MINOR) + "." +
                                                   std::to_string(BIOXEN_VM_VERSION_PATCH));
    CHECK(std::string(bioxen_vm_status_name(BIOXEN_VM_STATUS_INVALID_HANDLE)) == "INVALID_HANDLE");

    // The status enum is usable as a C++ type, and its values as int32_t.
    bioxen_vm_status status = BIOXEN_VM_STATUS_OK;
    int32_t code = status;
    CHECK(code == 0);

    uint64_t vm = 0;
    CHECK(bioxen_vm_new(R"({"sandbox": "default"})", &vm) == BIOXEN_VM_STATUS_OK);

    const std::string chunk = "return ('C++ ' .. ...):upper()";
    bioxen_vm_result result{};
    CHECK(bioxen_vm_execute(vm, chunk.data(), chunk.size(), R"(["works"])", 0, &result) ==
          BIOXEN_VM_STATUS_OK);
    CHECK(result.success);
    CHECK(std::string(result.stdout_text.data, result.stdout_text.len) == "C++ WORKS\n");
    bioxen_vm_result_free(&result);

    bioxen_vm_bytes info{};
    CHECK(bioxen_vm_info(vm, &info) == BIOXEN_VM_STATUS_OK);
    CHECK(info.len > 0 && std::strstr(info.data, "\"vm_type\":\"basic\"") != nullptr);
    bioxen_vm_bytes_free(&info);

    CHECK(bioxen_vm_free(vm) == BIOXEN_VM_STATUS_OK);
    CHECK(bioxen_vm_free(vm) == BIOXEN_VM_STATUS_INVALID_HANDLE);

    // A C++ lambda without captures converts to the C callback type.
    bioxen_vm_log_fn callback = [](int32_t, const char *, const char *, void *) {};
    CHECK(bioxen_vm_set_log_callback(callback, nullptr, 1) == BIOXEN_VM_STATUS_OK);
    CHECK(bioxen_vm_set_log_callback(nullptr, nullptr, 0) == BIOXEN_VM_STATUS_OK);

    std::printf("%d passed, %d failed\n", checks - failed, failed);
    return failed == 0 ? 0 : 1;
}
