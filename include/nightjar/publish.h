/* publish.h - loading a stage's CSV output into a serving SQLite database
 * that applications read, one date at a time.
 *
 * The serving database holds the published tables and one bookkeeping table.
 * For a table spec `flight_delay_risk` with columns (flight_id text, p_delay
 * real) and key [flight_id], the first publish creates:
 *
 *     CREATE TABLE "flight_delay_risk" ("flight_id" TEXT NOT NULL, "p_delay" REAL,
 *         ds TEXT NOT NULL, model_version TEXT, run_id INTEGER);
 *     CREATE UNIQUE INDEX "flight_delay_risk_key" ON "flight_delay_risk"(ds, "flight_id");
 *     CREATE VIEW "flight_delay_risk_latest" AS SELECT * FROM "flight_delay_risk"
 *         WHERE ds = (SELECT max(ds) FROM "flight_delay_risk");
 *     CREATE TABLE nightjar_publications (id INTEGER PRIMARY KEY, table_name TEXT,
 *         ds TEXT, run_id INTEGER, model_version TEXT, rows INTEGER, published_at TEXT);
 *
 * (a table without key columns gets a plain index "<table>_ds" on ds instead;
 * with keys the unique index, which starts with ds, serves every ds lookup
 * and a second index on ds would only slow the load down).
 *
 * The file is read and checked whole before the database is touched (and,
 * with key columns, sorted by key so that the index is filled in order);
 * memory use is about the file's size plus 32 bytes per row. Then one
 * publish is ONE transaction that creates what is missing, deletes that
 * date's rows, inserts the new ones, drops dates beyond keep_partitions and
 * appends a row to nightjar_publications. So a rerun or backfill of a date
 * never duplicates it, a failure leaves every table exactly as it was, and a
 * reader (the database is in WAL mode) sees the old rows of a date or the new
 * ones, never a mix.
 *
 * nightjar_publications: one row per publish, appended (never updated), id
 * increasing: an application polls `SELECT ... WHERE id > :last_seen` and
 * sees republishes of a date too. published_at is UTC ISO-8601 with
 * milliseconds ("2026-03-02T04:05:06.789Z").
 *
 * CSV input (RFC 4180): the first line is a header; it must contain every
 * declared column, in any order; other columns are ignored. Fields are
 * separated by ',', records by "\n" or "\r\n"; a field in double quotes may
 * hold ',', newlines and "" (a quote). Every record must have as many fields
 * as the header. Values:
 *   text     as is (quotes removed);
 *   integer  [+-]?[0-9]+ within int64, nothing else (no spaces, no "1.0");
 *   real     a decimal number as strtod reads it ("0.25", "-1e-3", "7"),
 *            finite; no spaces, hex, "inf" or "nan";
 *   empty    an empty field (unquoted) is NULL in any column; a quoted empty
 *            field ("") is the empty string in a text column and NULL in a
 *            number column. Key columns may not be NULL (a NULL key would
 *            escape the uniqueness check).
 * A bad value fails the publish with "<file>:<line>:<col>: column 'p_delay':
 * 'abc' is not a real" (line of the field, 1-based byte column of its first
 * character); a key repeated within the file with "<file>:<line>: duplicate
 * key flight_id='AA1' in table 'x' (first on line <n>)" (keys compare as
 * SQLite does: "007" and "7" are the same integer).
 *
 *     nj_publish_column cols[] = {{"flight_id", NJ_COLUMN_TEXT}, {"p_delay", NJ_COLUMN_REAL}};
 *     const char *key[] = {"flight_id"};
 *     nj_publish_table t = {"flight_delay_risk", cols, 2, key, 1, 60};
 *     nj_publisher *pub;
 *     nj_publish_stats stats;
 *     if (nj_publish_open("serving/flights.db", &pub, &err) < 0 ||
 *         nj_publish_csv(pub, &t, "out/score/predictions.csv", "2026-03-01", "3fa9...",
 *                        42, &stats, &err) < 0)
 *         fprintf(stderr, "nightjar: error: %s\n", err.msg);
 *     nj_publish_close(pub);
 */
#ifndef NJ_PUBLISH_H
#define NJ_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "nightjar/err.h"

typedef enum nj_column_type {
    NJ_COLUMN_TEXT,
    NJ_COLUMN_INTEGER,
    NJ_COLUMN_REAL,
} nj_column_type;

/* Parses "text", "integer" or "real". Returns 0, or NJ_EFORMAT with
 * "unknown column type 'float' (expected text, integer or real)". */
int nj_column_type_parse(const char *name, nj_column_type *out, nj_err *err);
const char *nj_column_type_name(nj_column_type type); /* "text", ... */

typedef struct nj_publish_column {
    const char *name;
    nj_column_type type;
} nj_publish_column;

/* A table spec. Every pointer is borrowed (the pipeline spec owns them). */
typedef struct nj_publish_table {
    const char *name;                 /* [A-Za-z_][A-Za-z0-9_]*, not nightjar_* */
    const nj_publish_column *columns; /* declared columns, in table order (1 to 64) */
    size_t ncolumns;
    const char *const *key; /* key column names (each among columns), may be empty */
    size_t nkey;
    int keep_partitions; /* keep the newest N dates after a publish; 0 keeps all (a
                          * backfill older than the newest N is dropped at once) */
} nj_publish_table;

/* Checks a spec without touching any database, for the pipeline loader:
 * names are identifiers, unique, none is ds/model_version/run_id, keys are
 * declared columns, keep_partitions >= 0. Returns 0 or NJ_EPIPELINE with e.g.
 * "table 'risk': key column 'id' is not a declared column". */
int nj_publish_table_check(const nj_publish_table *table, nj_err *err);

typedef struct nj_publisher nj_publisher; /* an open serving database */

/* Opens (creating it and its directory if needed) the serving database at
 * `path` in WAL mode with synchronous=NORMAL and a 10 s busy timeout. Caller
 * closes *out with nj_publish_close(). */
int nj_publish_open(const char *path, nj_publisher **out, nj_err *err);
void nj_publish_close(nj_publisher *pub); /* NULL is fine */

typedef struct nj_publish_stats {
    int64_t rows;               /* rows inserted for ds */
    int64_t replaced;           /* rows of ds deleted first (a republish) */
    int64_t dropped_partitions; /* dates removed by keep_partitions */
    int64_t publication_id;     /* the nightjar_publications row */
    int64_t duration_ms;        /* wall time of the whole publish */
} nj_publish_stats;

/* Publishes `csv_path` as date `ds` ("YYYY-MM-DD") of `table`, setting
 * model_version (may be NULL) and run_id on every row, in one transaction as
 * described above. Fills *stats (may be NULL). Returns 0, NJ_EFORMAT for bad
 * input (nothing changed), NJ_EDB for database errors (nothing changed), or
 * -errno when the file cannot be read. */
int nj_publish_csv(nj_publisher *pub, const nj_publish_table *table, const char *csv_path,
                   const char *ds, const char *model_version, int64_t run_id,
                   nj_publish_stats *stats, nj_err *err);

#endif
