/*
 * Regression test: a log callback may call bioxen_vm_set_log_callback() (for example to
 * remove itself, or to lower the level): the library never calls the callback with its
 * callback lock held, so this returns and takes effect.
 */
#include "check.h"

#include <errno.h>
#include <stdbool.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER;
static bool done = false;
static int callbacks = 0;

static void remove_myself(int32_t level, const char *target, const char *message, void *data)
{
    (void)level;
    (void)target;
    (void)message;
    (void)data;
    callbacks++;
    (void)bioxen_vm_set_log_callback(NULL, NULL, 0);
}

static void *log_something(void *arg)
{
    bioxen_vm_result r = empty_result();
    uint64_t vm = 0;
    (void)arg;
    if (bioxen_vm_new("{\"debug_mode\": true}", &vm) == BIOXEN_VM_STATUS_OK) {
        if (run_lua(vm, "return 1", &r) == BIOXEN_VM_STATUS_OK) {
            bioxen_vm_result_free(&r);
        }
        (void)bioxen_vm_free(vm);
    }
    if (pthread_mutex_lock(&lock) != 0) {
        abort();
    }
    done = true;
    if (pthread_cond_signal(&finished) != 0 || pthread_mutex_unlock(&lock) != 0) {
        abort();
    }
    return NULL;
}

int main(void)
{
    pthread_t thread;
    struct timespec deadline;
    int rc = 0;

    CHECK_OK(bioxen_vm_set_log_callback(remove_myself, NULL, 5));
    CHECK(pthread_create(&thread, NULL, log_something, NULL) == 0);
    CHECK(clock_gettime(CLOCK_REALTIME, &deadline) == 0);
    deadline.tv_sec += 5;
    if (pthread_mutex_lock(&lock) != 0) {
        abort();
    }
    while (!done && rc == 0) {
        rc = pthread_cond_timedwait(&finished, &lock, &deadline);
    }
    CHECK(rc == 0 || rc == ETIMEDOUT);
    if (pthread_mutex_unlock(&lock) != 0) {
        abort();
    }
    CHECK(done); /* the bug: the logging thread is stuck inside the callback */
    if (done) {
        CHECK(pthread_join(thread, NULL) == 0);
        CHECK(callbacks >= 1);
    } else {
        printf("the thread that logged is stuck in bioxen_vm_set_log_callback\n");
    }
    return check_summary(); /* exits even with the stuck thread */
}
