/* cli_snapshot.c - `nightjar snapshot`: create (what snapshot stages run),
 * list and restore the archives that freeze each date's inputs. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_internal.h"
#include "nightjar/cache.h"
#include "nightjar/fs.h"
#include "nightjar/hash.h"
#include "nightjar/snapshot.h"
#include "nightjar/store.h"
#include "nightjar/util.h"

static const char snapshot_help[] =
    "usage: nightjar snapshot list PIPELINE [--stage S]\n"
    "       nightjar snapshot restore PIPELINE --date YYYY-MM-DD (DIR | --in-place)\n"
    "                                 [--run ID] [--stage S]\n"
    "       nightjar snapshot create --out ARCHIVE [--format tar.zst|tar.gz|tar] -- INPUT...\n"
    "\n"
    "list     every archive recorded: date, the run that wrote it, size, sha256\n"
    "restore  extracts one date's archive (the newest, or the one run ID wrote) into DIR\n"
    "         (which must be missing or empty);\n"
    "         absolute paths, '..' and links leaving DIR are refused, nothing is written\n"
    "         --in-place puts the files back where they were snapshotted from (relative to\n"
    "         the pipeline), each replaced atomically: then 'nightjar run --date D --from\n"
    "         STAGE' rebuilds that date from exactly the frozen inputs\n"
    "restore and list take the pipeline's only snapshot stage unless --stage names one.\n"
    "create   writes a deterministic archive of INPUT files and directories (what a\n"
    "         snapshot stage runs; paths relative to the current directory)\n";

static int snapshot_create(int argc, char **argv)
{
    static const cli_opt opts[] = {{"--out", NULL, 1}, {"--format", NULL, 1}};
    cli_args a;
    int code = cli_parse("snapshot create", argc, argv, opts, 2, &a);
    if (code < 0) {
        fputs(snapshot_help, stdout);
        cli_args_release(&a);
        return NJ_EXIT_OK;
    }
    if (code == 0 && (!cli_value(&a, 0) || a.npositional == 0)) {
        cli_error("snapshot create: expected --out ARCHIVE and at least one INPUT");
        code = NJ_EXIT_USAGE;
    }
    if (code == 0) {
        nj_err err = {0};
        nj_snapshot_info info;
        const char *format = cli_value(&a, 1) ? cli_value(&a, 1) : "tar.zst";
        if (nj_snapshot_create(a.positional, a.npositional, NULL, format, cli_value(&a, 0),
                               &info, &err) < 0) {
            cli_error("%s", err.msg);
            code = err.code == NJ_EARCHIVE || err.code == -ENOENT ? NJ_EXIT_FAILED : NJ_EXIT_SYSTEM;
        } else {
            char hex[NJ_HASH_HEX_SIZE];
            nj_hash_hex(&info.hash, hex);
            fprintf(stderr, "snapshot %s: %zu entries, %llu bytes of data, %llu bytes archived,"
                            " sha256 %s\n",
                    cli_value(&a, 0), info.entries, (unsigned long long)info.bytes,
                    (unsigned long long)info.archive_bytes, hex);
        }
    }
    cli_args_release(&a);
    return code;
}

/* The snapshot stage `name`, or the pipeline's only one. */
static const nj_stage *snapshot_stage(const nj_pipeline *p, const char *name)
{
    const nj_stage *found = NULL;
    size_t count = 0;
    for (size_t i = 0; i < p->nstages; i++) {
        if (!p->stages[i].snapshot) continue;
        count++;
        if (!name || strcmp(p->stages[i].name, name) == 0) found = &p->stages[i];
    }
    if (name && !found)
        cli_error("snapshot: '%s' is not a snapshot stage of '%s'", name, p->name);
    else if (!name && count == 0)
        cli_error("snapshot: pipeline '%s' has no snapshot stage", p->name);
    else if (!name && count > 1)
        cli_error("snapshot: pipeline '%s' has %zu snapshot stages; pick one with --stage",
                  p->name, count);
    return name || count == 1 ? found : NULL;
}

typedef struct snapshot_row {
    const char *want_ds; /* restore: the date wanted */
    int64_t want_run;    /* restore: the run that wrote it, 0 for the newest */
    nj_hash hash;
    int64_t run_id;
    int found;
    int listed;
} snapshot_row;

static void list_row(void *ctx, const char *ds, int64_t run_id, const char *hash_hex,
                     uint64_t size, int64_t created_ms)
{
    snapshot_row *row = ctx;
    char when[32];
    nj_time_format(created_ms, when, sizeof(when));
    printf("%-10s  run %-6lld  %10llu bytes  %s  sha256 %s\n", ds, (long long)run_id,
           (unsigned long long)size, when, hash_hex);
    row->listed++;
}

static void find_row(void *ctx, const char *ds, int64_t run_id, const char *hash_hex,
                     uint64_t size, int64_t created_ms)
{
    (void)size;
    (void)created_ms;
    snapshot_row *row = ctx;
    if (strcmp(ds, row->want_ds) != 0) return;
    if (row->want_run && run_id != row->want_run) return;
    if (nj_hash_from_hex(hash_hex, &row->hash, NULL) < 0) return;
    row->run_id = run_id; /* rows come oldest run first: the last match is the newest */
    row->found = 1;
}

/* Moves every file and link under tmp/<rel> to <dir>/<rel>, each with one
 * rename (which replaces the old file atomically), creating directories. */
static int move_into_place(const char *tmp, const char *rel, const char *dir, size_t *moved,
                           nj_err *err)
{
    char *from = *rel ? nj_path_join(tmp, rel) : nj_xstrdup(tmp);
    int rc = 0;
    if (nj_fs_is_dir(from)) {
        DIR *d = opendir(from);
        if (!d) rc = nj_err_sys(err, errno, "cannot open '%s'", from);
        struct dirent *e;
        while (rc == 0 && d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char *child = *rel ? nj_xasprintf("%s/%s", rel, e->d_name) : nj_xstrdup(e->d_name);
            rc = move_into_place(tmp, child, dir, moved, err);
            free(child);
        }
        if (d) closedir(d);
    } else {
        char *to = nj_path_join(dir, rel);
        rc = nj_fs_mkdirs_parent(to, err);
        if (rc == 0 && rename(from, to) != 0)
            rc = nj_err_sys(err, errno, "cannot move '%s' into place", to);
        if (rc == 0) (*moved)++;
        free(to);
    }
    free(from);
    return rc;
}

int cli_snapshot(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs(snapshot_help, argc < 1 ? stderr : stdout);
        return argc < 1 ? NJ_EXIT_USAGE : NJ_EXIT_OK;
    }
    const char *sub = argv[0];
    if (strcmp(sub, "create") == 0) return snapshot_create(argc - 1, argv + 1);
    int restore = strcmp(sub, "restore") == 0;
    if (!restore && strcmp(sub, "list") != 0) {
        cli_error("snapshot: unknown command '%s' (list, restore or create)", sub);
        return NJ_EXIT_USAGE;
    }
    static const cli_opt opts[] = {
        {"--stage", NULL, 1}, {"--date", NULL, 1}, {"--in-place", NULL, 0}, {"--run", NULL, 1}};
    cli_args a;
    int code = cli_parse(restore ? "snapshot restore" : "snapshot list", argc - 1, argv + 1, opts,
                         4, &a);
    if (code < 0) {
        fputs(snapshot_help, stdout);
        cli_args_release(&a);
        return NJ_EXIT_OK;
    }
    if (code) goto out_args;
    code = NJ_EXIT_USAGE;
    int in_place = cli_flag(&a, 2);
    if (a.npositional != (restore && !in_place ? 2u : 1u) || (restore && !cli_value(&a, 1))) {
        cli_error("snapshot: wrong arguments (see 'nightjar snapshot --help')");
        goto out_args;
    }
    int32_t day;
    nj_err err = {0};
    if (restore && nj_date_parse(cli_value(&a, 1), &day, &err) < 0) {
        cli_error("snapshot restore: --date: %s", err.msg);
        goto out_args;
    }
    cli_session ss = {0};
    if ((code = cli_session_load(&ss, a.positional[0]))) goto out;
    const nj_pipeline *p = ss.p;
    const nj_stage *s = snapshot_stage(p, cli_value(&a, 0));
    if (!s) {
        code = NJ_EXIT_USAGE;
        goto out;
    }
    if ((code = cli_session_open(&ss, restore)) != NJ_EXIT_OK) goto out;
    nj_state *st = ss.st;
    snapshot_row row = {.want_ds = restore ? cli_value(&a, 1) : NULL,
                        .want_run = cli_value(&a, 3) ? strtoll(cli_value(&a, 3), NULL, 10) : 0};
    if (st && nj_state_snapshots(st, p->name, s->name, restore ? find_row : list_row, &row,
                                 &err) < 0) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_SYSTEM;
        goto out;
    }
    if (!restore) {
        if (!row.listed) fprintf(stderr, "no snapshots of stage '%s' recorded yet\n", s->name);
        goto out;
    }
    if (!row.found) {
        if (row.want_run)
            cli_error("snapshot restore: stage '%s' has no snapshot for %s from run %lld",
                      s->name, cli_value(&a, 1), (long long)row.want_run);
        else
            cli_error("snapshot restore: stage '%s' has no snapshot for %s", s->name,
                      cli_value(&a, 1));
        code = NJ_EXIT_FAILED;
        goto out;
    }
    nj_cache *cache = ss.cache;
    /* Check the archive against its name first: a corrupt object is refused. */
    if (nj_store_verify(nj_cache_store(cache), &row.hash, &err) < 0) {
        cli_error("snapshot restore: %s", err.msg);
        code = NJ_EXIT_FAILED;
        goto out;
    }
    char *object = nj_store_object_path(nj_cache_store(cache), &row.hash);
    char *dest = in_place ? nj_xasprintf("%s/tmp/snapshot-%ld", p->workspace, (long)getpid())
                          : nj_xstrdup(a.positional[1]);
    size_t moved = 0;
    if (in_place) nj_fs_remove_tree(dest, NULL);
    if (nj_snapshot_extract(object, dest, &err) < 0 ||
        (in_place && move_into_place(dest, "", p->dir, &moved, &err) < 0)) {
        cli_error("%s", err.msg);
        code = NJ_EXIT_FAILED;
    } else if (in_place) {
        fprintf(stderr, "restored the %s snapshot of '%s' (run %lld) in place: %zu file%s\n",
                cli_value(&a, 1), s->name, (long long)row.run_id, moved, moved == 1 ? "" : "s");
    } else {
        fprintf(stderr, "restored the %s snapshot of '%s' into %s\n", cli_value(&a, 1), s->name,
                a.positional[1]);
    }
    if (in_place) nj_fs_remove_tree(dest, NULL);
    free(dest);
    free(object);
out:
    cli_session_close(&ss);
out_args:
    cli_args_release(&a);
    return code;
}
