/*
 * anomalyd: the service. Thin: arguments, config, signals, then the loop of
 * service.c.
 *
 *   anomalyd [--config FILE] [--consumer NAME] [--exit-when-idle MS]
 *            [--print-config] [--check-config] [--version]
 *
 * SIGTERM/SIGINT: finish the entry in hand, then exit 0. A second signal
 * exits at once (what was in hand stays pending and is redelivered).
 * SIGUSR1: log the stats line (and the running/paused state).
 * Exit codes: 0 clean stop, 1 the service could not go on (a server
 * refused us at start-up: bad URL/DSN, authentication), 2 bad arguments or
 * configuration.
 *
 * [http] listen (unless empty) serves /metrics, /livez and /readyz; an
 * address that does not bind is a configuration error (exit 2). With
 * $NOTIFY_SOCKET set (systemd Type=notify) the service speaks the notify
 * protocol (an_notify.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "an_config.h"
#include "an_http.h"
#include "an_log.h"
#include "an_metrics.h"
#include "an_notify.h"
#include "an_service.h"
#include "an_version.h"

static volatile sig_atomic_t g_stop;
static volatile sig_atomic_t g_stats;

static void on_usr1(int sig)
{
    (void)sig;
    g_stats = 1;
}

static void on_signal(int sig)
{
    if (g_stop) {
        /* Second signal: leave now; nothing is lost, the entry is pending. */
        static const char msg[] = "anomalyd: second signal, exiting now\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + sig);
    }
    g_stop = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: anomalyd [--config FILE] [--consumer NAME] [--exit-when-idle MS]\n"
            "                [--print-config] [--check-config] [--version]\n"
            "Reads ANOMALYD_REDIS_URL and ANOMALYD_PG_DSN unless the config says otherwise;\n"
            "every key can be overridden with ANOMALYD_<SECTION>_<KEY>.\n");
}

/* The systemd notifier ($NOTIFY_SOCKET), the metrics registry (always
 * kept: it is also where the state of STATUS= lines lives) and its
 * endpoint (only with [http] listen). Returns 0, or the exit code after
 * printing why: 2 for an [http] listen that does not bind, 1 otherwise.
 * The caller frees whatever was set, on success or not. */
static int start_reporting(const an_config *cfg, an_metrics **metrics, an_http **http,
                           an_notify **notify)
{
    char err[512];
    if (an_notify_from_env(NULL, notify, err, sizeof err)) {
        fprintf(stderr, "anomalyd: systemd notify: %s\n", err);
        return 1;
    }
    *metrics = an_metrics_new(NULL);
    if (!*metrics) {
        fprintf(stderr, "anomalyd: out of memory\n");
        return 1;
    }
    if (!cfg->http.listen[0])
        return 0;
    an_http_opts ho = {.listen = cfg->http.listen, .metrics = *metrics,
                       .live_max_age_ms = cfg->http.live_max_age_ms};
    int rc = an_http_start(&ho, http, err, sizeof err);
    if (rc) {
        fprintf(stderr, "anomalyd: %s[http] listen %s\n",
                rc == AN_ECONFIG ? "configuration error: " : "", err);
        return rc == AN_ECONFIG ? 2 : 1;
    }
    return 0;
}

/* The command line of anomalyd. */
typedef struct daemon_args {
    const char *config_path, *consumer;
    long long idle_ms; /* --exit-when-idle; -1: never */
    bool print_config, check_only;
    bool done; /* --version or --help was printed: exit with status 0 */
} daemon_args;

/* Fills a from argv. 0 (a->done: stop with status 0), or 2 (usage error,
 * printed). */
static int parse_args(int argc, char **argv, daemon_args *a)
{
    *a = (daemon_args){.idle_ms = -1};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(o, "--config") && has_val) {
            a->config_path = argv[++i];
        } else if (!strcmp(o, "--consumer") && has_val) {
            a->consumer = argv[++i];
        } else if (!strcmp(o, "--exit-when-idle") && has_val) {
            char *end;
            errno = 0;
            a->idle_ms = strtoll(argv[++i], &end, 10);
            if (errno || *end || a->idle_ms < 0) {
                fprintf(stderr, "anomalyd: --exit-when-idle: '%s' is not a "
                        "number of milliseconds\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(o, "--print-config")) {
            a->print_config = true;
        } else if (!strcmp(o, "--check-config")) {
            a->check_only = true;
        } else if (!strcmp(o, "--version")) {
            printf("anomalyd %s\n", an_version());
            a->done = true;
            return 0;
        } else if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            a->done = true;
            return 0;
        } else {
            fprintf(stderr, "anomalyd: unknown or incomplete option '%s'\n", o);
            usage(stderr);
            return 2;
        }
    }
    return 0;
}

/* Loads the configuration of a into cfg (--consumer applied). 0, or 2
 * (configuration error, printed; cfg is freed). */
static int load_config(const daemon_args *a, an_config *cfg)
{
    char err[512];
    if (an_config_load(cfg, a->config_path, err, sizeof err)) {
        fprintf(stderr, "anomalyd: configuration error: %s\n", err);
        return 2;
    }
    if (a->consumer && an_config_set(cfg, "streams", "consumer", a->consumer,
                                     "--consumer", err, sizeof err)) {
        fprintf(stderr, "anomalyd: configuration error: %s\n", err);
        an_config_free(cfg);
        return 2;
    }
    return 0;
}

/* SIGTERM/SIGINT stop the service, SIGUSR1 logs its counters, SIGPIPE is
 * ignored (a closed socket is an error return, not a death). */
static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction su;
    memset(&su, 0, sizeof su);
    su.sa_handler = on_usr1;
    su.sa_flags = SA_RESTART;
    sigemptyset(&su.sa_mask);
    sigaction(SIGUSR1, &su, NULL);
}

/* Runs the service on cfg until it stops. The exit status: 0 stopped
 * cleanly, 1 failed or aborted, 2 bad [http] listen (printed or logged). */
static int run_service(const an_config *cfg, long long idle_ms)
{
    char err[512];
    /* What the service reports to (an_service_opts borrows them). */
    an_metrics *metrics = NULL;
    an_http *http = NULL;
    an_notify *notify = NULL;
    an_service *svc = NULL;
    int code = start_reporting(cfg, &metrics, &http, &notify);
    if (code)
        goto out;
    code = 1;
    an_service_opts opts = {.exit_when_idle_ms = idle_ms, .stop = &g_stop, .stats = &g_stats,
                            .metrics = metrics, .notify = notify};
    if (an_service_new(cfg, &opts, &svc, err, sizeof err)) {
        fprintf(stderr, "anomalyd: %s\n", err);
        goto out;
    }
    an_info("{TAG:ANOM.START} anomalyd %s starting", an_version());
    if (http)
        an_info("http: /metrics, /livez, /readyz on port %d ([http] listen %s)",
                an_http_port(http), cfg->http.listen);
    int rc = an_service_run(svc);
    if (rc == 0)
        an_info("{TAG:ANOM.STOP.OK}");
    else
        an_error("{TAG:ANOM.STOP.ABORT} code %d", rc);
    code = rc == 0 ? 0 : 1;
out:
    an_service_free(svc);
    an_http_stop(http);   /* before the metrics it reads */
    an_metrics_free(metrics);
    an_notify_free(notify);
    return code;
}

int main(int argc, char **argv)
{
    daemon_args a;
    an_config cfg;
    int code = parse_args(argc, argv, &a);
    if (code || a.done)
        return code;
    if ((code = load_config(&a, &cfg)))
        return code;
    if (a.print_config || a.check_only) {
        if (a.print_config)
            an_config_print(&cfg, stdout);
        an_config_free(&cfg);
        return 0;
    }
    an_log_set_level(cfg.log.level);
    an_log_set_tag(cfg.streams.consumer);
    install_signals();
    code = run_service(&cfg, a.idle_ms);
    an_config_free(&cfg);
    return code;
}
