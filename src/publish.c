/* publish.c - a stage's CSV output into the serving database, one date per
 * transaction (see publish.h for the tables, the CSV dialect and the
 * guarantees).
 *
 * Two phases. First the whole CSV is read into memory, split in place and
 * every value checked (a bad file never opens a transaction), and, for a
 * table with key columns, the rows are sorted by key: duplicates are then
 * neighbours (both lines are named for free), and the inserts reach the
 * unique index (ds, keys...) in its own order, so SQLite appends to the
 * index's right edge instead of touching a random page per row. For a large
 * publish that is the difference between a page cache that holds the
 * working set and one that thrashes and rewrites pages into the WAL. Then
 * one transaction inserts the rows with one prepared statement: text bound
 * with SQLITE_STATIC from the buffer, numbers converted here and bound as
 * numbers, ds/model_version/run_id bound once (sqlite3_reset() keeps
 * bindings); no allocation per row. Memory: the file's size plus 32 bytes
 * per row.
 *
 * Invariant: nothing is written outside the one BEGIN IMMEDIATE ... COMMIT of
 * nj_publish_csv(); every failure after BEGIN rolls back, so on error the
 * serving database is byte-for-byte what readers saw before.
 */
#include "nightjar/publish.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/fs.h"
#include "nightjar/util.h"

struct nj_publisher {
    sqlite3 *db;
    char *path;
};

static const char *const type_names[] = {"text", "integer", "real"};
static const char *const sql_types[] = {"TEXT", "INTEGER", "REAL"};

int nj_column_type_parse(const char *name, nj_column_type *out, nj_err *err)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, type_names[i]) == 0) {
            *out = (nj_column_type)i;
            return 0;
        }
    return nj_err_set(err, NJ_EFORMAT, "unknown column type '%s' (expected text, integer or real)",
                      name);
}

const char *nj_column_type_name(nj_column_type type)
{
    return (unsigned)type < 3 ? type_names[type] : "unknown";
}

/* ---- table specs ---------------------------------------------------------- */

static int is_identifier(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

static int column_index(const nj_publish_table *t, const char *name)
{
    for (size_t i = 0; i < t->ncolumns; i++)
        if (strcmp(t->columns[i].name, name) == 0) return (int)i;
    return -1;
}

int nj_publish_table_check(const nj_publish_table *t, nj_err *err)
{
    if (!is_identifier(t->name))
        return nj_err_set(err, NJ_EPIPELINE,
                          "table name '%s' is not an identifier ([A-Za-z_][A-Za-z0-9_]*)",
                          t->name ? t->name : "");
    if (strncmp(t->name, "nightjar_", 9) == 0)
        return nj_err_set(err, NJ_EPIPELINE,
                          "table '%s': names starting with 'nightjar_' are "
                          "reserved",
                          t->name);
    if (t->ncolumns == 0 || t->ncolumns > 64)
        return nj_err_set(err, NJ_EPIPELINE,
                          "table '%s' declares %zu columns (1 to 64 are "
                          "supported)",
                          t->name, t->ncolumns);
    for (size_t i = 0; i < t->ncolumns; i++) {
        const char *c = t->columns[i].name;
        if (!is_identifier(c))
            return nj_err_set(err, NJ_EPIPELINE,
                              "table '%s': column name '%s' is not an "
                              "identifier",
                              t->name, c ? c : "");
        if (!strcmp(c, "ds") || !strcmp(c, "model_version") || !strcmp(c, "run_id"))
            return nj_err_set(err, NJ_EPIPELINE,
                              "table '%s': column '%s' is added by nightjar "
                              "and cannot be declared",
                              t->name, c);
        if (column_index(t, c) != (int)i)
            return nj_err_set(err, NJ_EPIPELINE, "table '%s': column '%s' is declared twice",
                              t->name, c);
        if ((unsigned)t->columns[i].type > NJ_COLUMN_REAL)
            return nj_err_set(err, NJ_EPIPELINE, "table '%s': column '%s' has no valid type",
                              t->name, c);
    }
    for (size_t i = 0; i < t->nkey; i++) {
        if (column_index(t, t->key[i]) < 0)
            return nj_err_set(err, NJ_EPIPELINE,
                              "table '%s': key column '%s' is not a declared "
                              "column",
                              t->name, t->key[i]);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t->key[i], t->key[j]))
                return nj_err_set(err, NJ_EPIPELINE, "table '%s': key column '%s' is listed twice",
                                  t->name, t->key[i]);
    }
    if (t->keep_partitions < 0)
        return nj_err_set(err, NJ_EPIPELINE, "table '%s': keep_partitions must be >= 0", t->name);
    return 0;
}

/* ---- the CSV reader ------------------------------------------------------- */

typedef struct csv_field {
    char *text; /* in the reader's buffer, NUL-terminated, quotes removed */
    size_t len;
    int64_t line;
    int col;
    int quoted;
} csv_field;

/* The whole file is read into buf (NUL-terminated). Records are split in
 * place and packed: a record's fields end up one after the other from its
 * first byte as NUL-terminated strings, so that a record, once split, is
 * found again from one pointer (see walk_fields()). Packing never writes
 * past the bytes it consumed: each field loses at least its delimiter. */
typedef struct csv_reader {
    const char *path;
    char *buf;
    size_t len, pos; /* unread bytes are buf[pos..len); buf[len] is NUL */
    int64_t line;    /* line number at buf[pos] */
    csv_field *fields;
    size_t nfields, fields_cap;
} csv_reader;

static int csv_open(csv_reader *r, const char *path, nj_err *err)
{
    memset(r, 0, sizeof(*r));
    r->path = path;
    r->line = 1;
    return nj_fs_read_file(path, &r->buf, &r->len, err);
}

static void csv_close(csv_reader *r)
{
    free(r->buf);
    free(r->fields);
    memset(r, 0, sizeof(*r));
}

/* Splits buf[s..e) (one record, without its '\n') into fields, packed from s. */
static int csv_split(csv_reader *r, size_t s, size_t e, nj_err *err)
{
    char *buf = r->buf;
    size_t p = s, w = s, line_start = s;
    int64_t line = r->line;
    r->nfields = 0;
    for (;;) {
        csv_field f = {buf + w, 0, line, (int)(p - line_start) + 1, 0};
        if (p < e && buf[p] == '"') {
            p++;
            f.quoted = 1;
            for (;;) { /* the record scan guarantees a closing quote */
                char c = buf[p];
                if (c == '"') {
                    if (p + 1 < e && buf[p + 1] == '"') {
                        buf[w++] = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (c == '\n') line++, line_start = p + 1;
                buf[w++] = c;
                p++;
            }
            if (p < e && buf[p] != ',' && !(buf[p] == '\r' && p + 1 == e))
                return nj_err_set(err, NJ_EFORMAT, "%s:%lld:%d: expected ',' after a quoted field",
                                  r->path, (long long)line, (int)(p - line_start) + 1);
        } else {
            const char *comma = memchr(buf + p, ',', e - p);
            size_t end = comma ? (size_t)(comma - buf) : e;
            if (!comma && end > p && buf[end - 1] == '\r') end--;
            if (w != p) memmove(buf + w, buf + p, end - p);
            w += end - p;
            p = end;
        }
        f.len = (size_t)(buf + w - f.text);
        int more = p < e && buf[p] == ',';
        buf[w++] = '\0';
        NJ_PUSH(r->fields, r->nfields, r->fields_cap, f);
        if (!more) break;
        p++;
    }
    r->line = line + 1;
    return 0;
}

/* Reads the next non-empty record into r->fields. Returns 1, 0 at end of
 * file, or NJ_EFORMAT. */
static int csv_next(csv_reader *r, nj_err *err)
{
    for (;;) {
        if (r->pos >= r->len) return 0;
        size_t i = r->pos, s = r->pos;
        int quoted = 0;
        const char *buf = r->buf;
        for (; i < r->len; i++) {
            char c = buf[i];
            if (c == '"')
                quoted = !quoted;
            else if (c == '\n' && !quoted)
                break;
            else if (c == '\0') {
                int64_t line = r->line;
                for (const char *q = buf + s; q < buf + i; q++)
                    line += *q == '\n';
                return nj_err_set(err, NJ_EFORMAT, "%s:%lld: NUL byte in the data", r->path,
                                  (long long)line);
            }
        }
        if (quoted)
            return nj_err_set(err, NJ_EFORMAT,
                              "%s:%lld: quoted field not closed before the "
                              "end of the file",
                              r->path, (long long)r->line);
        size_t end = i;
        r->pos = end < r->len ? end + 1 : r->len;
        if (end == s || (end == s + 1 && r->buf[s] == '\r')) { /* blank line */
            r->line++;
            continue;
        }
        if (r->line == 1 && end - s >= 3 && memcmp(r->buf + s, "\xef\xbb\xbf", 3) == 0) s += 3;
        int rc = csv_split(r, s, end, err);
        return rc < 0 ? rc : 1;
    }
}

/* ---- values --------------------------------------------------------------- */

static int parse_integer(const char *s, int64_t *out)
{
    const char *p = s;
    int neg = *p == '-';
    if (*p == '-' || *p == '+') p++;
    if (!*p) return -1;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static int parse_real(const char *s, double *out)
{
    int digits = 0;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digits = 1;
        else if (!strchr("+-.eE", *p))
            return -1;
    }
    if (!digits) return -1;
    char *end;
    *out = strtod(s, &end);
    return *end || !isfinite(*out) ? -1 : 0;
}

/* ---- the serving database ------------------------------------------------- */

static int db_error(nj_publisher *pub, nj_err *err, const char *what)
{
    return nj_err_set(err, NJ_EDB, "%s in '%s': %s", what, pub->path, sqlite3_errmsg(pub->db));
}

static int exec_sql(nj_publisher *pub, const char *sql, nj_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(pub->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = nj_err_set(err, NJ_EDB, "database error in '%s': %s", pub->path,
                            msg ? msg : sqlite3_errmsg(pub->db));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

int nj_publish_open(const char *path, nj_publisher **out, nj_err *err)
{
    *out = NULL;
    nj_publisher *pub = nj_xcalloc(1, sizeof(*pub));
    pub->path = nj_xstrdup(path);
    int rc = nj_fs_mkdirs_parent(path, err);
    if (rc < 0) goto fail;
    if (sqlite3_open_v2(path, &pub->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = db_error(pub, err, "cannot open serving database");
        goto fail;
    }
    sqlite3_busy_timeout(pub->db, 10000);
    /* WAL: readers keep their snapshot while a date is replaced. NORMAL in
     * WAL survives any process crash; an OS crash may lose the last publish,
     * which the next run repeats. A 64 MiB page cache keeps a large load's
     * index pages in memory. */
    if ((rc = exec_sql(pub,
                       "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                       "PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;",
                       err)) < 0)
        goto fail;
    *out = pub;
    return 0;
fail:
    nj_publish_close(pub);
    return rc;
}

void nj_publish_close(nj_publisher *pub)
{
    if (!pub) return;
    if (pub->db) sqlite3_close_v2(pub->db);
    free(pub->path);
    free(pub);
}

/* CREATE ... IF NOT EXISTS for the table, its index, its _latest view and
 * nightjar_publications. */
static void schema_sql(const nj_publish_table *t, nj_buf *b)
{
    nj_buf_printf(b, "CREATE TABLE IF NOT EXISTS \"%s\" (", t->name);
    for (size_t i = 0; i < t->ncolumns; i++) {
        int key = 0;
        for (size_t k = 0; k < t->nkey; k++)
            key |= !strcmp(t->key[k], t->columns[i].name);
        nj_buf_printf(b, "\"%s\" %s%s, ", t->columns[i].name, sql_types[t->columns[i].type],
                      key ? " NOT NULL" : "");
    }
    nj_buf_puts(b, "ds TEXT NOT NULL, model_version TEXT, run_id INTEGER);");
    if (t->nkey) {
        nj_buf_printf(b, "CREATE UNIQUE INDEX IF NOT EXISTS \"%s_key\" ON \"%s\"(ds", t->name,
                      t->name);
        for (size_t k = 0; k < t->nkey; k++)
            nj_buf_printf(b, ", \"%s\"", t->key[k]);
        nj_buf_puts(b, ");");
    } else {
        nj_buf_printf(b, "CREATE INDEX IF NOT EXISTS \"%s_ds\" ON \"%s\"(ds);", t->name, t->name);
    }
    nj_buf_printf(b,
                  "CREATE VIEW IF NOT EXISTS \"%s_latest\" AS SELECT * FROM \"%s\" "
                  "WHERE ds = (SELECT max(ds) FROM \"%s\");",
                  t->name, t->name, t->name);
    nj_buf_puts(b, "CREATE TABLE IF NOT EXISTS nightjar_publications ("
                   "id INTEGER PRIMARY KEY, table_name TEXT NOT NULL, ds TEXT NOT NULL, "
                   "run_id INTEGER, model_version TEXT, rows INTEGER NOT NULL, "
                   "published_at TEXT NOT NULL);"
                   "CREATE INDEX IF NOT EXISTS nightjar_publications_by_table "
                   "ON nightjar_publications(table_name, ds);");
}

/* An existing table must have every declared column with its type (extra
 * columns are tolerated): a spec that changed needs a migration, not rows
 * in the wrong place. */
static int check_columns(nj_publisher *pub, const nj_publish_table *t, nj_err *err)
{
    sqlite3_stmt *q = NULL;
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT name, upper(type) FROM pragma_table_info('%s')", t->name);
    if (sqlite3_prepare_v2(pub->db, sql, -1, &q, NULL) != SQLITE_OK)
        return db_error(pub, err, "cannot read columns");
    unsigned char *found = nj_xcalloc(t->ncolumns + 3, 1);
    const char *extra[] = {"ds", "model_version", "run_id"};
    int rc = 0, step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        const char *type = (const char *)sqlite3_column_text(q, 1);
        int i = column_index(t, name);
        if (i >= 0) {
            found[i] = 1;
            if (strcmp(type ? type : "", sql_types[t->columns[i].type]) != 0) {
                rc = nj_err_set(err, NJ_EPIPELINE,
                                "table '%s' in '%s' has column '%s' of type %s but the pipeline "
                                "declares %s; migrate or rename the table",
                                t->name, pub->path, name, type, type_names[t->columns[i].type]);
                goto done;
            }
        }
        for (int k = 0; k < 3; k++)
            if (!strcmp(name, extra[k])) found[t->ncolumns + (size_t)k] = 1;
    }
    if (step != SQLITE_DONE) {
        rc = db_error(pub, err, "cannot read columns");
        goto done;
    }
    for (size_t i = 0; i < t->ncolumns + 3; i++)
        if (!found[i]) {
            rc = nj_err_set(err, NJ_EPIPELINE,
                            "table '%s' in '%s' has no column '%s'; migrate or rename the table",
                            t->name, pub->path,
                            i < t->ncolumns ? t->columns[i].name : extra[i - t->ncolumns]);
            goto done;
        }
done:
    free(found);
    sqlite3_finalize(q);
    return rc;
}

/* Runs one statement with an optional text parameter ?1; *changes gets the
 * number of rows it changed, *first (if not NULL) its first column. */
static int run_sql(nj_publisher *pub, const char *sql, const char *param, int64_t *changes,
                   int64_t *first, nj_err *err)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(pub->db, sql, -1, &q, NULL) != SQLITE_OK)
        return db_error(pub, err, "cannot prepare statement");
    if (param) sqlite3_bind_text(q, 1, param, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW)
        if (first) *first = sqlite3_column_int64(q, 0);
    int rc = step == SQLITE_DONE ? 0 : db_error(pub, err, "cannot update table");
    if (changes) *changes = sqlite3_changes64(pub->db);
    sqlite3_finalize(q);
    return rc;
}

/* One data record after validation. Its fields are packed NUL-terminated
 * strings from `rec`; `nulls` has bit i set when declared column i is NULL;
 * `key0` is the first key column's value, for sorting. */
typedef struct row {
    char *rec;
    union {
        const char *s;
        int64_t i;
        double d;
    } key0;
    uint64_t nulls;
    uint32_t line;
} row;

/* Everything one publish needs. */
typedef struct job {
    nj_publisher *pub;
    const nj_publish_table *t;
    const char *csv_path;
    size_t *field_of; /* declared column i is field field_of[i] of each record */
    int *key_of;      /* key column k is declared column key_of[k] */
    int *is_key;      /* declared column i is a key column */
    size_t nheader;
    row *rows;
    size_t nrows, rows_cap;
    const char **fieldv; /* scratch: the fields of one record */
    int *fieldlen;       /* and their lengths */
} job;

static int map_header(job *j, csv_reader *r, nj_err *err)
{
    int rc = csv_next(r, err);
    if (rc < 0) return rc;
    if (rc == 0)
        return nj_err_set(err, NJ_EFORMAT, "%s:1: empty file, expected a header line", j->csv_path);
    j->nheader = r->nfields;
    j->fieldv = nj_xcalloc(r->nfields, sizeof(*j->fieldv));
    j->fieldlen = nj_xcalloc(r->nfields, sizeof(*j->fieldlen));
    for (size_t i = 0; i < j->t->ncolumns; i++) {
        const char *name = j->t->columns[i].name;
        size_t found = (size_t)-1;
        for (size_t h = 0; h < r->nfields; h++) {
            if (strcmp(r->fields[h].text, name) != 0) continue;
            if (found != (size_t)-1)
                return nj_err_set(err, NJ_EFORMAT,
                                  "%s:1:%d: column '%s' appears twice in the "
                                  "header",
                                  j->csv_path, r->fields[h].col, name);
            found = h;
        }
        if (found == (size_t)-1)
            return nj_err_set(err, NJ_EFORMAT, "%s:1: header has no column '%s' (table '%s')",
                              j->csv_path, name, j->t->name);
        j->field_of[i] = found;
    }
    for (size_t k = 0; k < j->t->nkey; k++) {
        j->key_of[k] = column_index(j->t, j->t->key[k]);
        j->is_key[j->key_of[k]] = 1;
    }
    return 0;
}

/* Checks every declared value of the current record and appends its row. */
static int check_record(job *j, csv_reader *r, nj_err *err)
{
    if (r->nfields != j->nheader)
        return nj_err_set(err, NJ_EFORMAT,
                          "%s:%lld: expected %zu fields as in the header, "
                          "found %zu",
                          j->csv_path, (long long)r->fields[0].line, j->nheader, r->nfields);
    row rw = {r->fields[0].text, {NULL}, 0, (uint32_t)r->fields[0].line};
    for (size_t i = 0; i < j->t->ncolumns; i++) {
        const csv_field *f = &r->fields[j->field_of[i]];
        const nj_publish_column *c = &j->t->columns[i];
        int first_key = j->t->nkey && j->key_of[0] == (int)i;
        int64_t iv = 0;
        double dv = 0;
        if (f->len == 0 && (!f->quoted || c->type != NJ_COLUMN_TEXT)) {
            if (j->is_key[i])
                return nj_err_set(err, NJ_EFORMAT,
                                  "%s:%lld:%d: column '%s' is a key and cannot "
                                  "be empty",
                                  j->csv_path, (long long)f->line, f->col, c->name);
            rw.nulls |= (uint64_t)1 << i;
            continue;
        }
        if ((c->type == NJ_COLUMN_INTEGER && parse_integer(f->text, &iv) < 0) ||
            (c->type == NJ_COLUMN_REAL && parse_real(f->text, &dv) < 0))
            return nj_err_set(err, NJ_EFORMAT, "%s:%lld:%d: column '%s': '%.60s%s' is not %s %s",
                              j->csv_path, (long long)f->line, f->col, c->name, f->text,
                              f->len > 60 ? "..." : "", c->type == NJ_COLUMN_INTEGER ? "an" : "a",
                              type_names[c->type]);
        if (first_key) {
            if (c->type == NJ_COLUMN_TEXT)
                rw.key0.s = f->text;
            else if (c->type == NJ_COLUMN_INTEGER)
                rw.key0.i = iv;
            else
                rw.key0.d = dv;
        }
    }
    NJ_PUSH(j->rows, j->nrows, j->rows_cap, rw);
    return 0;
}

/* Fills j->fieldv with the packed fields of a row. */
static void walk_fields(job *j, const row *rw)
{
    const char *p = rw->rec;
    for (size_t h = 0; h < j->nheader; h++) {
        size_t len = strlen(p);
        j->fieldv[h] = p;
        j->fieldlen[h] = (int)len;
        p += len + 1;
    }
}

/* The field of declared column i in a record, walking from its start. */
static const char *field_at(const job *j, const row *rw, size_t i)
{
    const char *p = rw->rec;
    for (size_t h = j->field_of[i]; h > 0; h--)
        p += strlen(p) + 1;
    return p;
}

/* Orders rows as SQLite orders the unique index (ds, keys...): text by
 * bytes, numbers by value; then by line, so equal keys sit together in file
 * order. */
static int compare_rows(const void *pa, const void *pb, void *ctx)
{
    const job *j = ctx;
    const row *a = pa, *b = pb;
    nj_column_type type0 = j->t->columns[j->key_of[0]].type;
    int c = type0 == NJ_COLUMN_TEXT      ? strcmp(a->key0.s, b->key0.s)
            : type0 == NJ_COLUMN_INTEGER ? (a->key0.i > b->key0.i) - (a->key0.i < b->key0.i)
                                         : (a->key0.d > b->key0.d) - (a->key0.d < b->key0.d);
    for (size_t k = 1; c == 0 && k < j->t->nkey; k++) {
        size_t i = (size_t)j->key_of[k];
        const char *x = field_at(j, a, i), *y = field_at(j, b, i);
        int64_t xi, yi;
        double xd, yd;
        if (j->t->columns[i].type == NJ_COLUMN_INTEGER && !parse_integer(x, &xi) &&
            !parse_integer(y, &yi))
            c = (xi > yi) - (xi < yi);
        else if (j->t->columns[i].type == NJ_COLUMN_REAL && !parse_real(x, &xd) &&
                 !parse_real(y, &yd))
            c = (xd > yd) - (xd < yd);
        else
            c = strcmp(x, y);
    }
    if (c) return c;
    return (a->line > b->line) - (a->line < b->line);
}

static int same_key(job *j, const row *a, const row *b)
{
    row x = *a, y = *b;
    x.line = y.line = 0;
    return compare_rows(&x, &y, j) == 0;
}

/* After sorting, equal keys are neighbours in file order: report the
 * repeat that comes first in the file, and the first line with its key. */
static int check_duplicates(job *j, nj_err *err)
{
    size_t dup = 0;
    for (size_t n = 1; n < j->nrows; n++)
        if (same_key(j, &j->rows[n - 1], &j->rows[n]) &&
            (!dup || j->rows[n].line < j->rows[dup].line))
            dup = n;
    if (!dup) return 0;
    size_t first = dup - 1;
    while (first > 0 && same_key(j, &j->rows[first - 1], &j->rows[dup]))
        first--;
    nj_buf key;
    nj_buf_init(&key);
    for (size_t k = 0; k < j->t->nkey; k++)
        nj_buf_printf(&key, "%s%s='%s'", k ? ", " : "", j->t->key[k],
                      field_at(j, &j->rows[dup], (size_t)j->key_of[k]));
    int rc = nj_err_set(err, NJ_EFORMAT,
                        "%s:%u: duplicate key %s in table '%s' (first on line "
                        "%u)",
                        j->csv_path, j->rows[dup].line, key.data, j->t->name, j->rows[first].line);
    nj_buf_release(&key);
    return rc;
}

/* Reads, checks and (with keys) sorts every record before the database is
 * touched: a bad file never opens a transaction. */
static int read_rows(job *j, csv_reader *r, nj_err *err)
{
    int rc;
    while ((rc = csv_next(r, err)) == 1)
        if ((rc = check_record(j, r, err)) < 0) return rc;
    if (rc < 0) return rc;
    if (j->t->nkey) {
        qsort_r(j->rows, j->nrows, sizeof(*j->rows), compare_rows, j);
        if ((rc = check_duplicates(j, err)) < 0) return rc;
    }
    return 0;
}

static int insert_rows(job *j, sqlite3_stmt *ins, nj_err *err)
{
    for (size_t n = 0; n < j->nrows; n++) {
        const row *rw = &j->rows[n];
        walk_fields(j, rw);
        for (size_t i = 0; i < j->t->ncolumns; i++) {
            const char *text = j->fieldv[j->field_of[i]];
            int len = j->fieldlen[j->field_of[i]];
            int p = (int)i + 1;
            int64_t iv = 0;
            double dv = 0;
            if (rw->nulls >> i & 1) {
                sqlite3_bind_null(ins, p);
            } else if (j->t->columns[i].type == NJ_COLUMN_INTEGER) {
                parse_integer(text, &iv); /* checked by check_record() */
                sqlite3_bind_int64(ins, p, iv);
            } else if (j->t->columns[i].type == NJ_COLUMN_REAL) {
                parse_real(text, &dv);
                sqlite3_bind_double(ins, p, dv);
            } else {
                sqlite3_bind_text(ins, p, text, len, SQLITE_STATIC);
            }
        }
        if (sqlite3_step(ins) != SQLITE_DONE) {
            int rc = nj_err_set(err, NJ_EDB, "cannot insert %s:%u into table '%s' in '%s': %s",
                                j->csv_path, rw->line, j->t->name, j->pub->path,
                                sqlite3_errmsg(j->pub->db));
            sqlite3_reset(ins);
            return rc;
        }
        sqlite3_reset(ins);
    }
    return 0;
}

int nj_publish_csv(nj_publisher *pub, const nj_publish_table *t, const char *csv_path,
                   const char *ds, const char *model_version, int64_t run_id,
                   nj_publish_stats *stats, nj_err *err)
{
    int64_t started = nj_time_mono_ms();
    nj_publish_stats st = {0};
    csv_reader r = {0};
    job j = {.pub = pub, .t = t, .csv_path = csv_path};
    sqlite3_stmt *ins = NULL;
    nj_buf sql;
    nj_buf_init(&sql);
    int rc, in_txn = 0;
    int32_t day;
    if (stats) memset(stats, 0, sizeof(*stats));
    if ((rc = nj_publish_table_check(t, err)) < 0) goto fail;
    if (!ds) {
        rc = nj_err_set(err, NJ_EUSAGE, "table '%s': publishing needs a date", t->name);
        goto fail;
    }
    if ((rc = nj_date_parse(ds, &day, err)) < 0) goto fail;
    j.field_of = nj_xcalloc(t->ncolumns, sizeof(*j.field_of));
    j.is_key = nj_xcalloc(t->ncolumns, sizeof(*j.is_key));
    j.key_of = nj_xcalloc(t->nkey ? t->nkey : 1, sizeof(*j.key_of));
    if ((rc = csv_open(&r, csv_path, err)) < 0 || (rc = map_header(&j, &r, err)) < 0 ||
        (rc = read_rows(&j, &r, err)) < 0)
        goto fail;

    if ((rc = exec_sql(pub, "BEGIN IMMEDIATE", err)) < 0) goto fail;
    in_txn = 1;
    schema_sql(t, &sql);
    if ((rc = exec_sql(pub, sql.data, err)) < 0 || (rc = check_columns(pub, t, err)) < 0) goto fail;

    nj_buf_reset(&sql);
    nj_buf_printf(&sql, "DELETE FROM \"%s\" WHERE ds = ?1", t->name);
    if ((rc = run_sql(pub, sql.data, ds, &st.replaced, NULL, err)) < 0) goto fail;

    nj_buf_reset(&sql);
    nj_buf_printf(&sql, "INSERT INTO \"%s\" (", t->name);
    for (size_t i = 0; i < t->ncolumns; i++)
        nj_buf_printf(&sql, "\"%s\", ", t->columns[i].name);
    nj_buf_puts(&sql, "ds, model_version, run_id) VALUES (");
    for (size_t i = 0; i < t->ncolumns + 3; i++)
        nj_buf_printf(&sql, "%s?%zu", i ? ", " : "", i + 1);
    nj_buf_puts(&sql, ")");
    if (sqlite3_prepare_v2(pub->db, sql.data, -1, &ins, NULL) != SQLITE_OK) {
        rc = db_error(pub, err, "cannot prepare insert");
        goto fail;
    }
    int p = (int)t->ncolumns;
    sqlite3_bind_text(ins, p + 1, ds, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, p + 2, model_version, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, p + 3, run_id);
    if ((rc = insert_rows(&j, ins, err)) < 0) goto fail;
    st.rows = (int64_t)j.nrows;
    sqlite3_finalize(ins);
    ins = NULL;

    if (t->keep_partitions > 0) {
        /* Dates beyond the newest N (this one included), oldest last. */
        nj_buf_reset(&sql);
        nj_buf_printf(&sql,
                      "SELECT count(*) FROM (SELECT DISTINCT ds FROM \"%s\" ORDER BY ds DESC "
                      "LIMIT -1 OFFSET %d)",
                      t->name, t->keep_partitions);
        if ((rc = run_sql(pub, sql.data, NULL, NULL, &st.dropped_partitions, err)) < 0) goto fail;
        if (st.dropped_partitions > 0) {
            nj_buf_reset(&sql);
            nj_buf_printf(&sql,
                          "DELETE FROM \"%s\" WHERE ds < (SELECT ds FROM (SELECT DISTINCT ds "
                          "FROM \"%s\" ORDER BY ds DESC LIMIT 1 OFFSET %d))",
                          t->name, t->name, t->keep_partitions - 1);
            if ((rc = run_sql(pub, sql.data, NULL, NULL, NULL, err)) < 0) goto fail;
        }
    }

    nj_buf_reset(&sql);
    nj_buf_printf(&sql,
                  "INSERT INTO nightjar_publications (table_name, ds, run_id, model_version, "
                  "rows, published_at) VALUES ('%s', ?1, %lld, ?2, %lld, "
                  "strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now'))",
                  t->name, (long long)run_id, (long long)st.rows);
    {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(pub->db, sql.data, -1, &q, NULL) != SQLITE_OK) {
            rc = db_error(pub, err, "cannot record publication");
            goto fail;
        }
        sqlite3_bind_text(q, 1, ds, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, model_version, -1, SQLITE_STATIC);
        int step = sqlite3_step(q);
        sqlite3_finalize(q);
        if (step != SQLITE_DONE) {
            rc = db_error(pub, err, "cannot record publication");
            goto fail;
        }
        st.publication_id = sqlite3_last_insert_rowid(pub->db);
    }
    if ((rc = exec_sql(pub, "COMMIT", err)) < 0) goto fail;
    in_txn = 0;
    st.duration_ms = nj_time_mono_ms() - started;
    if (stats) *stats = st;
    rc = 0;
    goto done;
fail:
    if (err && rc == NJ_EDB) nj_err_prefix(err, "cannot publish table '%s'", t->name);
done:
    sqlite3_finalize(ins);
    if (in_txn) exec_sql(pub, "ROLLBACK", NULL);
    csv_close(&r);
    free(j.field_of);
    free(j.is_key);
    free(j.key_of);
    free(j.rows);
    free(j.fieldv);
    free(j.fieldlen);
    nj_buf_release(&sql);
    return rc;
}
