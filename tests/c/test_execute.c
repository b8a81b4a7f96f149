/*
 * Executing code on standalone VMs: results, Lua errors, empty code, code and output with
 * NUL bytes and invalid UTF-8, arguments, persistence and isolation, output caps, the
 * sandbox, memory limits and timeouts.
 */
#include "check.h"

#include <stdbool.h>

static uint64_t vm;

static int32_t run_bytes(uint64_t on, const char *code, size_t len, bioxen_vm_result *r)
{
    return bioxen_vm_execute(on, code, len, NULL, 0, r);
}

static void test_results(void)
{
    bioxen_vm_result r = empty_result();

    CHECK_OK(run_lua(vm, "return 2 + 2", &r));
    CHECK(r.success);
    CHECK(r.return_code == 0);
    CHECK_TEXT(r.stdout_text, "4\n");
    CHECK_TEXT(r.stderr_text, "");
    CHECK_TEXT(r.values_json, "[4]");
    CHECK_TEXT(r.error_message, "");
    CHECK(r.duration_ns > 0);
    CHECK(r.output_dropped == 0);
    bioxen_vm_result_free(&r);

    CHECK_OK(run_lua(vm, "print('hello from Lua', _VERSION)", &r));
    CHECK(r.success);
    CHECK_TEXT(r.stdout_text, "hello from Lua\tLua 5.4\n");
    CHECK_TEXT(r.values_json, "[]");
    bioxen_vm_result_free(&r);

    CHECK_OK(run_lua(vm, "io.write('a', 1, ' ') print(2) return 'x', nil, 1.5, true, {a = 1}",
                     &r));
    CHECK(r.stdout_text.len > 0 && strncmp(r.stdout_text.data, "a1 2\nx\tnil\t1.5\ttrue\ttable: ",
                                           27) == 0);
    CHECK_TEXT(r.values_json, "[\"x\",null,1.5,true,{\"a\":1}]");
    bioxen_vm_result_free(&r);

    CHECK_OK(run_lua(vm, "io.stderr:write('to stderr') return 1", &r));
    CHECK_TEXT(r.stderr_text, "to stderr");
    CHECK_TEXT(r.stdout_text, "1\n");
    bioxen_vm_result_free(&r);

    /* Nothing printed, nothing returned. */
    CHECK_OK(run_lua(vm, "local unused = 1", &r));
    CHECK(r.success);
    CHECK_TEXT(r.stdout_text, "");
    CHECK_TEXT(r.values_json, "[]");
    bioxen_vm_result_free(&r);
}

static void test_lua_errors(void)
{
    bioxen_vm_result r = empty_result();

    /* A runtime error is OK at the C level, with success == false. */
    CHECK_OK(run_lua(vm, "print('before') error('boom')", &r));
    CHECK(!r.success);
    CHECK(r.return_code == 1);
    CHECK_TEXT(r.stdout_text, "before\n");
    CHECK_CONTAINS(r.error_message.data, "boom");
    CHECK_CONTAINS(r.error_message.data, "stack traceback");
    CHECK_CONTAINS(r.stderr_text.data, "boom");
    CHECK_TEXT(r.values_json, "[]");
    bioxen_vm_result_free(&r);

    CHECK_OK(run_lua(vm, "return 1 +", &r));
    CHECK(!r.success);
    CHECK(r.return_code == 1);
    CHECK_CONTAINS(r.error_message.data, "unexpected symbol");
    bioxen_vm_result_free(&r);

    CHECK_OK(run_lua(vm, "error({})", &r));
    CHECK(!r.success);
    CHECK(r.return_code == 1);
    bioxen_vm_result_free(&r);

    CHECK_OK(run_lua(vm, "local t = nil; return t.field", &r));
    CHECK(!r.success);
    CHECK_CONTAINS(r.error_message.data, "attempt to index");
    bioxen_vm_result_free(&r);

    /* The VM is fine after errors. */
    CHECK_OK(run_lua(vm, "return 'still here'", &r));
    CHECK(r.success);
    CHECK_TEXT(r.stdout_text, "still here\n");
    bioxen_vm_result_free(&r);
}

static void test_empty_code(void)
{
    static const char *blank[] = {"", " ", "   \n\t", " \t\r\n\v\f "};
    bioxen_vm_result r = empty_result();
    uint64_t job = 0;
    size_t i;

    for (i = 0; i < sizeof blank / sizeof blank[0]; i++) {
        CHECK_ERROR(run_lua(vm, blank[i], &r), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                    "Lua code cannot be empty");
        CHECK_ERROR(bioxen_vm_execute_async(vm, blank[i], strlen(blank[i]), NULL, 0, &job),
                    BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Lua code cannot be empty");
    }
    CHECK_ERROR(run_bytes(vm, NULL, 0, &r), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "Lua code cannot be empty");
    /* Non-blank bytes beyond the length do not count. */
    CHECK_ERROR(run_bytes(vm, "  return 1", 2, &r), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "Lua code cannot be empty");
    CHECK(r.stdout_text.data == NULL);
    CHECK(job == 0);
}

static void test_code_with_nul(void)
{
    static const char in_string[] = "return 'a\0b' -- \0 comment";
    static const char after_code[] = "return 1\0 + 2";
    bioxen_vm_result r = empty_result();

    /* The whole length is the chunk: a NUL inside a string literal is a byte of it... */
    CHECK_OK(run_bytes(vm, in_string, sizeof in_string - 1, &r));
    CHECK(r.success);
    CHECK_BYTES(r.stdout_text, "a\0b\n", 4);
    CHECK_TEXT(r.values_json, "[\"a\\u0000b\"]");
    bioxen_vm_result_free(&r);

    /* ...and a NUL between tokens is a syntax error, not the end of the chunk. */
    CHECK_OK(run_bytes(vm, after_code, sizeof after_code - 1, &r));
    CHECK(!r.success);
    CHECK(r.return_code == 1);
    bioxen_vm_result_free(&r);

    /* Only `code_len` bytes are read. */
    CHECK_OK(run_bytes(vm, "return 12", 8, &r));
    CHECK_TEXT(r.stdout_text, "1\n");
    bioxen_vm_result_free(&r);
}

static void test_binary_output(void)
{
    bioxen_vm_result r = empty_result();
    size_t i;
    bool valid = true;

    CHECK_OK(run_lua(vm, "io.write('a\\0b') io.stderr:write('x\\0y') return 'c\\0d'", &r));
    CHECK_BYTES(r.stdout_text, "a\0bc\0d\n", 7);
    CHECK_BYTES(r.stderr_text, "x\0y", 3);
    CHECK_TEXT(r.values_json, "[\"c\\u0000d\"]");
    bioxen_vm_result_free(&r);

    /* Output that is not UTF-8 comes back byte for byte. */
    CHECK_OK(run_lua(vm, "io.write('\\255\\254\\0\\128') return '\\192'", &r));
    CHECK_BYTES(r.stdout_text, "\xff\xfe\0\x80\xc0\n", 6);
    /* values_json stays valid JSON text (UTF-8): no raw 0xff / 0xc0 byte in it. */
    for (i = 0; i < r.values_json.len; i++) {
        unsigned char c = (unsigned char)r.values_json.data[i];
        if (c == 0xff || c == 0xc0) {
            valid = false;
        }
    }
    CHECK(valid);
    CHECK(r.values_json.len > 2 && r.values_json.data[0] == '[');
    bioxen_vm_result_free(&r);

    /* All 256 byte values. */
    CHECK_OK(run_lua(vm, "local t = {} for i = 0, 255 do t[#t + 1] = string.char(i) end "
                         "io.write(table.concat(t))",
                     &r));
    CHECK(r.stdout_text.len == 256);
    valid = r.stdout_text.len == 256;
    for (i = 0; valid && i < 256; i++) {
        valid = (unsigned char)r.stdout_text.data[i] == i;
    }
    CHECK(valid);
    CHECK(r.stdout_text.data[256] == '\0');
    bioxen_vm_result_free(&r);
}

static void test_arguments(void)
{
    bioxen_vm_result r = empty_result();
    const char *code = "local a, b, c, d, e, f, g = ... "
                       "return select('#', ...), a, b, c, d, e, f.k[2], #g";

    CHECK_OK(bioxen_vm_execute(vm, code, strlen(code),
                               "[1, \"two\", true, null, 1.5, {\"k\": [10, 20]}, []]", 0, &r));
    CHECK(r.success);
    CHECK_TEXT(r.stdout_text, "7\t1\ttwo\ttrue\tnil\t1.5\t20\t0\n");
    CHECK_TEXT(r.values_json, "[7,1,\"two\",true,null,1.5,20,0]");
    bioxen_vm_result_free(&r);

    CHECK_OK(bioxen_vm_execute(vm, LIT("return ..."), "[]", 0, &r));
    CHECK_TEXT(r.stdout_text, "");
    bioxen_vm_result_free(&r);

    /* Strings with quotes, escapes and NUL arrive intact. */
    CHECK_OK(bioxen_vm_execute(vm, LIT("local s = ... return #s, s"),
                               "[\"q\\\"\\\\\\u0000\\n\"]", 0, &r));
    CHECK_BYTES(r.stdout_text, "5\tq\"\\\0\n\n", 8);
    bioxen_vm_result_free(&r);
}

static void test_persistence_and_isolation(void)
{
    bioxen_vm_result r = empty_result();
    uint64_t other = 0;

    CHECK_OK(run_lua(vm, "counter = 41 function bump() counter = counter + 1 end", &r));
    bioxen_vm_result_free(&r);
    CHECK_OK(run_lua(vm, "bump() return counter", &r));
    CHECK_TEXT(r.stdout_text, "42\n");
    bioxen_vm_result_free(&r);

    CHECK_OK(bioxen_vm_new(NULL, &other));
    CHECK_OK(run_lua(other, "return counter, bump", &r));
    CHECK_TEXT(r.stdout_text, "nil\tnil\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(other));
}

static void test_max_output(void)
{
    bioxen_vm_result r = empty_result();
    uint64_t small = 0;

    CHECK_OK(bioxen_vm_new("{\"max_output\": 10}", &small));
    CHECK_OK(run_lua(small, "print(string.rep('x', 100)) io.stderr:write('12345678901234')",
                     &r));
    CHECK(r.success);
    CHECK_TEXT(r.stdout_text, "xxxxxxxxxx");
    CHECK_TEXT(r.stderr_text, "1234567890");
    CHECK(r.output_dropped == 91 + 4);
    bioxen_vm_result_free(&r);
    /* The cap is per execution. */
    CHECK_OK(run_lua(small, "io.write('abc')", &r));
    CHECK_TEXT(r.stdout_text, "abc");
    CHECK(r.output_dropped == 0);
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(small));
}

static void test_sandbox(void)
{
    bioxen_vm_result r = empty_result();
    uint64_t trusted = 0;
    const char *probe = "return type(io.open), type(os.execute), type(debug), type(dofile)";

    CHECK_OK(run_lua(vm, probe, &r));
    CHECK_TEXT(r.stdout_text, "nil\tnil\tnil\tnil\n");
    bioxen_vm_result_free(&r);

    CHECK_OK(bioxen_vm_new("{\"sandbox\": \"trusted\"}", &trusted));
    CHECK_OK(run_lua(trusted, probe, &r));
    CHECK_TEXT(r.stdout_text, "function\tfunction\ttable\tfunction\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(trusted));
}

static void test_memory_limit(void)
{
    bioxen_vm_result r = empty_result();
    bioxen_vm_bytes info = {NULL, 0};
    uint64_t limited = 0;

    CHECK_OK(bioxen_vm_new("{\"memory_limit\": 4194304}", &limited));
    CHECK_OK(run_lua(limited, "kept = 'state survives'", &r));
    bioxen_vm_result_free(&r);
    r = empty_result();

    /* A table that grows without end. */
    CHECK_ERROR(run_lua(limited, "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1024) "
                                 ".. i end",
                        &r),
                BIOXEN_VM_STATUS_MEMORY_LIMIT, "memory limit of 4194304 bytes exceeded");
    CHECK(r.stdout_text.data == NULL);
    /* The VM still works, with its state. */
    CHECK_OK(run_lua(limited, "return kept", &r));
    CHECK_TEXT(r.stdout_text, "state survives\n");
    bioxen_vm_result_free(&r);

    /* A string that doubles without end. */
    CHECK_ERROR(run_lua(limited, "local s = 'x' while true do s = s .. s end", &r),
                BIOXEN_VM_STATUS_MEMORY_LIMIT, "memory limit");
    /* Inside pcall the error is Lua's to catch, as in any Lua ("not enough memory"). */
    CHECK_OK(run_lua(limited, "return pcall(function() local s = 'x' while true do s = s .. s "
                              "end end)",
                     &r));
    CHECK_TEXT(r.stdout_text, "false\tnot enough memory\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(run_lua(limited, "local t = {} for i = 1, 1000 do t[i] = i end return #t, kept", &r));
    CHECK_TEXT(r.stdout_text, "1000\tstate survives\n");
    bioxen_vm_result_free(&r);

    /* Memory was given back. */
    CHECK_OK(bioxen_vm_info(limited, &info));
    CHECK_CONTAINS(info.data, "\"memory_limit\":4194304");
    CHECK_CONTAINS(info.data, "\"memory_used\":");
    bioxen_vm_bytes_free(&info);
    CHECK_OK(bioxen_vm_free(limited));
}

static void test_timeouts(void)
{
    bioxen_vm_result r = empty_result();
    uint64_t with_default = 0;
    double started;
    double elapsed;

    CHECK_OK(run_lua(vm, "survivor = 'still set'", &r));
    bioxen_vm_result_free(&r);
    r = empty_result();

    started = now_ms();
    CHECK_ERROR(bioxen_vm_execute(vm, LIT("while true do end"), NULL, 200, &r),
                BIOXEN_VM_STATUS_TIMEOUT, "timed out after 0.2 seconds");
    elapsed = now_ms() - started;
    CHECK(elapsed >= 190.0);
    CHECK(elapsed < 20000.0);
    CHECK(r.stdout_text.data == NULL);

    /* The VM keeps its globals. */
    CHECK_OK(run_lua(vm, "return survivor", &r));
    CHECK_TEXT(r.stdout_text, "still set\n");
    bioxen_vm_result_free(&r);

    /* pcall cannot swallow a timeout, nor can a coroutine hide the loop. */
    CHECK_ERROR(bioxen_vm_execute(vm, LIT("while true do pcall(function() while true do end "
                                          "end) end"),
                                  NULL, 100, &r),
                BIOXEN_VM_STATUS_TIMEOUT, "timed out");
    CHECK_ERROR(bioxen_vm_execute(vm, LIT("coroutine.wrap(function() while true do end end)()"),
                                  NULL, 100, &r),
                BIOXEN_VM_STATUS_TIMEOUT, "timed out");

    /* A deadline that is not reached leaves no trace on later executions. */
    CHECK_OK(bioxen_vm_execute(vm, LIT("return 'quick'"), NULL, 100, &r));
    CHECK_TEXT(r.stdout_text, "quick\n");
    bioxen_vm_result_free(&r);
    sleep_ms(150);
    CHECK_OK(run_lua(vm, "local t = os.clock() while os.clock() - t < 0.05 do end return 'ok'",
                     &r));
    CHECK_TEXT(r.stdout_text, "ok\n");
    bioxen_vm_result_free(&r);

    /* The VM's default timeout applies when the call gives none; the call's own wins. */
    CHECK_OK(bioxen_vm_new("{\"timeout\": 0.2}", &with_default));
    CHECK_ERROR(run_lua(with_default, "while true do end", &r), BIOXEN_VM_STATUS_TIMEOUT,
                "timed out after 0.2 seconds");
    CHECK_ERROR(bioxen_vm_execute(with_default, LIT("while true do end"), NULL, 100, &r),
                BIOXEN_VM_STATUS_TIMEOUT, "timed out after 0.1 seconds");
    CHECK_OK(run_lua(with_default, "return 1", &r));
    CHECK_TEXT(r.stdout_text, "1\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(with_default));
}

static void test_info(void)
{
    bioxen_vm_bytes info = {NULL, 0};
    bool was_running = true;

    CHECK_OK(bioxen_vm_interrupt(vm, &was_running));
    CHECK(!was_running);

    CHECK_OK(bioxen_vm_info(vm, &info));
    CHECK(info.data != NULL && info.len > 2 && info.data[0] == '{' &&
          info.data[info.len - 1] == '}' && info.data[info.len] == '\0');
    CHECK_CONTAINS(info.data, "\"vm_type\":\"basic\"");
    CHECK_CONTAINS(info.data, "\"sandbox\":\"default\"");
    CHECK_CONTAINS(info.data, "\"running\":false");
    CHECK_CONTAINS(info.data, "\"poisoned\":false");
    CHECK_CONTAINS(info.data, "\"executions\":");
    CHECK_CONTAINS(info.data, "\"failed_executions\":");
    CHECK_CONTAINS(info.data, "\"created_at\":");
    CHECK_CONTAINS(info.data, "\"vm_name\":");
    CHECK_CONTAINS(info.data, "\"cached_chunks\":");
    bioxen_vm_bytes_free(&info);
}

int main(void)
{
    CHECK_OK(bioxen_vm_new(NULL, &vm));
    test_results();
    test_lua_errors();
    test_empty_code();
    test_code_with_nul();
    test_binary_output();
    test_arguments();
    test_persistence_and_isolation();
    test_max_output();
    test_sandbox();
    test_memory_limit();
    test_timeouts();
    test_info();
    CHECK_OK(bioxen_vm_free(vm));
    return check_summary();
}
