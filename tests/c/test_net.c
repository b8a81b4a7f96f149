/*
 * Networked VMs through the C API on 127.0.0.1: a server job and a client, a P2P ring of
 * two, validate_port/validate_host, script templates, and bad input.
 */
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define NETWORKED "{\"networked\": true, \"lua_executable\": \"lua5.4\"}"

/* A port the kernel considers free now (bound to port 0, then released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void test_server_and_client(void)
{
    uint64_t m = 0, job = 0, client = 0;
    char opts[160];
    int port = free_port();
    bioxen_vm_result r = empty_result();

    CHECK_OK(bioxen_vm_manager_new(NULL, &m));
    CHECK_OK(bioxen_vm_manager_create_vm(m, "srv", NETWORKED));
    snprintf(opts, sizeof opts, "{\"port\": %d, \"accept_timeout\": 20}", port);
    CHECK_OK(bioxen_vm_manager_net_start(m, "srv", "server", opts, 30000, &job));
    CHECK_OK(bioxen_vm_new(NETWORKED, &client));
    snprintf(opts, sizeof opts,
             "{\"host\": \"127.0.0.1\", \"port\": %d, \"message\": \"from C\", "
             "\"connect_timeout\": 2}",
             port);
    /* The server job may not listen yet: retry for a bounded time. */
    for (int i = 0; i < 200; i++) {
        bioxen_vm_result_free(&r);
        CHECK_OK(bioxen_vm_net_run(client, "client", opts, 10000, &r));
        if (r.success) {
            break;
        }
        sleep_ms(50);
    }
    CHECK(r.success);
    CHECK_CONTAINS(r.stdout_text.data, "Lua Client: Sent message: 'from C'");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_job_wait(job, 30000, &r));
    CHECK_CONTAINS(r.stdout_text.data, "Lua Server: Received from client: from C");
    CHECK_CONTAINS(r.values_json.data, "\"received\":\"from C\"");
    bioxen_vm_result_free(&r);
    CHECK_OK(bioxen_vm_job_free(job));

    /* Bad input. */
    CHECK_ERROR(bioxen_vm_net_run(client, "server", "{\"port\": 80}", 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Port must be between 1024 and 65535");
    CHECK_ERROR(bioxen_vm_net_run(client, "client", "{\"host\": \" \", \"port\": 5000}", 0, &r),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "Host cannot be empty");
    CHECK_ERROR(bioxen_vm_net_run(client, NULL, "{}", 0, &r), BIOXEN_VM_STATUS_NULL_POINTER,
                "mode");
    CHECK_ERROR(bioxen_vm_net_run(client, "server", "{\"port\": 5000}", 0, NULL),
                BIOXEN_VM_STATUS_NULL_POINTER, "out_result");
    CHECK_ERROR(bioxen_vm_net_run(0, "server", "{\"port\": 5000}", 0, &r),
                BIOXEN_VM_STATUS_INVALID_HANDLE, "");
    CHECK_OK(bioxen_vm_manager_create_vm(m, "plain", NULL));
    CHECK_ERROR(bioxen_vm_manager_net_start(m, "plain", "server", "{\"port\": 5000}", 0, &job),
                BIOXEN_VM_STATUS_NETWORKING_ERROR, "Networked VM 'plain' not found");
    CHECK_ERROR(bioxen_vm_manager_net_start(m, "srv", "fly", "{}", 0, &job),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "unknown network mode");
    CHECK_OK(bioxen_vm_free(client));
    CHECK_OK(bioxen_vm_manager_free(m));
}

static void test_p2p_ring(void)
{
    uint64_t m = 0;
    bioxen_vm_bytes jobs = {0};
    bioxen_vm_bytes results = {0};
    int base = 0;
    /* Two consecutive free ports. */
    for (int tries = 0; tries < 50 && base == 0; tries++) {
        int p = free_port();
        if (p < 65535) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a;
            memset(&a, 0, sizeof a);
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons((uint16_t)(p + 1));
            if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0) {
                base = p;
            }
            close(fd);
        }
    }
    CHECK(base != 0);
    CHECK_OK(bioxen_vm_manager_new(NULL, &m));
    CHECK_OK(bioxen_vm_manager_setup_p2p_cluster(m, "ring", 2, base, 1.0, 0.25,
                                                 "{\"lua_executable\": \"lua5.4\"}", &jobs));
    CHECK_OK(bioxen_vm_wait_for_cluster(jobs.data, 30000, &results));
    CHECK_CONTAINS(results.data, "P2P VM: Connected to peer at 127.0.0.1");
    CHECK_CONTAINS(results.data, "Heartbeat at");
    CHECK_CONTAINS(results.data, "P2P VM: Shutting down after 1");
    /* Free the job handles named in the JSON: {"ring_000":N,"ring_001":M}. */
    const char *p = jobs.data;
    while ((p = strchr(p, ':')) != NULL) {
        p++;
        CHECK_OK(bioxen_vm_job_free(strtoull(p, NULL, 10)));
    }
    bioxen_vm_bytes_free(&jobs);
    bioxen_vm_bytes_free(&results);
    CHECK_ERROR(bioxen_vm_manager_setup_p2p_cluster(m, "one", 1, 9000, 1.0, 0.0, NULL, &jobs),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "P2P cluster requires at least 2 VMs");
    CHECK_ERROR(bioxen_vm_manager_setup_p2p_cluster(m, "x", 2, 9000, -1.0, 0.0, NULL, &jobs),
                BIOXEN_VM_STATUS_INVALID_ARGUMENT, "run_duration");
    CHECK_OK(bioxen_vm_manager_free(m));
}

static void test_validation_and_templates(void)
{
    bioxen_vm_bytes src = {0};
    CHECK_OK(bioxen_vm_validate_port(8080));
    CHECK_ERROR(bioxen_vm_validate_port(1023), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "Port must be between 1024 and 65535");
    CHECK_OK(bioxen_vm_validate_host("example.org"));
    CHECK_ERROR(bioxen_vm_validate_host("  "), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "Host cannot be empty");
    CHECK_ERROR(bioxen_vm_validate_host(NULL), BIOXEN_VM_STATUS_NULL_POINTER, "host");
    CHECK_OK(bioxen_vm_script_template("heartbeat_client",
                                       "{\"host\": \"a\\\"b\", \"port\": 9000}", &src));
    CHECK_CONTAINS(src.data, "\"a\\\"b\"");
    bioxen_vm_bytes_free(&src);
    CHECK_ERROR(bioxen_vm_script_template("nope", NULL, &src), BIOXEN_VM_STATUS_INVALID_ARGUMENT,
                "unknown template");
    CHECK_ERROR(bioxen_vm_script_template("simple_echo_server", "{\"port\": 9000}", NULL),
                BIOXEN_VM_STATUS_NULL_POINTER, "out_source");
}

int main(void)
{
    test_validation_and_templates();
    test_server_and_client();
    test_p2p_ring();
    return check_summary();
}
