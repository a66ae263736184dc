/* test_cache.c - keys and decisions through the cache's in-memory copies of
 * the stat cache (loaded a directory at a time) and of the last keys
 * (loaded a date at a time): what they answer must be what the database
 * holds, including rows written during the same session. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nightjar/cache.h"
#include "nightjar/fs.h"
#include "nightjar/hash.h"
#include "nightjar/instance.h"
#include "nightjar/spec.h"
#include "nightjar/state.h"
#include "support.h"

TestSuite(cache, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 30);

typedef struct session {
    nj_pipeline *p;
    nj_state *st;
    nj_cache *cache;
} session;

static void open_session(session *s)
{
    nj_strs diags = {0};
    nj_err err = {0};
    cr_assert_eq(nj_pipeline_load("p.yaml", &s->p, &diags, &err), 0, "%s", err.msg);
    nj_strs_release(&diags);
    char *db = nj_path_join(s->p->workspace, "state.db");
    cr_assert_eq(nj_state_open(db, &s->st, &err), 0, "%s", err.msg);
    free(db);
    cr_assert_eq(nj_cache_open(s->p, s->st, &s->cache, &err), 0, "%s", err.msg);
}

static void close_session(session *s)
{
    nj_cache_free(s->cache);
    nj_state_close(s->st);
    nj_pipeline_free(s->p);
    memset(s, 0, sizeof(*s));
}

static void render(session *s, const char *stage, nj_instance *inst)
{
    nj_err err = {0};
    cr_assert_eq(nj_instance_render(s->p, nj_pipeline_stage(s->p, stage), NULL, NULL, inst, &err), 0,
                 "%s", err.msg);
}

/* Plants a stat-cache row claiming that `path` (relative) hashes to 64 times
 * `digit`, with the file's real signature: a lookup that reads the row
 * returns the planted hash instead of the content's. */
static void plant(session *s, const char *path, char digit)
{
    char *abs = nj_path_join(s->p->dir, path);
    nj_file_sig sig;
    nj_err err = {0};
    cr_assert_eq(nj_file_sig_read(abs, &sig, &err), 0, "%s", err.msg);
    unsigned char hash[NJ_HASH_SIZE];
    memset(hash, (digit - '0') * 0x11, sizeof(hash));
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(nj_state_db(s->st),
                                    "INSERT OR REPLACE INTO stat_cache (path, dev, ino, size, mtime_ns,"
                                    " ctime_ns, mode, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                    -1, &q, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(q, 1, abs, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)sig.dev);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)sig.ino);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)sig.size);
    sqlite3_bind_int64(q, 5, sig.mtime_ns);
    sqlite3_bind_int64(q, 6, sig.ctime_ns);
    sqlite3_bind_int64(q, 7, sig.mode);
    sqlite3_bind_blob(q, 8, hash, sizeof(hash), SQLITE_TRANSIENT);
    cr_assert_eq(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    free(abs);
}

/* The hash the key of `stage` recorded for dep `path`: "f <64 hex>". */
static char *dep_in_key(session *s, const char *stage, const char *path)
{
    nj_instance inst;
    render(s, stage, &inst);
    nj_key key;
    nj_err err = {0};
    cr_assert_eq(nj_cache_key(s->cache, &inst, &key, &err), 0, "%s", err.msg);
    char *want = nj_xasprintf("dep %s ", path);
    const char *line = strstr(key.text, want);
    cr_assert_not_null(line, "no dep '%s' in\n%s", path, key.text);
    char *found = nj_xstrndup(line + strlen(want), 1 + 1 + 2 * NJ_HASH_SIZE);
    free(want);
    nj_key_release(&key);
    nj_instance_release(&inst);
    return found;
}

static char *repeated(char digit)
{
    char *s = nj_xmalloc(2 + 2 * NJ_HASH_SIZE + 1);
    s[0] = 'f';
    s[1] = ' ';
    memset(s + 2, digit, 2 * NJ_HASH_SIZE);
    s[2 + 2 * NJ_HASH_SIZE] = '\0';
    return s;
}

Test(cache, stat_cache_rows_of_a_directory_and_of_its_subdirectories_are_all_found)
{
    nj_test_write("in/a.csv", "a\n");
    nj_test_write("in/sub/b.csv", "b\n");
    nj_test_write("in/sub/deeper/c.csv", "c\n");
    nj_test_write("p.yaml", "pipeline: x\n"
                            "stages:\n"
                            "  top: {cmd: t, deps: [in/a.csv], outs: {o: out/top}}\n"
                            "  sub: {cmd: s, deps: [in/sub/b.csv], outs: {o: out/sub}}\n"
                            "  deep: {cmd: d, deps: [in/sub/deeper/c.csv], outs: {o: out/deep}}\n");
    session s = {0};
    open_session(&s);
    plant(&s, "in/a.csv", '1');
    plant(&s, "in/sub/b.csv", '2');
    plant(&s, "in/sub/deeper/c.csv", '3');
    /* The parent directory first: loading it must not hide the rows of its
     * subdirectories, which are loaded on their own first use. */
    char *got = dep_in_key(&s, "top", "in/a.csv"), *want = repeated('1');
    cr_assert_str_eq(got, want);
    free(got);
    free(want);
    got = dep_in_key(&s, "deep", "in/sub/deeper/c.csv"), want = repeated('3');
    cr_assert_str_eq(got, want);
    free(got);
    free(want);
    got = dep_in_key(&s, "sub", "in/sub/b.csv"), want = repeated('2');
    cr_assert_str_eq(got, want);
    free(got);
    free(want);
    close_session(&s);
}

Test(cache, a_changed_file_is_hashed_again_despite_its_row_in_memory)
{
    nj_test_write("in/a.csv", "old\n");
    nj_test_write("p.yaml", "pipeline: x\n"
                            "stages:\n"
                            "  top: {cmd: t, deps: [in/a.csv], outs: {o: out/top}}\n");
    session s = {0};
    open_session(&s);
    plant(&s, "in/a.csv", '7');
    char *got = dep_in_key(&s, "top", "in/a.csv"), *want = repeated('7');
    cr_assert_str_eq(got, want, "the planted row is used while the signature matches");
    free(got);
    free(want);

    /* Same size, new content: the signature changes, the row in memory must
     * not match any more. */
    nj_test_write("in/a.csv", "new\n");
    nj_hash h;
    nj_err err = {0};
    cr_assert_eq(nj_hash_file("in/a.csv", &h, NULL, &err), 0);
    char hex[NJ_HASH_HEX_SIZE];
    nj_hash_hex(&h, hex);
    got = dep_in_key(&s, "top", "in/a.csv");
    cr_assert_str_eq(got + 2, hex);
    free(got);
    close_session(&s);
}

Test(cache, a_recorded_key_is_what_the_next_decision_of_the_same_session_sees)
{
    nj_test_write("in/a.csv", "a\n");
    nj_test_write("p.yaml", "pipeline: x\n"
                            "params: {n: 1}\n"
                            "stages:\n"
                            "  s1: {cmd: 'cp in/a.csv {{outs.o}} # {{params.n}}', deps: [in/a.csv],"
                            " outs: {o: out/s1}}\n"
                            "  s2: {cmd: 'cp in/a.csv {{outs.o}}', deps: [in/a.csv],"
                            " outs: {o: out/s2}}\n");
    session s = {0};
    open_session(&s);
    nj_err err = {0};
    nj_instance i1, i2;
    render(&s, "s1", &i1);
    render(&s, "s2", &i2);
    nj_key k1, k2;
    cr_assert_eq(nj_cache_key(s.cache, &i1, &k1, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_cache_key(s.cache, &i2, &k2, &err), 0, "%s", err.msg);
    nj_decision d;
    /* Loads the date's (empty) last keys into memory. */
    cr_assert_eq(nj_cache_decide(s.cache, &i1, &k1, 0, 0, &d, &err), 0, "%s", err.msg);
    cr_assert_eq(d.kind, NJ_DECIDE_RUN);
    cr_assert_str_eq(d.reason, "never run");

    nj_test_write("out/s1", "a\n");
    nj_test_write("out/s2", "a\n");
    cr_assert_eq(nj_cache_record(s.cache, &i1, &k1, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_cache_record(s.cache, &i2, &k2, 0, &err), 0, "%s", err.msg);
    /* "unchanged": the last key itself matched, not merely the run cache. */
    cr_assert_eq(nj_cache_decide(s.cache, &i1, &k1, 0, 0, &d, &err), 0, "%s", err.msg);
    cr_assert_eq(d.kind, NJ_DECIDE_UP_TO_DATE, "%s", d.reason);
    cr_assert_str_eq(d.reason, "unchanged");
    cr_assert_eq(nj_cache_decide(s.cache, &i2, &k2, 0, 0, &d, &err), 0, "%s", err.msg);
    cr_assert_eq(d.kind, NJ_DECIDE_UP_TO_DATE, "%s", d.reason);
    cr_assert_str_eq(d.reason, "unchanged");

    /* A changed param: the explanation compares with the components just
     * recorded, read back from the database. */
    cr_assert_eq(nj_pipeline_set_param(s.p, "n=2", &err), 0, "%s", err.msg);
    nj_instance j1;
    render(&s, "s1", &j1);
    nj_key l1;
    cr_assert_eq(nj_cache_key(s.cache, &j1, &l1, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_cache_decide(s.cache, &j1, &l1, 0, 0, &d, &err), 0, "%s", err.msg);
    cr_assert_eq(d.kind, NJ_DECIDE_RUN);
    cr_assert_str_eq(d.reason, "param 'n' changed 1 \u2192 2");
    nj_key_release(&l1);
    nj_instance_release(&j1);

    /* And a new session reads the same from the database. */
    nj_key_release(&k1);
    nj_key_release(&k2);
    nj_instance_release(&i1);
    nj_instance_release(&i2);
    close_session(&s);
    open_session(&s);
    render(&s, "s2", &i2);
    cr_assert_eq(nj_cache_key(s.cache, &i2, &k2, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_cache_decide(s.cache, &i2, &k2, 0, 0, &d, &err), 0, "%s", err.msg);
    cr_assert_eq(d.kind, NJ_DECIDE_UP_TO_DATE, "%s", d.reason);
    cr_assert_str_eq(d.reason, "unchanged");
    nj_key_release(&k2);
    nj_instance_release(&i2);
    close_session(&s);
}
