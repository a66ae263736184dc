/* test_publish.c - publishing CSV into the serving database: one copy per
 * date, keep_partitions, the _latest view, the CSV dialect, malformed input
 * leaving every table untouched, duplicate keys, and a concurrent reader that
 * must never see a partial date. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nightjar/fs.h"
#include "nightjar/publish.h"
#include "nightjar/util.h"
#include "support.h"

TestSuite(publish, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 180);

static const nj_publish_column columns[] = {
    {"flight_id", NJ_COLUMN_TEXT},   {"dep_time", NJ_COLUMN_TEXT}, {"origin", NJ_COLUMN_TEXT},
    {"destination", NJ_COLUMN_TEXT}, {"p_delay", NJ_COLUMN_REAL},
};
static const char *const key[] = {"flight_id"};

static nj_publish_table risk_table(int keep)
{
    nj_publish_table t = {"flight_delay_risk", columns, 5, key, 1, keep};
    return t;
}

static nj_publisher *open_pub(void)
{
    nj_publisher *pub = NULL;
    nj_err err = {0};
    cr_assert_eq(nj_publish_open("serving/flights.db", &pub, &err), 0, "%s", err.msg);
    return pub;
}

static void publish_ok(nj_publisher *pub, const nj_publish_table *t, const char *csv,
                       const char *ds, nj_publish_stats *stats)
{
    nj_err err = {0};
    cr_assert_eq(nj_publish_csv(pub, t, csv, ds, "v1", 7, stats, &err), 0, "%s", err.msg);
}

/* Runs a query that returns one value, as text (caller frees; NULL for NULL). */
static char *query(const char *sql)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2("serving/flights.db", &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW, "%s", sql);
    const char *v = (const char *)sqlite3_column_text(q, 0);
    char *copy = v ? nj_xstrdup(v) : NULL;
    sqlite3_finalize(q);
    sqlite3_close(db);
    return copy;
}

static void assert_query(const char *sql, const char *want)
{
    char *got = query(sql);
    cr_assert_str_eq(got ? got : "(null)", want, "%s", sql);
    free(got);
}

/* Every row of the table in a fixed order: a checksum that any change breaks. */
static char *table_dump(void)
{
    return query("SELECT count(*) || ':' || coalesce(group_concat(r, '|'), '') FROM (SELECT "
                 "quote(flight_id) || quote(dep_time) || quote(origin) || quote(destination) || "
                 "quote(p_delay) || quote(ds) || quote(model_version) || quote(run_id) AS r "
                 "FROM flight_delay_risk ORDER BY ds, flight_id)");
}

static void write_rows(const char *path, int n, const char *prefix, double p)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("flight_id,dep_time,origin,destination,p_delay\n", f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%d,2001-03-01 %02d:%02d,SFO,LAX,%.4f\n", prefix, i, i / 60 % 24, i % 60, p);
    cr_assert_eq(fclose(f), 0);
}

Test(publish, republishing_a_date_leaves_exactly_one_copy)
{
    nj_publisher *pub = open_pub();
    nj_publish_table t = risk_table(0);
    nj_publish_stats st;
    write_rows("a.csv", 3, "AA", 0.1);
    write_rows("b.csv", 2, "AA", 0.2);
    publish_ok(pub, &t, "a.csv", "2001-03-01", &st);
    cr_assert_eq(st.rows, 3);
    cr_assert_eq(st.replaced, 0);
    publish_ok(pub, &t, "a.csv", "2001-03-01", &st);
    publish_ok(pub, &t, "b.csv", "2001-03-01", &st);
    cr_assert_eq(st.rows, 2);
    cr_assert_eq(st.replaced, 3);
    cr_assert_geq(st.duration_ms, 0);
    assert_query("SELECT count(*) FROM flight_delay_risk", "2");
    assert_query("SELECT group_concat(p_delay) FROM flight_delay_risk", "0.2,0.2");
    assert_query("SELECT model_version || ' ' || run_id || ' ' || typeof(p_delay) FROM "
                 "flight_delay_risk LIMIT 1",
                 "v1 7 real");
    /* One publications row per publish, ids increasing. */
    assert_query("SELECT group_concat(id || ':' || table_name || ':' || ds || ':' || rows || ':' "
                 "|| run_id || ':' || model_version, ' ') FROM nightjar_publications",
                 "1:flight_delay_risk:2001-03-01:3:7:v1 2:flight_delay_risk:2001-03-01:3:7:v1 "
                 "3:flight_delay_risk:2001-03-01:2:7:v1");
    cr_assert_eq(st.publication_id, 3);
    assert_query("SELECT published_at GLOB '20[0-9][0-9]-[01][0-9]-[0-3][0-9]T*Z' FROM "
                 "nightjar_publications LIMIT 1",
                 "1");
    assert_query("PRAGMA journal_mode", "wal");
    nj_publish_close(pub);
    nj_publish_close(NULL);
}

Test(publish, keep_partitions_drops_the_oldest_dates_and_latest_shows_the_newest)
{
    nj_publisher *pub = open_pub();
    nj_publish_table keep_all = risk_table(0), keep_one = risk_table(1);
    nj_publish_stats st;
    write_rows("a.csv", 4, "AA", 0.1);
    write_rows("b.csv", 3, "UA", 0.2);
    publish_ok(pub, &keep_all, "a.csv", "2001-03-02", &st);
    publish_ok(pub, &keep_all, "b.csv", "2001-03-01", &st); /* a backfill */
    assert_query("SELECT count(DISTINCT ds) FROM flight_delay_risk", "2");
    assert_query("SELECT count(*) || ' ' || min(ds) FROM flight_delay_risk_latest", "4 2001-03-02");
    publish_ok(pub, &keep_all, "b.csv", "2001-03-03", &st);
    assert_query("SELECT count(*) || ' ' || min(ds) FROM flight_delay_risk_latest", "3 2001-03-03");
    publish_ok(pub, &keep_one, "a.csv", "2001-03-04", &st);
    cr_assert_eq(st.dropped_partitions, 3);
    assert_query("SELECT count(*) || ' ' || group_concat(DISTINCT ds) FROM flight_delay_risk",
                 "4 2001-03-04");
    assert_query("SELECT count(*) FROM flight_delay_risk_latest", "4");
    nj_publish_close(pub);
}

Test(publish, reads_rfc4180_csv_in_any_column_order)
{
    nj_publisher *pub = open_pub();
    nj_publish_table t = risk_table(0);
    nj_publish_stats st;
    publish_ok(pub, &t, nj_test_fixture("publish/predictions.csv"), "2001-03-01", &st);
    cr_assert_eq(st.rows, 3);
    assert_query("SELECT destination FROM flight_delay_risk WHERE flight_id = 'UA,200'",
                 "New\r\nYork");
    assert_query("SELECT quote(p_delay) || quote(destination) FROM flight_delay_risk WHERE "
                 "flight_id = 'DL300'",
                 "NULL''");
    assert_query("SELECT p_delay || origin FROM flight_delay_risk WHERE flight_id = 'AA100'",
                 "0.25SFO");
    assert_query("SELECT count(*) FROM pragma_table_info('flight_delay_risk') WHERE name = 'extra'",
                 "0");
    nj_publish_close(pub);
}

Test(publish, integer_columns_and_tables_without_keys)
{
    nj_publisher *pub = open_pub();
    nj_publish_column cols[] = {{"n", NJ_COLUMN_INTEGER}, {"label", NJ_COLUMN_TEXT}};
    nj_publish_table t = {"counts", cols, 2, NULL, 0, 0};
    nj_test_write("c.csv", "label,n\nx,-9223372036854775808\nx,9223372036854775807\ny,\n");
    publish_ok(pub, &t, "c.csv", "2001-03-01", NULL);
    assert_query("SELECT group_concat(quote(n)) FROM counts",
                 "-9223372036854775808,9223372036854775807,NULL");
    assert_query("SELECT count(*) FROM sqlite_master WHERE name = 'counts_ds'", "1");
    nj_err err = {0};
    const char *bad[] = {"label,n\nx,1.0\n", "label,n\nx, 1\n", "label,n\nx,9223372036854775808\n",
                         "label,n\nx,0x10\n", "label,n\nx,+\n"};
    const char *msgs[] = {"'1.0' is not an integer", "' 1' is not an integer",
                          "'9223372036854775808' is not an integer", "'0x10' is not an integer",
                          "'+' is not an integer"};
    for (int i = 0; i < 5; i++) {
        nj_test_write("bad.csv", bad[i]);
        cr_assert_eq(nj_publish_csv(pub, &t, "bad.csv", "2001-03-02", "v", 1, NULL, &err),
                     NJ_EFORMAT);
        char want[200];
        snprintf(want, sizeof(want), "bad.csv:2:3: column 'n': %s", msgs[i]);
        cr_assert_str_eq(err.msg, want);
    }
    nj_publish_close(pub);
}

Test(publish, rejects_bad_reals_with_line_and_column)
{
    nj_publisher *pub = open_pub();
    nj_publish_table t = risk_table(0);
    nj_err err = {0};
    const char *bad[] = {"nan", "inf", "1e999", "0x1p3", "1,5", " 0.5", "abc"};
    for (int i = 0; i < 7; i++) {
        char text[200], want[200];
        snprintf(text, sizeof(text),
                 "flight_id,dep_time,origin,destination,p_delay\n\"A\nB\",t,o,d,\"%s\"\n", bad[i]);
        nj_test_write("bad.csv", text);
        cr_assert_eq(nj_publish_csv(pub, &t, "bad.csv", "2001-03-01", "v", 1, NULL, &err),
                     NJ_EFORMAT, "%s", bad[i]);
        snprintf(want, sizeof(want), "bad.csv:3:10: column 'p_delay': '%s' is not a real", bad[i]);
        cr_assert_str_eq(err.msg, want);
    }
    nj_publish_close(pub);
}

Test(publish, a_malformed_row_leaves_every_table_untouched)
{
    nj_publisher *pub = open_pub();
    nj_publish_table t = risk_table(1);
    write_rows("a.csv", 50, "AA", 0.1);
    publish_ok(pub, &t, "a.csv", "2001-03-01", NULL);
    char *before = table_dump();
    char *pubs = query("SELECT count(*) FROM nightjar_publications");

    nj_err err = {0};
    cr_assert_eq(nj_fs_mkdirs("bad", &err), 0);
    char *text = nj_test_read(nj_test_fixture("publish/bad/not_a_real.csv"));
    nj_test_write("bad/not_a_real.csv", text);
    free(text);
    char *want = nj_test_read(nj_test_fixture("publish/bad/not_a_real.err"));
    want[strcspn(want, "\n")] = '\0';
    /* Same date (would replace), and a new date (would drop the old one). */
    const char *dates[] = {"2001-03-01", "2001-03-02"};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(nj_publish_csv(pub, &t, "bad/not_a_real.csv", dates[i], "v2", 8, NULL, &err),
                     NJ_EFORMAT);
        cr_assert_str_eq(err.msg, want);
        char *after = table_dump();
        cr_assert_str_eq(after, before);
        free(after);
        assert_query("SELECT count(*) FROM nightjar_publications", pubs);
    }
    assert_query("SELECT count(*) FROM flight_delay_risk", "50");

    /* A row with too few fields; a header without a declared column. */
    nj_test_write("short.csv", "flight_id,dep_time,origin,destination,p_delay\nA,t,o,d,0.1\nB,t\n");
    cr_assert_eq(nj_publish_csv(pub, &t, "short.csv", "2001-03-01", "v", 1, NULL, &err),
                 NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "short.csv:3: expected 5 fields as in the header, found 2");
    nj_test_write("nohead.csv", "flight_id,dep_time,origin,p_delay\nA,t,o,0.1\n");
    cr_assert_eq(nj_publish_csv(pub, &t, "nohead.csv", "2001-03-01", "v", 1, NULL, &err),
                 NJ_EFORMAT);
    cr_assert_str_eq(
        err.msg, "nohead.csv:1: header has no column 'destination' (table 'flight_delay_risk')");
    nj_test_write("open.csv", "flight_id,dep_time,origin,destination,p_delay\n\"A,t,o,d,0.1\n");
    cr_assert_eq(nj_publish_csv(pub, &t, "open.csv", "2001-03-01", "v", 1, NULL, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "open.csv:2: quoted field not closed before the end of the file");
    nj_test_write("nullkey.csv", "flight_id,dep_time,origin,destination,p_delay\n,t,o,d,0.1\n");
    cr_assert_eq(nj_publish_csv(pub, &t, "nullkey.csv", "2001-03-01", "v", 1, NULL, &err),
                 NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "nullkey.csv:2:1: column 'flight_id' is a key and cannot be empty");
    cr_assert_lt(nj_publish_csv(pub, &t, "missing.csv", "2001-03-01", "v", 1, NULL, &err), 0);
    cr_assert(strstr(err.msg, "'missing.csv'"), "%s", err.msg);
    cr_assert_eq(nj_publish_csv(pub, &t, "short.csv", "2001-3-1", "v", 1, NULL, &err), NJ_EFORMAT);
    char *after = table_dump();
    cr_assert_str_eq(after, before);
    free(after);

    /* A failed first publish of a table does not create it. */
    nj_publish_table other = t;
    other.name = "other";
    cr_assert_eq(nj_publish_csv(pub, &other, "short.csv", "2001-03-01", "v", 1, NULL, &err),
                 NJ_EFORMAT);
    assert_query("SELECT count(*) FROM sqlite_master WHERE name LIKE 'other%'", "0");
    free(want);
    free(before);
    free(pubs);
    nj_publish_close(pub);
}

Test(publish, a_duplicate_key_names_both_lines)
{
    nj_publisher *pub = open_pub();
    nj_publish_table t = risk_table(0);
    nj_err err = {0};
    cr_assert_eq(nj_fs_mkdirs("bad", &err), 0);
    char *text = nj_test_read(nj_test_fixture("publish/bad/duplicate_key.csv"));
    nj_test_write("bad/duplicate_key.csv", text);
    free(text);
    char *want = nj_test_read(nj_test_fixture("publish/bad/duplicate_key.err"));
    want[strcspn(want, "\n")] = '\0';
    cr_assert_eq(nj_publish_csv(pub, &t, "bad/duplicate_key.csv", "2001-03-01", "v", 1, NULL, &err),
                 NJ_EFORMAT);
    cr_assert_str_eq(err.msg, want);
    free(want);
    assert_query("SELECT count(*) FROM sqlite_master WHERE name = 'flight_delay_risk'", "0");

    /* Composite integer keys compare as numbers: "007" is 7. */
    nj_publish_column cols[] = {{"a", NJ_COLUMN_INTEGER}, {"b", NJ_COLUMN_TEXT}};
    const char *keys[] = {"a", "b"};
    nj_publish_table t2 = {"pairs", cols, 2, keys, 2, 0};
    nj_test_write("pairs.csv", "a,b\n7,x\n7,y\n8,x\n007,x\n");
    cr_assert_eq(nj_publish_csv(pub, &t2, "pairs.csv", "2001-03-01", "v", 1, NULL, &err),
                 NJ_EFORMAT);
    cr_assert_str_eq(
        err.msg, "pairs.csv:5: duplicate key a='007', b='x' in table 'pairs' (first on line 2)");
    nj_publish_close(pub);
}

Test(publish, checks_table_specs_and_existing_tables)
{
    nj_err err = {0};
    nj_publish_table t = risk_table(0);
    cr_assert_eq(nj_publish_table_check(&t, &err), 0, "%s", err.msg);
    const char *bad_key[] = {"id"};
    t.key = bad_key;
    cr_assert_eq(nj_publish_table_check(&t, &err), NJ_EPIPELINE);
    cr_assert_str_eq(err.msg,
                     "table 'flight_delay_risk': key column 'id' is not a declared column");
    nj_publish_column cols[] = {{"ds", NJ_COLUMN_TEXT}};
    nj_publish_table t2 = {"x", cols, 1, NULL, 0, 0};
    cr_assert_eq(nj_publish_table_check(&t2, &err), NJ_EPIPELINE);
    cr_assert_str_eq(err.msg, "table 'x': column 'ds' is added by nightjar and cannot be declared");
    t2.name = "x; drop";
    cr_assert_eq(nj_publish_table_check(&t2, &err), NJ_EPIPELINE);
    t2.name = "nightjar_publications";
    cr_assert_eq(nj_publish_table_check(&t2, &err), NJ_EPIPELINE);

    nj_column_type type;
    cr_assert_eq(nj_column_type_parse("real", &type, &err), 0);
    cr_assert_eq(type, NJ_COLUMN_REAL);
    cr_assert_eq(nj_column_type_parse("float", &type, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg, "unknown column type 'float' (expected text, integer or real)");

    /* The spec changed a column's type since the table was created. */
    nj_publisher *pub = open_pub();
    nj_publish_table good = risk_table(0);
    write_rows("a.csv", 2, "AA", 0.1);
    publish_ok(pub, &good, "a.csv", "2001-03-01", NULL);
    nj_publish_column changed[5];
    memcpy(changed, columns, sizeof(changed));
    changed[4].type = NJ_COLUMN_TEXT;
    good.columns = changed;
    cr_assert_eq(nj_publish_csv(pub, &good, "a.csv", "2001-03-01", "v", 1, NULL, &err),
                 NJ_EPIPELINE);
    cr_assert_str_eq(err.msg, "table 'flight_delay_risk' in 'serving/flights.db' has column "
                              "'p_delay' of type REAL but the pipeline declares text; migrate or "
                              "rename the table");
    nj_publish_close(pub);
}

/* The child: counts the rows of `ds` in a loop until told to stop by EOF on
 * `stop`; exits 0 if every count was `old_n` or `new_n` and the last was
 * new_n, 3 if it saw anything else. Reports how many queries it ran. */
static _Noreturn void reader(int ready, int stop, int report, int old_n, int new_n)
{
    sqlite3 *db;
    if (sqlite3_open_v2("serving/flights.db", &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        _exit(10);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM flight_delay_risk WHERE ds = '2001-03-01'", -1,
                           &q, NULL) != SQLITE_OK)
        _exit(11);
    long queries = 0, saw_old = 0, saw_new = 0, last = -1;
    char c = 'r';
    if (write(ready, &c, 1) != 1) _exit(12);
    for (int stopping = 0;;) {
        if (sqlite3_step(q) != SQLITE_ROW) _exit(13);
        last = sqlite3_column_int(q, 0);
        sqlite3_reset(q);
        queries++;
        if (last == old_n)
            saw_old++;
        else if (last == new_n)
            saw_new++;
        else {
            dprintf(report, "partial %ld\n", last);
            _exit(3);
        }
        if (stopping) break;
        if (read(stop, &c, 1) == 0) stopping = 1; /* one more query after the commit */
    }
    dprintf(report, "%ld %ld %ld %ld\n", queries, saw_old, saw_new, last);
    sqlite3_finalize(q);
    sqlite3_close(db);
    _exit(last == new_n ? 0 : 4);
}

Test(publish, a_reader_never_sees_a_partial_date)
{
    const int old_n = 200000, new_n = 150000;
    write_rows("old.csv", old_n, "OLD", 0.1);
    write_rows("new.csv", new_n, "NEW", 0.2);
    nj_publish_table t = risk_table(0);
    nj_publisher *pub = open_pub();
    publish_ok(pub, &t, "old.csv", "2001-03-01", NULL);
    publish_ok(pub, &t, "old.csv", "2001-03-02", NULL); /* another date, untouched */
    nj_publish_close(pub);

    int ready[2], stop[2], report[2];
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(stop), 0);
    cr_assert_eq(pipe(report), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        close(stop[1]);
        close(report[0]);
        int flags = fcntl(stop[0], F_GETFL);
        fcntl(stop[0], F_SETFL, flags | O_NONBLOCK);
        reader(ready[1], stop[0], report[1], old_n, new_n);
    }
    close(ready[1]);
    close(stop[0]);
    close(report[1]);
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1);
    pub = open_pub();
    nj_publish_stats st;
    publish_ok(pub, &t, "new.csv", "2001-03-01", &st);
    cr_assert_eq(st.rows, new_n);
    cr_assert_eq(st.replaced, old_n);
    close(stop[1]); /* EOF: the reader stops after one more query */
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    char line[200] = "";
    ssize_t n = read(report[0], line, sizeof(line) - 1);
    line[n > 0 ? n : 0] = '\0';
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader status %d: %s", status, line);
    long queries, saw_old, saw_new, last;
    cr_assert_eq(sscanf(line, "%ld %ld %ld %ld", &queries, &saw_old, &saw_new, &last), 4, "%s",
                 line);
    cr_assert_geq(saw_old, 2, "the reader ran during the publish: %s", line);
    cr_assert_geq(saw_new, 1, "%s", line);
    assert_query("SELECT count(*) FROM flight_delay_risk WHERE ds = '2001-03-02'", "200000");
    nj_publish_close(pub);
}
