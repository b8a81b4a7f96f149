/*
 * Threads: interrupting from another pthread, 16 threads executing on and freeing one VM
 * at once (only OK / INVALID_HANDLE), the same race on a manager, freeing a VM while
 * another thread runs code on it, interrupts racing with short executions, many deadlines
 * at once, VMs used in parallel, and the per-thread last error message.
 */
#include "check.h"

#include <stdbool.h>

#define THREADS 16

/* ---- interrupt from another thread ---------------------------------------------------- */

struct runner {
    uint64_t vm;
    const char *code;
    uint64_t timeout_ms;
    int32_t status;
    bioxen_vm_result result;
};

static void *run_code(void *arg)
{
    struct runner *run = arg;
    run->status = bioxen_vm_execute(run->vm, run->code, strlen(run->code), NULL,
                                    run->timeout_ms, &run->result);
    return NULL;
}

static void start_runner(struct runner *run, pthread_t *thread, uint64_t vm, const char *code,
                         uint64_t timeout_ms)
{
    memset(run, 0, sizeof *run);
    run->vm = vm;
    run->code = code;
    run->timeout_ms = timeout_ms;
    run->status = -1;
    CHECK(pthread_create(thread, NULL, run_code, run) == 0);
}

/* Interrupts until the VM says it stopped running code; returns whether it did. */
static bool interrupt_until_stopped(uint64_t vm)
{
    bool was_running = false;
    int tries;
    for (tries = 0; tries < 4000 && !was_running; tries++) {
        if (bioxen_vm_interrupt(vm, &was_running) != BIOXEN_VM_STATUS_OK) {
            return false;
        }
        if (!was_running) {
            sleep_ms(5);
        }
    }
    return was_running;
}

static void test_interrupt_from_thread(void)
{
    static const char *loops[] = {
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "local co = coroutine.wrap(function() while true do coroutine.yield() end end) "
        "while true do co() end",
        "while true do local ok = pcall(error, 'x') end",
    };
    uint64_t vm = 0;
    bioxen_vm_result r = empty_result();
    size_t i;

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(run_lua(vm, "kept = 'after interrupts'", &r));
    bioxen_vm_result_free(&r);
    for (i = 0; i < sizeof loops / sizeof loops[0]; i++) {
        struct runner run;
        pthread_t thread;
        start_runner(&run, &thread, vm, loops[i], 0);
        CHECK(interrupt_until_stopped(vm));
        CHECK(pthread_join(thread, NULL) == 0);
        CHECK(run.status == BIOXEN_VM_STATUS_INTERRUPTED);
        CHECK(run.result.stdout_text.data == NULL);
    }
    /* The VM keeps its state, and nothing of the interrupts leaks into the next call. */
    CHECK_OK(run_lua(vm, "local t = os.clock() while os.clock() - t < 0.05 do end return kept",
                     &r));
    CHECK_TEXT(r.stdout_text, "after interrupts\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));
}

/* ---- 16 threads execute on one VM while all of them try to free it --------------------- */

enum { ROUNDS = 8, ITERATIONS = 24, FREE_AT = 12 };

struct racer {
    uint64_t vm;
    pthread_barrier_t *start;
    int unexpected;      /* statuses other than OK / INVALID_HANDLE */
    int bad_results;     /* OK results that are not what the code returns */
    int frees_ok;
    int seen;            /* how many counter values this thread got back */
    long values[ITERATIONS];
};

static void *race_execute_and_free(void *arg)
{
    struct racer *racer = arg;
    int i;
    int rc = pthread_barrier_wait(racer->start);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) {
        racer->unexpected++;
        return NULL;
    }
    for (i = 0; i < ITERATIONS; i++) {
        bioxen_vm_result r = empty_result();
        int32_t s;
        if (i == FREE_AT) {
            s = bioxen_vm_free(racer->vm);
            if (s == BIOXEN_VM_STATUS_OK) {
                racer->frees_ok++;
            } else if (s != BIOXEN_VM_STATUS_INVALID_HANDLE) {
                racer->unexpected++;
            }
        }
        s = run_lua(racer->vm, "n = n + 1 return n", &r);
        if (s == BIOXEN_VM_STATUS_OK) {
            char *end = NULL;
            long v = r.stdout_text.len > 0 ? strtol(r.stdout_text.data, &end, 10) : -1;
            if (!r.success || end == NULL || *end != '\n') {
                racer->bad_results++;
            } else {
                racer->values[racer->seen++] = v;
            }
            bioxen_vm_result_free(&r);
        } else if (s != BIOXEN_VM_STATUS_INVALID_HANDLE) {
            racer->unexpected++;
        }
        if (i % 4 == 0) {
            bioxen_vm_bytes info = {NULL, 0};
            s = bioxen_vm_info(racer->vm, &info);
            if (s == BIOXEN_VM_STATUS_OK) {
                bioxen_vm_bytes_free(&info);
            } else if (s != BIOXEN_VM_STATUS_INVALID_HANDLE) {
                racer->unexpected++;
            }
        }
    }
    return NULL;
}

static void test_execute_free_race(void)
{
    int round;
    for (round = 0; round < ROUNDS; round++) {
        static struct racer racers[THREADS];
        static char seen_value[THREADS * ITERATIONS + 1];
        pthread_t threads[THREADS];
        pthread_barrier_t start;
        bioxen_vm_result r = empty_result();
        uint64_t vm = 0;
        int i, j, frees_ok = 0, unexpected = 0, bad = 0, total = 0, duplicates = 0;

        CHECK_OK(bioxen_vm_new(NULL, &vm));
        CHECK_OK(run_lua(vm, "n = 0", &r));
        bioxen_vm_result_free(&r);
        CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
        for (i = 0; i < THREADS; i++) {
            memset(&racers[i], 0, sizeof racers[i]);
            racers[i].vm = vm;
            racers[i].start = &start;
            CHECK(pthread_create(&threads[i], NULL, race_execute_and_free, &racers[i]) == 0);
        }
        memset(seen_value, 0, sizeof seen_value);
        for (i = 0; i < THREADS; i++) {
            CHECK(pthread_join(threads[i], NULL) == 0);
            frees_ok += racers[i].frees_ok;
            unexpected += racers[i].unexpected;
            bad += racers[i].bad_results;
            for (j = 0; j < racers[i].seen; j++) {
                long v = racers[i].values[j];
                /* Each thread sees its values grow (its calls ran in order)... */
                if (j > 0 && v <= racers[i].values[j - 1]) {
                    bad++;
                }
                if (v < 1 || v > THREADS * ITERATIONS) {
                    bad++;
                } else if (seen_value[v]++) {
                    duplicates++;
                }
                total++;
            }
        }
        CHECK(pthread_barrier_destroy(&start) == 0);
        CHECK(frees_ok == 1);
        CHECK(unexpected == 0);
        CHECK(bad == 0);
        CHECK(duplicates == 0);
        /* ...and together the threads saw 1..total: one call at a time, none lost. */
        for (i = 1; i <= total; i++) {
            if (!seen_value[i]) {
                bad++;
            }
        }
        CHECK(bad == 0);
        CHECK(total >= FREE_AT);
        CHECK_ERROR(bioxen_vm_free(vm), BIOXEN_VM_STATUS_INVALID_HANDLE, "not a live VM handle");
    }
}

/* ---- the same race on a manager: executing, creating, removing, freeing ------------------ */

struct manager_racer {
    uint64_t manager;
    int index;
    pthread_barrier_t *start;
    int unexpected;
    int frees_ok;
};

static int allowed_manager_status(int32_t s)
{
    switch (s) {
    case BIOXEN_VM_STATUS_OK:
    case BIOXEN_VM_STATUS_INVALID_HANDLE:
    case BIOXEN_VM_STATUS_VM_NOT_FOUND:
    case BIOXEN_VM_STATUS_VM_ALREADY_EXISTS:
    case BIOXEN_VM_STATUS_INTERRUPTED:
    case BIOXEN_VM_STATUS_VM_MANAGER_ERROR:
        return 1;
    default:
        return 0;
    }
}

static void *race_manager(void *arg)
{
    struct manager_racer *racer = arg;
    char id[32];
    int i;
    int rc = pthread_barrier_wait(racer->start);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) {
        racer->unexpected++;
        return NULL;
    }
    snprintf(id, sizeof id, "vm%d", racer->index % 4);
    for (i = 0; i < ITERATIONS; i++) {
        bioxen_vm_result r = empty_result();
        bioxen_vm_bytes json = {NULL, 0};
        uint64_t job = 0;
        int32_t s;
        if (i == FREE_AT) {
            s = bioxen_vm_manager_free(racer->manager);
            if (s == BIOXEN_VM_STATUS_OK) {
                racer->frees_ok++;
            } else if (s != BIOXEN_VM_STATUS_INVALID_HANDLE) {
                racer->unexpected++;
            }
        }
        switch (i % 6) {
        case 0:
            s = bioxen_vm_manager_create_vm(racer->manager, id, NULL);
            break;
        case 1:
        case 2:
            s = bioxen_vm_manager_execute(racer->manager, id, LIT("x = (x or 0) + 1 return x"),
                                          NULL, 0, &r);
            bioxen_vm_result_free(&r);
            break;
        case 3:
            s = bioxen_vm_manager_execute_async(racer->manager, id, LIT("return 1"), NULL, 0,
                                                &job);
            if (s == BIOXEN_VM_STATUS_OK) {
                int32_t w = bioxen_vm_job_wait(job, 0, &r);
                if (w != BIOXEN_VM_STATUS_OK && w != BIOXEN_VM_STATUS_CANCELLED &&
                    w != BIOXEN_VM_STATUS_INTERRUPTED) {
                    racer->unexpected++;
                }
                bioxen_vm_result_free(&r);
                if (bioxen_vm_job_free(job) != BIOXEN_VM_STATUS_OK) {
                    racer->unexpected++;
                }
            }
            break;
        case 4:
            s = bioxen_vm_manager_list_vms(racer->manager, &json);
            bioxen_vm_bytes_free(&json);
            if (s == BIOXEN_VM_STATUS_OK) {
                s = bioxen_vm_manager_stats(racer->manager, &json);
                bioxen_vm_bytes_free(&json);
            }
            break;
        default:
            s = bioxen_vm_manager_remove_vm(racer->manager, id);
            break;
        }
        if (!allowed_manager_status(s)) {
            racer->unexpected++;
        }
    }
    return NULL;
}

static void test_manager_race(void)
{
    int round;
    for (round = 0; round < ROUNDS / 2; round++) {
        struct manager_racer racers[THREADS];
        pthread_t threads[THREADS];
        pthread_barrier_t start;
        uint64_t m = 0;
        int i, frees_ok = 0, unexpected = 0;

        CHECK_OK(bioxen_vm_manager_new("{\"max_workers\": 4}", &m));
        CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
        for (i = 0; i < THREADS; i++) {
            memset(&racers[i], 0, sizeof racers[i]);
            racers[i].manager = m;
            racers[i].index = i;
            racers[i].start = &start;
            CHECK(pthread_create(&threads[i], NULL, race_manager, &racers[i]) == 0);
        }
        for (i = 0; i < THREADS; i++) {
            CHECK(pthread_join(threads[i], NULL) == 0);
            frees_ok += racers[i].frees_ok;
            unexpected += racers[i].unexpected;
        }
        CHECK(pthread_barrier_destroy(&start) == 0);
        CHECK(frees_ok == 1);
        CHECK(unexpected == 0);
    }
}

/* ---- freeing a VM while another thread runs code on it ----------------------------------- */

static void test_free_while_running(void)
{
    struct runner run;
    pthread_t thread;
    bioxen_vm_bytes info = {NULL, 0};
    uint64_t vm = 0;
    int i, running = 0;

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    start_runner(&run, &thread, vm, "while true do end", 1000);
    for (i = 0; i < 2000 && !running; i++) {
        if (bioxen_vm_info(vm, &info) != BIOXEN_VM_STATUS_OK) {
            break;
        }
        running = strstr(info.data, "\"running\":true") != NULL;
        bioxen_vm_bytes_free(&info);
        if (!running) {
            sleep_ms(2);
        }
    }
    CHECK(running);
    CHECK_OK(bioxen_vm_free(vm));
    CHECK_ERROR(bioxen_vm_interrupt(vm, NULL), BIOXEN_VM_STATUS_INVALID_HANDLE,
                "not a live VM handle");
    CHECK(pthread_join(thread, NULL) == 0);
    /* The execution that was running was not cut short: it went on to its 1 s timeout. */
    CHECK(run.status == BIOXEN_VM_STATUS_TIMEOUT);
    CHECK(run.result.stdout_text.data == NULL);
}

/* ---- interrupts racing with short executions --------------------------------------------- */

struct spammer {
    uint64_t vm;
    pthread_mutex_t lock;
    int stop;
    int failures;
};

static int spammer_should_stop(struct spammer *sp)
{
    int stop;
    if (pthread_mutex_lock(&sp->lock) != 0) {
        abort();
    }
    stop = sp->stop;
    if (pthread_mutex_unlock(&sp->lock) != 0) {
        abort();
    }
    return stop;
}

static void *spam_interrupts(void *arg)
{
    struct spammer *sp = arg;
    while (!spammer_should_stop(sp)) {
        if (bioxen_vm_interrupt(sp->vm, NULL) != BIOXEN_VM_STATUS_OK) {
            sp->failures++;
        }
    }
    return NULL;
}

static void test_interrupt_storm(void)
{
    struct spammer sp;
    pthread_t thread;
    bioxen_vm_result r = empty_result();
    uint64_t vm = 0;
    int i, unexpected = 0;

    CHECK_OK(bioxen_vm_new(NULL, &vm));
    CHECK_OK(run_lua(vm, "total = 0", &r));
    bioxen_vm_result_free(&r);
    memset(&sp, 0, sizeof sp);
    sp.vm = vm;
    CHECK(pthread_mutex_init(&sp.lock, NULL) == 0);
    CHECK(pthread_create(&thread, NULL, spam_interrupts, &sp) == 0);
    for (i = 0; i < 300; i++) {
        int32_t s = run_lua(vm, "local s = 0 for i = 1, 1000 do s = s + i end total = total + 1 "
                                "return s",
                            &r);
        if (s == BIOXEN_VM_STATUS_OK) {
            if (r.stdout_text.len != 7 || memcmp(r.stdout_text.data, "500500\n", 7) != 0) {
                unexpected++;
            }
            bioxen_vm_result_free(&r);
        } else if (s != BIOXEN_VM_STATUS_INTERRUPTED) {
            unexpected++;
        }
    }
    CHECK(pthread_mutex_lock(&sp.lock) == 0);
    sp.stop = 1;
    CHECK(pthread_mutex_unlock(&sp.lock) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(pthread_mutex_destroy(&sp.lock) == 0);
    CHECK(sp.failures == 0);
    CHECK(unexpected == 0);
    /* Once the interrupts stop, executions run to their end again. */
    CHECK_OK(run_lua(vm, "return 'calm'", &r));
    CHECK_TEXT(r.stdout_text, "calm\n");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));
}

/* ---- many VMs in parallel, many deadlines at once ---------------------------------------- */

static void test_parallel_timeouts(void)
{
    enum { N = 8 };
    struct runner runs[N];
    pthread_t threads[N];
    uint64_t vms[N];
    bioxen_vm_result r = empty_result();
    int i;

    for (i = 0; i < N; i++) {
        vms[i] = 0;
        CHECK_OK(bioxen_vm_new(NULL, &vms[i]));
        /* Different limits, so the watchdog juggles several deadlines. */
        start_runner(&runs[i], &threads[i], vms[i], "while true do end", 100 + 25 * (uint64_t)i);
    }
    for (i = 0; i < N; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(runs[i].status == BIOXEN_VM_STATUS_TIMEOUT);
        CHECK_OK(run_lua(vms[i], "return 'alive'", &r));
        CHECK_TEXT(r.stdout_text, "alive\n");
        bioxen_vm_result_free(&r);
        CHECK_OK(bioxen_vm_free(vms[i]));
    }
}

struct worker {
    int index;
    int failures;
};

static void *own_vm_worker(void *arg)
{
    struct worker *w = arg;
    bioxen_vm_result r = empty_result();
    uint64_t vm = 0;
    char expected[32];
    int i;
    if (bioxen_vm_new(NULL, &vm) != BIOXEN_VM_STATUS_OK) {
        w->failures++;
        return NULL;
    }
    snprintf(expected, sizeof expected, "%d\n", w->index * 1000 + 50);
    for (i = 0; i < 50; i++) {
        char code[64];
        snprintf(code, sizeof code, "v = (v or %d) + 1 return v", w->index * 1000);
        if (run_lua(vm, code, &r) != BIOXEN_VM_STATUS_OK || !r.success) {
            w->failures++;
        }
        if (i == 49 && (r.stdout_text.len != strlen(expected) ||
                        memcmp(r.stdout_text.data, expected, strlen(expected)) != 0)) {
            w->failures++;
        }
        bioxen_vm_result_free(&r);
    }
    if (bioxen_vm_free(vm) != BIOXEN_VM_STATUS_OK) {
        w->failures++;
    }
    return NULL;
}

static void test_parallel_vms(void)
{
    struct worker workers[THREADS];
    pthread_t threads[THREADS];
    int i;
    for (i = 0; i < THREADS; i++) {
        workers[i].index = i;
        workers[i].failures = 0;
        CHECK(pthread_create(&threads[i], NULL, own_vm_worker, &workers[i]) == 0);
    }
    for (i = 0; i < THREADS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(workers[i].failures == 0);
    }
}

/* ---- the last error message is per thread ------------------------------------------------ */

struct error_thread {
    pthread_barrier_t *step;
    int fail;
    int ok;
};

static void *error_per_thread(void *arg)
{
    struct error_thread *t = arg;
    uint64_t vm = 0;
    int rc;
    if (t->fail) {
        t->ok = bioxen_vm_free(424242) == BIOXEN_VM_STATUS_INVALID_HANDLE;
    } else {
        t->ok = bioxen_vm_new(NULL, &vm) == BIOXEN_VM_STATUS_OK;
    }
    rc = pthread_barrier_wait(t->step); /* both made their call */
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) {
        t->ok = 0;
    }
    if (t->fail) {
        const char *m = bioxen_vm_last_error_message();
        t->ok = t->ok && m != NULL && strstr(m, "not a live VM handle") != NULL;
    } else {
        t->ok = t->ok && bioxen_vm_last_error_message() == NULL;
        t->ok = t->ok && bioxen_vm_free(vm) == BIOXEN_VM_STATUS_OK;
    }
    return NULL;
}

static void test_last_error_per_thread(void)
{
    struct error_thread a, b;
    pthread_t ta, tb;
    pthread_barrier_t step;
    CHECK(pthread_barrier_init(&step, NULL, 2) == 0);
    a.step = &step;
    a.fail = 1;
    a.ok = 0;
    b.step = &step;
    b.fail = 0;
    b.ok = 0;
    CHECK(pthread_create(&ta, NULL, error_per_thread, &a) == 0);
    CHECK(pthread_create(&tb, NULL, error_per_thread, &b) == 0);
    CHECK(pthread_join(ta, NULL) == 0);
    CHECK(pthread_join(tb, NULL) == 0);
    CHECK(a.ok);
    CHECK(b.ok);
    CHECK(pthread_barrier_destroy(&step) == 0);
}

int main(void)
{
    test_interrupt_from_thread();
    test_execute_free_race();
    test_manager_race();
    test_free_while_running();
    test_interrupt_storm();
    test_parallel_timeouts();
    test_parallel_vms();
    test_last_error_per_thread();
    return check_summary();
}
