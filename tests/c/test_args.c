/*
 * Argument checks at the boundary: NULL for every pointer argument (NULL_POINTER unless
 * the header allows NULL), invalid UTF-8 in every id, option and argument string
 * (INVALID_UTF8), bad JSON and bad option values (INVALID_ARGUMENT), and outputs left
 * untouched when a call fails.
 */
#include "check.h"

#include <stdbool.h>

#define SENTINEL UINT64_C(0x5EEDF00D)
#define BAD_UTF8 "\xff\xfe"
#define CODE "return 1"
#define CODE_LEN (sizeof CODE - 1)

static uint64_t vm;
static uint64_t manager;
static uint64_t job;

/* A result whose fields a failed call must not touch. */
static bioxen_vm_result marked_result(void)
{
    bioxen_vm_result r = empty_result();
    r.return_code = 77;
    r.duration_ns = SENTINEL;
    return r;
}

static int untouched(const bioxen_vm_result *r)
{
    return r->return_code == 77 && r->duration_ns == SENTINEL && r->stdout_text.data == NULL;
}

static void test_null_standalone(void)
{
    bioxen_vm_result r = marked_result();
    bioxen_vm_bytes b = {NULL, 0};
    uint64_t out = SENTINEL;

    CHECK_ERROR(bioxen_vm_new(NULL, NULL), BIOXEN_VM_STATUS_NULL_POINTER, "out_vm");
    CHECK_ERROR(bioxen_vm_new("{}", NULL), BIOXEN_VM_STATUS_NULL_POINTER, "out_vm");

    CHECK_ERROR(bioxen_vm_execute(vm, NULL, CODE_LEN, NULL, 0, &r),
                BIOXEN_VM_STATUS_NULL_POINTER, "code");
    CHECK(untouched(&r));
    CHECK_ERROR(bioxen_vm_execute(vm, CODE, CODE_LEN, NULL, 0, NULL),
                BIOXEN_VM_STATUS_NULL_POINTER, "out_result");
    /* NULL code with length 0 is allowed, and is empty code. */
    CHECK_ERROR(bioxen_vm_execute(vm, NULL, 0, NULL, 0, &r), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "Lua code cannot be empty");
    CHECK(untouched(&r));

    CHECK_ERROR(bioxen_vm_execute_async(vm, NULL, CODE_LEN, NULL, 0, &out),
                BIOXEN_VM_STATUS_NULL_POINTER, "code");
    CHECK_ERROR(bioxen_vm_execute_async(vm, CODE, CODE_LEN, NULL, 0, NULL),
                BIOXEN_VM_STATUS_NULL_POINTER, "out_job");
    CHECK_ERROR(bioxen_vm_execute_async(vm, NULL, 0, NULL, 0, &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Lua code cannot be empty");
    CHECK(out == SENTINEL);

    CHECK_ERROR(bioxen_vm_info(vm, NULL), BIOXEN_VM_STATUS_NULL_POINTER, "out_json");
    CHECK(b.data == NULL);

    /* Documented as allowed: NULL options, NULL args, NULL out_was_running. */
    CHECK_OK(bioxen_vm_new(NULL, &out));
    CHECK_OK(bioxen_vm_free(out));
    CHECK_OK(bioxen_vm_execute(vm, CODE, CODE_LEN, NULL, 0, &r));
    CHECK_TEXT(r.stdout_text, "1\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_interrupt(vm, NULL));
}

static void test_null_jobs(void)
{
    bioxen_vm_result r = marked_result();
    const char *status = "sentinel";

    CHECK_ERROR(bioxen_vm_job_wait(job, 0, NULL), BIOXEN_VM_STATUS_NULL_POINTER, "out_result");
    CHECK_ERROR(bioxen_vm_job_status(job, NULL), BIOXEN_VM_STATUS_NULL_POINTER, "out_status");
    /* Allowed: NULL out_cancelled. */
    CHECK_OK(bioxen_vm_job_cancel(job, NULL));
    CHECK_OK(bioxen_vm_job_status(job, &status));
    CHECK(strcmp(status, "done") == 0);
    CHECK_OK(bioxen_vm_job_wait(job, 0, &r));
    CHECK_TEXT(r.stdout_text, "1\n");
    bioxen_vm_result_free(&r);
}

static void test_null_manager(void)
{
    bioxen_vm_result r = marked_result();
    bioxen_vm_bytes b = {NULL, 0};
    uint64_t out = SENTINEL;
    bool was_running = true;

    CHECK_ERROR(bioxen_vm_manager_new(NULL, NULL), BIOXEN_VM_STATUS_NULL_POINTER,
                "out_manager");
    CHECK_ERROR(bioxen_vm_manager_new("{}", NULL), BIOXEN_VM_STATUS_NULL_POINTER,
                "out_manager");

    CHECK_ERROR(bioxen_vm_manager_create_vm(manager, NULL, NULL), BIOXEN_VM_STATUS_NULL_POINTER,
                "vm_id");
    CHECK_ERROR(bioxen_vm_manager_create_vm(manager, NULL, "{}"), BIOXEN_VM_STATUS_NULL_POINTER,
                "vm_id");
    CHECK_ERROR(bioxen_vm_manager_remove_vm(manager, NULL), BIOXEN_VM_STATUS_NULL_POINTER,
                "vm_id");

    CHECK_ERROR(bioxen_vm_manager_execute(manager, NULL, CODE, CODE_LEN, NULL, 0, &r),
                BIOXEN_VM_STATUS_NULL_POINTER, "vm_id");
    CHECK_ERROR(bioxen_vm_manager_execute(manager, "a", NULL, CODE_LEN, NULL, 0, &r),
                BIOXEN_VM_STATUS_NULL_POINTER, "code");
    CHECK_ERROR(bioxen_vm_manager_execute(manager, "a", CODE, CODE_LEN, NULL, 0, NULL),
                BIOXEN_VM_STATUS_NULL_POINTER, "out_result");
    CHECK_ERROR(bioxen_vm_manager_execute(manager, "a", NULL, 0, NULL, 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Lua code cannot be empty");
    CHECK(untouched(&r));

    CHECK_ERROR(bioxen_vm_manager_execute_async(manager, NULL, CODE, CODE_LEN, NULL, 0, &out),
                BIOXEN_VM_STATUS_NULL_POINTER, "vm_id");
    CHECK_ERROR(bioxen_vm_manager_execute_async(manager, "a", NULL, CODE_LEN, NULL, 0, &out),
                BIOXEN_VM_STATUS_NULL_POINTER, "code");
    CHECK_ERROR(bioxen_vm_manager_execute_async(manager, "a", CODE, CODE_LEN, NULL, 0, NULL),
                BIOXEN_VM_STATUS_NULL_POINTER, "out_job");
    CHECK_ERROR(bioxen_vm_manager_execute_async(manager, "a", NULL, 0, NULL, 0, &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Lua code cannot be empty");
    CHECK(out == SENTINEL);

    CHECK_ERROR(bioxen_vm_manager_interrupt(manager, NULL, &was_running),
                BIOXEN_VM_STATUS_NULL_POINTER, "vm_id");
    CHECK(was_running);
    CHECK_ERROR(bioxen_vm_manager_vm_info(manager, NULL, &b), BIOXEN_VM_STATUS_NULL_POINTER,
                "vm_id");
    CHECK_ERROR(bioxen_vm_manager_vm_info(manager, "a", NULL), BIOXEN_VM_STATUS_NULL_POINTER,
                "out_json");
    CHECK_ERROR(bioxen_vm_manager_list_vms(manager, NULL), BIOXEN_VM_STATUS_NULL_POINTER,
                "out_json");
    CHECK_ERROR(bioxen_vm_manager_stats(manager, NULL), BIOXEN_VM_STATUS_NULL_POINTER,
                "out_json");
    CHECK(b.data == NULL);

    /* Documented as allowed: NULL options, NULL args, NULL out_was_running. */
    CHECK_OK(bioxen_vm_manager_new(NULL, &out));
    CHECK_OK(bioxen_vm_manager_free(out));
    CHECK_OK(bioxen_vm_manager_create_vm(manager, "b", NULL));
    CHECK_OK(bioxen_vm_manager_interrupt(manager, "b", NULL));
    CHECK_OK(bioxen_vm_manager_execute(manager, "b", CODE, CODE_LEN, NULL, 0, &r));
    CHECK_TEXT(r.stdout_text, "1\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_manager_remove_vm(manager, "b"));
}

static void test_invalid_utf8(void)
{
    bioxen_vm_result r = marked_result();
    bioxen_vm_bytes b = {NULL, 0};
    uint64_t out = SENTINEL;

    /* Options. */
    CHECK_ERROR(bioxen_vm_new(BAD_UTF8, &out), BIOXEN_VM_STATUS_INVALID_UTF8, "options_json");
    CHECK_ERROR(bioxen_vm_new("{\"sandbox\": \"" BAD_UTF8 "\"}", &out),
                BIOXEN_VM_STATUS_INVALID_UTF8, "options_json");
    CHECK_ERROR(bioxen_vm_manager_new(BAD_UTF8, &out), BIOXEN_VM_STATUS_INVALID_UTF8,
                "options_json");
    CHECK_ERROR(bioxen_vm_manager_create_vm(manager, "ok", BAD_UTF8),
                BIOXEN_VM_STATUS_INVALID_UTF8, "options_json");
    CHECK(out == SENTINEL);

    /* Arguments. */
    CHECK_ERROR(bioxen_vm_execute(vm, CODE, CODE_LEN, "[\"" BAD_UTF8 "\"]", 0, &r),
                BIOXEN_VM_STATUS_INVALID_UTF8, "args_json");
    CHECK_ERROR(bioxen_vm_execute_async(vm, CODE, CODE_LEN, BAD_UTF8, 0, &out),
                BIOXEN_VM_STATUS_INVALID_UTF8, "args_json");
    CHECK_ERROR(bioxen_vm_manager_execute(manager, "a", CODE, CODE_LEN, BAD_UTF8, 0, &r),
                BIOXEN_VM_STATUS_INVALID_UTF8, "args_json");
    CHECK_ERROR(bioxen_vm_manager_execute_async(manager, "a", CODE, CODE_LEN, BAD_UTF8, 0, &out),
                BIOXEN_VM_STATUS_INVALID_UTF8, "args_json");

    /* VM ids. */
    CHECK_ERROR(bioxen_vm_manager_create_vm(manager, BAD_UTF8, NULL),
                BIOXEN_VM_STATUS_INVALID_UTF8, "vm_id");
    CHECK_ERROR(bioxen_vm_manager_remove_vm(manager, BAD_UTF8), BIOXEN_VM_STATUS_INVALID_UTF8,
                "vm_id");
    CHECK_ERROR(bioxen_vm_manager_execute(manager, BAD_UTF8, CODE, CODE_LEN, NULL, 0, &r),
                BIOXEN_VM_STATUS_INVALID_UTF8, "vm_id");
    CHECK_ERROR(bioxen_vm_manager_execute_async(manager, BAD_UTF8, CODE, CODE_LEN, NULL, 0, &out),
                BIOXEN_VM_STATUS_INVALID_UTF8, "vm_id");
    CHECK_ERROR(bioxen_vm_manager_interrupt(manager, BAD_UTF8, NULL),
                BIOXEN_VM_STATUS_INVALID_UTF8, "vm_id");
    CHECK_ERROR(bioxen_vm_manager_vm_info(manager, BAD_UTF8, &b), BIOXEN_VM_STATUS_INVALID_UTF8,
                "vm_id");
    /* An overlong encoding and a lone surrogate are not UTF-8 either. */
    CHECK_ERROR(bioxen_vm_manager_create_vm(manager, "\xc0\xaf", NULL),
                BIOXEN_VM_STATUS_INVALID_UTF8, "vm_id");
    CHECK_ERROR(bioxen_vm_manager_create_vm(manager, "\xed\xa0\x80", NULL),
                BIOXEN_VM_STATUS_INVALID_UTF8, "vm_id");

    CHECK(untouched(&r));
    CHECK(out == SENTINEL);
    CHECK(b.data == NULL);

    /* Valid multi-byte UTF-8 is fine everywhere. */
    CHECK_OK(bioxen_vm_manager_create_vm(manager, "\xc3\xa9t\xc3\xa9", NULL));
    CHECK_OK(bioxen_vm_manager_execute(manager, "\xc3\xa9t\xc3\xa9", LIT("return ..."),
                                       "[\"\xe2\x82\xac\"]", 0, &r));
    CHECK_TEXT(r.stdout_text, "\xe2\x82\xac\n");
    CHECK_TEXT(r.values_json, "[\"\xe2\x82\xac\"]");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_manager_remove_vm(manager, "\xc3\xa9t\xc3\xa9"));
}

static void test_bad_values(void)
{
    bioxen_vm_result r = marked_result();
    uint64_t out = SENTINEL;

    /* Options: not JSON, not an object, unknown keys, bad values. */
    CHECK_ERROR(bioxen_vm_new("{", &out), BIOXEN_VM_STATUS_INVALID_ARGUMENT, "not valid JSON");
    CHECK_ERROR(bioxen_vm_new("[]", &out), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "must be a JSON object");
    CHECK_ERROR(bioxen_vm_new("{\"bogus\": 1}", &out), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "unknown VM option 'bogus'");
    CHECK_ERROR(bioxen_vm_new("{\"vm_type\": \"nope\"}", &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Unknown VM type: nope");
    CHECK_ERROR(bioxen_vm_new("{\"sandbox\": \"nope\"}", &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Unknown sandbox: nope");
    CHECK_ERROR(bioxen_vm_new("{\"memory_limit\": 1000}", &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "memory_limit");
    CHECK_ERROR(bioxen_vm_new("{\"memory_limit\": -1}", &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "memory_limit");
    CHECK_ERROR(bioxen_vm_new("{\"timeout\": -1}", &out), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "timeout");
    CHECK_ERROR(bioxen_vm_new("{\"debug_mode\": 1}", &out), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "debug_mode");
    CHECK_ERROR(bioxen_vm_manager_new("{\"max_workers\": 0}", &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "max_workers");
    CHECK_ERROR(bioxen_vm_manager_new("{\"max_workers\": 1025}", &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "max_workers");
    CHECK_ERROR(bioxen_vm_manager_new("{\"colour\": \"blue\"}", &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "unknown manager option 'colour'");
    CHECK_ERROR(bioxen_vm_manager_new("{\"vm_type\": \"lisp\"}", &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Unknown VM type: lisp");
    CHECK_ERROR(bioxen_vm_manager_new("[1]", &out), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "must be a JSON object");
    CHECK(out == SENTINEL);

    /* An ssh VM, and an xcpng VM, without their required options. */
    CHECK_ERROR(bioxen_vm_new("{\"vm_type\": \"ssh\"}", &out), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "an ssh VM needs the option 'host'");
    CHECK_ERROR(bioxen_vm_new("{\"vm_type\": \"xcpng\"}", &out), BIOXEN_VM_STATUS_VM_MANAGER_ERROR,
                "Missing required configuration: xcp_host");
    /* A process VM whose interpreter does not exist. */
    CHECK_ERROR(bioxen_vm_new("{\"vm_type\": \"process\", \"lua_executable\": \"no-lua-here\"}",
                              &out),
                BIOXEN_VM_STATUS_LUA_NOT_FOUND, "Lua executable 'no-lua-here' not found in PATH");
    CHECK(out == SENTINEL);

    /* Empty and whitespace-only options mean defaults. */
    CHECK_OK(bioxen_vm_new("", &out));
    CHECK_OK(bioxen_vm_free(out));
    CHECK_OK(bioxen_vm_new(" \n\t", &out));
    CHECK_OK(bioxen_vm_free(out));
    CHECK_OK(bioxen_vm_manager_new("", &out));
    CHECK_OK(bioxen_vm_manager_free(out));

    /* Arguments: a JSON array or nothing. */
    out = SENTINEL;
    CHECK_ERROR(bioxen_vm_execute(vm, CODE, CODE_LEN, "{}", 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "arguments must be a JSON array");
    CHECK_ERROR(bioxen_vm_execute(vm, CODE, CODE_LEN, "[1,", 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "arguments are not valid JSON");
    CHECK_ERROR(bioxen_vm_execute(vm, CODE, CODE_LEN, "42", 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "arguments must be a JSON array");
    CHECK_ERROR(bioxen_vm_execute_async(vm, CODE, CODE_LEN, "{}", 0, &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "arguments must be a JSON array");
    CHECK_ERROR(bioxen_vm_manager_execute(manager, "a", CODE, CODE_LEN, "{}", 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "arguments must be a JSON array");
    CHECK_ERROR(bioxen_vm_manager_execute_async(manager, "a", CODE, CODE_LEN, "nope", 0, &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "arguments are not valid JSON");
    CHECK(untouched(&r));
    CHECK(out == SENTINEL);

    /* A length no buffer can have is refused before anything is read. */
    CHECK_ERROR(bioxen_vm_execute(vm, CODE, SIZE_MAX, NULL, 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "too large");
    CHECK_ERROR(bioxen_vm_manager_execute(manager, "a", CODE, SIZE_MAX, NULL, 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "too large");
    CHECK(untouched(&r));

    /* An empty string and NULL are "no arguments". */
    CHECK_OK(bioxen_vm_execute(vm, LIT("return select('#', ...)"), "", 0, &r));
    CHECK_TEXT(r.stdout_text, "0\n");
    bioxen_vm_result_free(&r);
}

int main(void)
{
    bioxen_vm_result r = empty_result();

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(bioxen_vm_manager_new(NULL, &manager));
    CHECK_OK(bioxen_vm_manager_create_vm(manager, "a", NULL));
    CHECK_OK(bioxen_vm_execute_async(vm, CODE, CODE_LEN, NULL, 0, &job));
    CHECK_OK(bioxen_vm_job_wait(job, 0, &r));
    bioxen_vm_result_free(&r);

    test_null_standalone();
    test_null_jobs();
    test_null_manager();
    test_invalid_utf8();
    test_bad_values();

    CHECK_OK(bioxen_vm_job_free(job));
    CHECK_OK(bioxen_vm_manager_free(manager));
    CHECK_OK(bioxen_vm_free(vm));
    return check_summary();
}
