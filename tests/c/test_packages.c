/*
 * Package environments through the C API, against the local rocks server that
 * tests/rocks/build_servers.py builds (BIOXEN_TEST_ROCKS: its main server directory; the
 * Makefile's test-c sets it): create, open, list environments, install with a progress
 * callback (on this thread and on another one), list, show, search, lock, sync into a
 * second environment, bootstrap a profile, profiles, health, remove, remove_env; a VM
 * using the environment; typed errors with their error objects; NULL and invalid
 * arguments. With the ssh rig's options (BIOXEN_TEST_SSH_OPTIONS) it also installs into an
 * environment on that host. Without BIOXEN_TEST_ROCKS the test fails: it is never
 * skipped.
 */
/* nftw(3), for removing the scratch directory. */
#define _XOPEN_SOURCE 700
#include "check.h"

#include <ftw.h>
#include <stdarg.h>
#include <unistd.h>

static char scratch[256];
static const char *server;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Formats a request into a static buffer. */
static const char *req(const char *fmt, ...)
{
    static char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

typedef struct {
    int steps;
    int output_lines;
    int luarocks_steps;
    int bad;
} progress_counts;

static int32_t on_progress(const char *event_json, void *user_data)
{
    progress_counts *c = user_data;
    if (event_json == NULL || event_json[0] != '{') {
        c->bad++;
        return 0;
    }
    if (strstr(event_json, "\"event\":\"step\"") != NULL) {
        c->steps++;
        if (strstr(event_json, "\"step\":\"luarocks\"") != NULL) {
            c->luarocks_steps++;
        }
    } else if (strstr(event_json, "\"event\":\"output\"") != NULL) {
        c->output_lines++;
    } else {
        c->bad++;
    }
    return 0;
}

/* Cancels at the first line luarocks prints. */
static int32_t cancel_at_output(const char *event_json, void *user_data)
{
    int *seen = user_data;
    if (strstr(event_json, "\"event\":\"output\"") == NULL) {
        return 0;
    }
    (*seen)++;
    return 1;
}

static void test_lifecycle(void)
{
    bioxen_vm_bytes out = {0};
    char env[320], env2[320];
    snprintf(env, sizeof env, "%s/env", scratch);
    snprintf(env2, sizeof env2, "%s/env2", scratch);

    CHECK_OK(bioxen_vm_packages_create(
        req("{\"path\": \"%s\", \"servers\": [\"%s\"], \"cache\": \"%s/cache\"}", env, server, scratch), &out));
    CHECK_CONTAINS(out.data, "\"lua_version\":\"5.4\"");
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_packages_open(req("{\"env\": \"%s\"}", env), &out));
    CHECK_CONTAINS(out.data, "\"interpreter\":\"lua5.4\"");
    bioxen_vm_bytes_free(&out);

    /* A callback that answers non-zero cancels: luarocks is stopped, nothing is installed. */
    int seen = 0;
    CHECK_ERROR(bioxen_vm_packages_install(req("{\"env\": \"%s\", \"rock\": \"bio_compute\"}", env),
                                           cancel_at_output, &seen, &out),
                BIOXEN_VM_STATUS_CANCELLED, "cancelled by the progress callback");
    CHECK_CONTAINS(out.data, "\"kind\":\"cancelled\"");
    bioxen_vm_bytes_free(&out);
    CHECK(seen == 1);
    CHECK_OK(bioxen_vm_packages_list(req("{\"env\": \"%s\"}", env), &out));
    CHECK(strstr(out.data, "\"name\":\"bio_compute\"") == NULL);
    bioxen_vm_bytes_free(&out);

    progress_counts counts = {0};
    CHECK_OK(bioxen_vm_packages_install(req("{\"env\": \"%s\", \"rock\": \"bio_compute\"}", env), on_progress,
                                        &counts, &out));
    CHECK_CONTAINS(out.data, "\"version\":\"1.0-1\"");
    CHECK_CONTAINS(out.data, "\"exit_status\":0");
    bioxen_vm_bytes_free(&out);
    CHECK(counts.luarocks_steps == 1);
    CHECK(counts.output_lines > 0);
    CHECK(counts.bad == 0);
    /* NULL progress is allowed. */
    CHECK_OK(bioxen_vm_packages_install(req("{\"env\": \"%s\", \"rock\": \"bxt-cmod\"}", env), NULL, NULL, &out));
    bioxen_vm_bytes_free(&out);

    CHECK_OK(bioxen_vm_packages_list(req("{\"env\": \"%s\"}", env), &out));
    CHECK_CONTAINS(out.data, "\"name\":\"bio_compute\"");
    CHECK_CONTAINS(out.data, "\"name\":\"bxt-base\"");
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_packages_show(req("{\"env\": \"%s\", \"rock\": \"bio_compute\"}", env), &out));
    CHECK_CONTAINS(out.data, "\"hash\":\"sha256:");
    bioxen_vm_bytes_free(&out);

    /* A VM that uses it: the basic kind, pure-Lua modules through the sandbox. */
    uint64_t vm = 0;
    bioxen_vm_result r = empty_result();
    CHECK_OK(bioxen_vm_new(req("{\"env\": \"%s\"}", env), &vm));
    CHECK_OK(run_lua(vm, "require('bio_compute') return bio_compute.compute(10)", &r));
    CHECK_TEXT(r.values_json, "[100]");
    bioxen_vm_result_free(&r);
    CHECK_OK(run_lua(vm, "require('bxt_cmod')", &r));
    CHECK(!r.success);
    CHECK_CONTAINS(r.error_message.data, "is a C module");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));
    /* A trusted one loads the C module (the library exports the Lua C API). */
    CHECK_OK(bioxen_vm_new(req("{\"env\": \"%s\", \"sandbox\": \"trusted\"}", env), &vm));
    CHECK_OK(run_lua(vm, "return require('bxt_cmod').kind", &r));
    CHECK_TEXT(r.values_json, "[\"compiled\"]");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_free(vm));

    /* Lock, then a second environment from the lockfile (from the shared cache). */
    CHECK_OK(bioxen_vm_packages_lock(req("{\"env\": \"%s\"}", env), &out));
    CHECK_CONTAINS(out.data, "\"format\":\"bioxen-lock-1\"");
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_packages_create(
        req("{\"path\": \"%s\", \"servers\": [\"%s\"], \"cache\": \"%s/cache\"}", env2, server, scratch), &out));
    bioxen_vm_bytes_free(&out);
    progress_counts sync_counts = {0};
    CHECK_OK(bioxen_vm_packages_sync(req("{\"env\": \"%s\", \"lockfile\": \"%s/bioxen.lock\"}", env2, env),
                                     on_progress, &sync_counts, &out));
    CHECK_CONTAINS(out.data, "\"from_cache\":true");
    bioxen_vm_bytes_free(&out);
    CHECK(sync_counts.luarocks_steps == 0);

    /* Health, profiles, bootstrap of the minimal profile, search. */
    CHECK_OK(bioxen_vm_packages_health(req("{\"env\": \"%s\"}", env), &out));
    CHECK_CONTAINS(out.data, "\"ok\":true");
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_packages_profiles(NULL, &out));
    CHECK_CONTAINS(out.data, "\"standard\":{");
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_packages_bootstrap(req("{\"env\": \"%s\", \"profile\": \"minimal\"}", env2), NULL, NULL,
                                          &out));
    CHECK_CONTAINS(out.data, "\"profile\":\"minimal\"");
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_packages_search(req("{\"query\": \"bio\", \"env\": \"%s\"}", env), &out));
    CHECK_CONTAINS(out.data, "\"name\":\"bio_compute\"");
    bioxen_vm_bytes_free(&out);

    /* Remove; typed errors come with an error object. */
    CHECK_OK(bioxen_vm_packages_remove(req("{\"env\": \"%s\", \"rock\": \"bio_compute\"}", env), NULL, NULL, &out));
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_packages_install(req("{\"env\": \"%s\", \"rock\": \"no-such-rock\"}", env), NULL, NULL,
                                           &out),
                BIOXEN_VM_STATUS_PACKAGE_NOT_FOUND, "no such rock");
    CHECK_CONTAINS(out.data, "\"status_name\":\"PACKAGE_NOT_FOUND\"");
    CHECK_CONTAINS(out.data, "\"kind\":\"no_such_rock\"");
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_packages_install(req("{\"env\": \"%s\", \"rock\": \"bxt-needs-new\"}", env), NULL, NULL,
                                           &out),
                BIOXEN_VM_STATUS_DEPENDENCY_CONFLICT, "bxt-base >= 3.0");
    CHECK_CONTAINS(out.data, "\"exit_status\":1");
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_packages_install(req("{\"env\": \"%s\", \"rock\": \"x; rm -rf ~\"}", env), NULL, NULL,
                                           &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "invalid rock name");
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_packages_remove_env(req("{\"env\": \"%s\"}", env2), &out));
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_packages_open(req("{\"env\": \"%s\"}", env2), &out), BIOXEN_VM_STATUS_ENVIRONMENT_ERROR,
                "no environment");
    bioxen_vm_bytes_free(&out);
}

static void test_named(void)
{
    bioxen_vm_bytes out = {0};
    CHECK_OK(bioxen_vm_packages_create("{\"name\": \"cnamed\"}", &out));
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_packages_environments(NULL, &out));
    CHECK_CONTAINS(out.data, "\"name\":\"cnamed\"");
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_packages_remove_env("{\"env\": \"cnamed\"}", &out));
    bioxen_vm_bytes_free(&out);
}

typedef struct {
    char env[320];
    progress_counts counts;
    int32_t status;
} thread_job;

static void *install_on_thread(void *arg)
{
    thread_job *j = arg;
    bioxen_vm_bytes out = {0};
    j->status = bioxen_vm_packages_install(req("{\"env\": \"%s\", \"rock\": \"bxt-tool\"}", j->env), on_progress,
                                           &j->counts, &out);
    bioxen_vm_bytes_free(&out);
    return NULL;
}

static void test_other_thread(void)
{
    bioxen_vm_bytes out = {0};
    thread_job j = {0};
    snprintf(j.env, sizeof j.env, "%s/threaded", scratch);
    CHECK_OK(bioxen_vm_packages_create(req("{\"path\": \"%s\", \"servers\": [\"%s\"], \"cache\": false}", j.env, server),
                                       &out));
    bioxen_vm_bytes_free(&out);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, install_on_thread, &j) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(j.status == BIOXEN_VM_STATUS_OK);
    CHECK(j.counts.luarocks_steps == 1 && j.counts.bad == 0);
}

static void test_bad_arguments(void)
{
    bioxen_vm_bytes out = {0};
    CHECK_ERROR(bioxen_vm_packages_create("{}", NULL), BIOXEN_VM_STATUS_NULL_POINTER, "out_json");
    CHECK_ERROR(bioxen_vm_packages_install("{\"env\": \"x\", \"rock\": \"y\"}", NULL, NULL, NULL),
                BIOXEN_VM_STATUS_NULL_POINTER, "out_json");
    CHECK_ERROR(bioxen_vm_packages_list("\xff\xfe", &out), BIOXEN_VM_STATUS_INVALID_UTF8, "request_json");
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_packages_list("[1, 2]", &out), BIOXEN_VM_STATUS_INVALID_ARGUMENT, "JSON object");
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_packages_list("{\"env\": \"a\", \"env\": \"b\"}", &out),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "duplicate");
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_packages_list("{}", &out), BIOXEN_VM_STATUS_INVALID_ARGUMENT, "needs 'env'");
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_packages_sync(NULL, NULL, NULL, &out), BIOXEN_VM_STATUS_INVALID_ARGUMENT, "env");
    bioxen_vm_bytes_free(&out);
}

static void test_remote(void)
{
    /* The "ssh" member of a request: the rig's server, user, key and known_hosts. */
    const char *port = getenv("BIOXEN_TEST_SSH_PORT");
    const char *known = getenv("BIOXEN_TEST_SSH_KNOWN_HOSTS");
    const char *rig = getenv("BIOXEN_TEST_SSH_RIG");
    CHECK(port != NULL && known != NULL && rig != NULL);
    if (port == NULL || known == NULL || rig == NULL) {
        return;
    }
    char ssh[1024];
    snprintf(ssh, sizeof ssh,
             "{\"host\": \"127.0.0.1\", \"port\": %s, \"username\": \"bxuser\", \"key_file\": \"%s/client_ed25519\", "
             "\"known_hosts\": \"%s\", \"use_agent\": false}",
             port, rig, known);
    /* The rig serves several runs of this program (plain, then under valgrind): a name of
       this run's own. */
    char name[64];
    snprintf(name, sizeof name, "cremote-%ld", (long)getpid());
    bioxen_vm_bytes out = {0};
    CHECK_OK(bioxen_vm_packages_create(
        req("{\"ssh\": %s, \"name\": \"%s\", \"servers\": [\"%s\"]}", ssh, name, server), &out));
    bioxen_vm_bytes_free(&out);
    CHECK_OK(bioxen_vm_packages_install(req("{\"ssh\": %s, \"env\": \"%s\", \"rock\": \"bxt-base\"}", ssh, name),
                                        NULL, NULL, &out));
    CHECK_CONTAINS(out.data, "\"exit_status\":0");
    bioxen_vm_bytes_free(&out);
    CHECK_ERROR(bioxen_vm_packages_install(req("{\"ssh\": %s, \"env\": \"%s\", \"rock\": \"no-such\"}", ssh, name),
                                           NULL, NULL, &out),
                BIOXEN_VM_STATUS_PACKAGE_NOT_FOUND, "no-such");
    CHECK_CONTAINS(out.data, "\"exit_status\":1");
    bioxen_vm_bytes_free(&out);
}

int main(void)
{
    const char *rocks = getenv("BIOXEN_TEST_ROCKS");
    CHECK(rocks != NULL && rocks[0] == '/');
    if (rocks == NULL || rocks[0] != '/') {
        fprintf(stderr, "BIOXEN_TEST_ROCKS must name the main rocks server (make test-c sets it)\n");
        return check_summary() == 0 ? 1 : 1;
    }
    server = rocks;
    snprintf(scratch, sizeof scratch, "/tmp/bioxen-ctest-packages-XXXXXX");
    CHECK(mkdtemp(scratch) != NULL);
    char data[320];
    snprintf(data, sizeof data, "%s/data", scratch);
    CHECK(setenv("BIOXEN_VM_DATA_DIR", data, 1) == 0);
    test_lifecycle();
    test_named();
    test_other_thread();
    test_bad_arguments();
    test_remote();
    CHECK(nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
    return check_summary();
}
