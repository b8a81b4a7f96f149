/*
 * A tiny test harness shared by the C test programs.
 *
 * Every CHECK_* macro counts one check. A failed check prints file:line, what was
 * expected, and the calling thread's last error message, and the program goes on; at the
 * end check_summary() prints "N passed, M failed" and returns the exit code (0 only when
 * nothing failed). The counters are protected by a mutex, so checks may run on any thread.
 */
#ifndef BIOXEN_VM_TEST_CHECK_H
#define BIOXEN_VM_TEST_CHECK_H

/* Include this header first: it asks for the POSIX functions the tests use. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bioxen_vm.h"

static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long check_passed_count;
static unsigned long check_failed_count;

static inline void check_record(int ok, const char *file, int line, const char *what,
                                const char *detail, const char *last_error)
{
    if (pthread_mutex_lock(&check_lock) != 0) {
        abort();
    }
    if (ok) {
        check_passed_count++;
    } else {
        check_failed_count++;
        fprintf(stderr, "%s:%d: check failed: %s%s%s\n    last error: %s\n", file, line, what,
                detail != NULL ? "\n    " : "", detail != NULL ? detail : "",
                last_error != NULL ? last_error : "(none)");
        fflush(stderr);
    }
    if (pthread_mutex_unlock(&check_lock) != 0) {
        abort();
    }
}

/* Prints the summary line and returns the process exit code. */
static inline int check_summary(void)
{
    printf("%lu passed, %lu failed\n", check_passed_count, check_failed_count);
    fflush(stdout);
    return check_failed_count == 0 ? 0 : 1;
}

/* A boolean condition. */
#define CHECK(cond)                                                                          \
    do {                                                                                     \
        int check_ok_ = (cond) ? 1 : 0;                                                      \
        check_record(check_ok_, __FILE__, __LINE__, #cond, NULL,                             \
                     bioxen_vm_last_error_message());                                        \
    } while (0)

/* A call returning a status, compared with the expected one. */
#define CHECK_STATUS(call, expected)                                                         \
    do {                                                                                     \
        int32_t check_got_ = (call);                                                         \
        int32_t check_want_ = (int32_t)(expected);                                           \
        char check_detail_[160];                                                             \
        snprintf(check_detail_, sizeof check_detail_, "got %s (%d), expected %s (%d)",       \
                 bioxen_vm_status_name(check_got_), (int)check_got_,                         \
                 bioxen_vm_status_name(check_want_), (int)check_want_);                      \
        check_record(check_got_ == check_want_, __FILE__, __LINE__, #call, check_detail_,     \
                     bioxen_vm_last_error_message());                                        \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, BIOXEN_VM_STATUS_OK)

/* A failing call: its status, and a last error message that contains `needle`. */
#define CHECK_ERROR(call, expected, needle)                                                  \
    do {                                                                                     \
        int32_t check_got_ = (call);                                                         \
        const char *check_msg_ = bioxen_vm_last_error_message();                             \
        int check_ok_ = check_got_ == (int32_t)(expected) && check_msg_ != NULL &&           \
                        strstr(check_msg_, (needle)) != NULL;                                \
        char check_detail_[240];                                                             \
        snprintf(check_detail_, sizeof check_detail_,                                        \
                 "got %s (%d), expected %s with a message containing \"%s\"",                \
                 bioxen_vm_status_name(check_got_), (int)check_got_,                         \
                 bioxen_vm_status_name((int32_t)(expected)), (needle));                      \
        check_record(check_ok_, __FILE__, __LINE__, #call, check_detail_, check_msg_);       \
    } while (0)

/* Library bytes equal to `n` exact bytes, followed by the documented NUL. */
#define CHECK_BYTES(b, expected, n)                                                          \
    do {                                                                                     \
        char check_buf_[512];                                                                \
        int check_ok_ = (b).data != NULL && (b).len == (size_t)(n) &&                        \
                        memcmp((b).data, (expected), (size_t)(n)) == 0 &&                    \
                        (b).data[(b).len] == '\0';                                           \
        check_record(check_ok_, __FILE__, __LINE__, #b " == " #expected,                     \
                     check_ok_ ? NULL : check_show_bytes((b), check_buf_, sizeof check_buf_), \
                     NULL);                                                                  \
    } while (0)

/* Library bytes equal to a C string. */
#define CHECK_TEXT(b, expected) CHECK_BYTES(b, expected, strlen(expected))

/* A C string (or library bytes' data) containing `needle`. */
#define CHECK_CONTAINS(text, needle)                                                         \
    check_record((text) != NULL && strstr((text), (needle)) != NULL, __FILE__, __LINE__,     \
                 #text " contains \"" needle "\"", (text), NULL)

/* Renders bytes for a failure message (printable ASCII, the rest as \xNN). */
static inline const char *check_show_bytes(bioxen_vm_bytes b, char *buf, size_t size)
{
    size_t o;
    size_t i;
    if (b.data == NULL) {
        return "data == NULL";
    }
    o = (size_t)snprintf(buf, size, "actual (len %zu): \"", b.len);
    for (i = 0; i < b.len && o + 8 < size; i++) {
        unsigned char c = (unsigned char)b.data[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            buf[o++] = (char)c;
        } else {
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        }
    }
    if (o + 2 < size) {
        buf[o++] = '"';
    }
    buf[o < size ? o : size - 1] = '\0';
    return buf;
}

/* A string literal as the (pointer, length) pair the execute functions take. */
#define LIT(s) (s), (sizeof(s) - 1)

/* A result in the state the library's `_free` accepts. */
static inline bioxen_vm_result empty_result(void)
{
    bioxen_vm_result r;
    memset(&r, 0, sizeof r);
    return r;
}

/* Runs a NUL-terminated chunk on a VM without arguments or per-call limit. */
static inline int32_t run_lua(uint64_t vm, const char *code, bioxen_vm_result *out)
{
    return bioxen_vm_execute(vm, code, strlen(code), NULL, 0, out);
}

/* Sleeps for `ms` milliseconds. */
static inline void sleep_ms(long ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Milliseconds on a monotonic clock. */
static inline double now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        abort();
    }
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

#endif /* BIOXEN_VM_TEST_CHECK_H */
