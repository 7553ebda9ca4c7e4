/*
 * ctl_db.c: anomalyctl db -- the database schema.
 *
 *   anomalyctl db init [--config FILE]   create or migrate the schema
 *   anomalyctl db sql                    print the migrations' SQL
 *
 * init connects with [postgres] dsn (default $ANOMALYD_PG_DSN, see
 * an_config.h), applies every pending migration (src/schema.c), one
 * transaction each under an advisory lock (two concurrent runs are safe),
 * and prints one line per migration applied, then the schema version:
 *   applied migration 1 (htmengine_schema)
 *   applied migration 2 (anomalyd_redesign)
 *   schema at version 2
 * Run again, it applies nothing and prints "schema at version 2 (up to
 * date)". Exit status: 0 ok, 1 failure (message on stderr), 2 usage.
 */
#include <stdio.h>
#include <string.h>

#include "an_config.h"
#include "an_log.h"
#include "an_repo.h"
#include "an_schema.h"
#include "ctl.h"

static const char usage_text[] = "usage: anomalyctl db init [--config FILE]\n"
                                 "       anomalyctl db sql\n";

static void on_applied(void *ud, int version, const char *name)
{
    int *count = ud;
    (*count)++;
    printf("applied migration %d (%s)\n", version, name);
    fflush(stdout);
}

static int db_init(int argc, char **argv)
{
    const char *config = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            config = argv[i] + 9;
        } else {
            fprintf(stderr, "anomalyctl db init: unexpected argument '%s'\n%s", argv[i],
                    usage_text);
            return 2;
        }
    }
    an_config cfg;
    char err[1024];
    if (an_config_load(&cfg, config, err, sizeof err) != 0) {
        fprintf(stderr, "anomalyctl db init: %s\n", err);
        return 1;
    }
    an_log_set_level(cfg.log.level);
    an_repo_options opt = an_repo_options_from_config(&cfg);
    opt.application_name = "anomalyctl";
    an_repo *repo = an_repo_new(&opt);
    an_config_free(&cfg);
    if (!repo) {
        fprintf(stderr, "anomalyctl db init: out of memory\n");
        return 1;
    }
    int applied = 0, version = 0;
    int rc = an_schema_migrate(repo, on_applied, &applied, &version);
    if (rc) {
        fprintf(stderr, "anomalyctl db init: %s\n", an_repo_errstr(repo));
        an_repo_free(repo);
        return 1;
    }
    printf("schema at version %d%s\n", version, applied ? "" : " (up to date)");
    an_repo_free(repo);
    return 0;
}

int ctl_db(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "init"))
        return db_init(argc, argv);
    if (!strcmp(argv[1], "sql")) {
        if (argc > 2) {
            fputs(usage_text, stderr);
            return 2;
        }
        an_schema_print(stdout);
        return 0;
    }
    fprintf(stderr, "anomalyctl db: unknown subcommand '%s'\n%s", argv[1], usage_text);
    return 2;
}
