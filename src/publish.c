/* publish.c - a stage's CSV output into the serving database, one date per
 * transaction (see publish.h for the tables, the CSV dialect and the
 * guarantees).
 *
 * Speed: the CSV is read in 1 MiB blocks into one buffer; each record is
 * found with a quote-aware scan, split in place (quotes removed, fields
 * NUL-terminated where the delimiter was) and bound to one prepared INSERT
 * with SQLITE_STATIC, so a row costs no allocation and no copy. ds,
 * model_version and run_id are bound once: sqlite3_reset() keeps bindings.
 * Numbers are checked and converted here and bound as numbers, which is also
 * less work for SQLite than text it must convert by column affinity.
 *
 * Invariant: nothing is written outside the one BEGIN IMMEDIATE ... COMMIT of
 * nj_publish_csv(); every failure after BEGIN rolls back, so on error the
 * serving database is byte-for-byte what readers saw before.
 */
#include "nightjar/publish.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nightjar/fs.h"
#include "nightjar/util.h"

#define READ_BLOCK (1 << 20)

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
    if (t->ncolumns == 0)
        return nj_err_set(err, NJ_EPIPELINE, "table '%s' declares no columns", t->name);
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

typedef struct csv_reader {
    const char *path;
    int fd;
    char *buf;
    size_t cap, len, pos; /* unread bytes are buf[pos..len); buf[len] is writable */
    int eof;
    int64_t line; /* line number at buf[pos] */
    csv_field *fields;
    size_t nfields, fields_cap;
} csv_reader;

static int csv_open(csv_reader *r, const char *path, nj_err *err)
{
    memset(r, 0, sizeof(*r));
    r->path = path;
    r->line = 1;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) return nj_err_sys(err, errno, "cannot open '%s'", path);
    posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    r->cap = READ_BLOCK + 1;
    r->buf = nj_xmalloc(r->cap);
    return 0;
}

static void csv_close(csv_reader *r)
{
    if (r->buf) close(r->fd); /* csv_open() allocates buf only once fd is open */
    free(r->buf);
    free(r->fields);
    memset(r, 0, sizeof(*r));
}

/* Moves unread bytes to the front, grows the buffer if a record fills it,
 * and reads one more block. */
static int csv_fill(csv_reader *r, nj_err *err)
{
    if (r->pos) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->cap - r->len < READ_BLOCK / 2 + 1) {
        r->cap = r->cap * 2;
        r->buf = nj_xrealloc(r->buf, r->cap);
    }
    ssize_t n;
    do
        n = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
    while (n < 0 && errno == EINTR);
    if (n < 0) return nj_err_sys(err, errno, "cannot read '%s'", r->path);
    if (n == 0) r->eof = 1;
    r->len += (size_t)n;
    return 0;
}

/* Splits buf[s..e) (one record, without its '\n') into fields, in place. */
static int csv_split(csv_reader *r, size_t s, size_t e, nj_err *err)
{
    char *buf = r->buf;
    size_t p = s, line_start = s;
    int64_t line = r->line;
    r->nfields = 0;
    for (;;) {
        csv_field f = {buf + p, 0, line, (int)(p - line_start) + 1, 0};
        int more;
        if (p < e && buf[p] == '"') {
            size_t w = p++;
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
            f.len = w - (size_t)(f.text - buf);
            if (p < e && buf[p] != ',' && !(buf[p] == '\r' && p + 1 == e))
                return nj_err_set(err, NJ_EFORMAT, "%s:%lld:%d: expected ',' after a quoted field",
                                  r->path, (long long)line, (int)(p - line_start) + 1);
        } else {
            const char *comma = memchr(buf + p, ',', e - p);
            size_t end = comma ? (size_t)(comma - buf) : e;
            if (!comma && end > p && buf[end - 1] == '\r') end--;
            f.len = end - p;
            p = end;
        }
        more = p < e && buf[p] == ',';
        f.text[f.len] = '\0';
        NJ_PUSH(r->fields, r->nfields, r->fields_cap, f);
        if (!more) break;
        p++;
    }
    r->line = line + 1;
    return 0;
}

/* Reads the next non-empty record into r->fields. Returns 1, 0 at end of
 * file, or a negative code. */
static int csv_next(csv_reader *r, nj_err *err)
{
    for (;;) {
        size_t i = r->pos, end = (size_t)-1;
        int quoted = 0;
        const char *buf = r->buf;
        for (; i < r->len; i++) {
            char c = buf[i];
            if (c == '"')
                quoted = !quoted;
            else if (c == '\n' && !quoted) {
                end = i;
                break;
            }
        }
        if (end == (size_t)-1) {
            if (!r->eof) {
                int rc = csv_fill(r, err);
                if (rc < 0) return rc;
                continue;
            }
            if (r->pos == r->len) return 0;
            if (quoted)
                return nj_err_set(err, NJ_EFORMAT,
                                  "%s:%lld: quoted field not closed before the "
                                  "end of the file",
                                  r->path, (long long)r->line);
            end = r->len;
        }
        size_t s = r->pos;
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

/* Everything one publish needs. */
typedef struct job {
    nj_publisher *pub;
    const nj_publish_table *t;
    const char *csv_path;
    size_t *field_of; /* declared column i is field field_of[i] of each record */
    int *is_key;      /* declared column i is a key column */
    size_t nheader;
} job;

static int map_header(job *j, csv_reader *r, nj_err *err)
{
    int rc = csv_next(r, err);
    if (rc < 0) return rc;
    if (rc == 0)
        return nj_err_set(err, NJ_EFORMAT, "%s:1: empty file, expected a header line", j->csv_path);
    j->nheader = r->nfields;
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
        for (size_t k = 0; k < j->t->nkey; k++)
            j->is_key[i] |= !strcmp(j->t->key[k], name);
    }
    return 0;
}

/* Binds declared column i of the current record to parameter i+1. */
static int bind_value(job *j, csv_reader *r, sqlite3_stmt *ins, size_t i, nj_err *err)
{
    const csv_field *f = &r->fields[j->field_of[i]];
    const nj_publish_column *c = &j->t->columns[i];
    int p = (int)i + 1;
    if (f->len == 0 && (!f->quoted || c->type != NJ_COLUMN_TEXT)) {
        if (j->is_key[i])
            return nj_err_set(err, NJ_EFORMAT,
                              "%s:%lld:%d: column '%s' is a key and cannot be "
                              "empty",
                              j->csv_path, (long long)f->line, f->col, c->name);
        sqlite3_bind_null(ins, p);
        return 0;
    }
    int64_t iv;
    double dv;
    switch (c->type) {
    case NJ_COLUMN_TEXT:
        sqlite3_bind_text(ins, p, f->text, (int)f->len, SQLITE_STATIC);
        return 0;
    case NJ_COLUMN_INTEGER:
        if (parse_integer(f->text, &iv) < 0) break;
        sqlite3_bind_int64(ins, p, iv);
        return 0;
    case NJ_COLUMN_REAL:
        if (parse_real(f->text, &dv) < 0) break;
        sqlite3_bind_double(ins, p, dv);
        return 0;
    }
    return nj_err_set(err, NJ_EFORMAT, "%s:%lld:%d: column '%s': '%.60s%s' is not %s %s",
                      j->csv_path, (long long)f->line, f->col, c->name, f->text,
                      f->len > 60 ? "..." : "", c->type == NJ_COLUMN_INTEGER ? "an" : "a",
                      type_names[c->type]);
}

/* The key of the current record as "flight_id='AA1', dep_time='06:00'". */
static void describe_key(job *j, csv_reader *r, nj_buf *out)
{
    for (size_t i = 0, n = 0; i < j->t->ncolumns; i++) {
        if (!j->is_key[i]) continue;
        nj_buf_printf(out, "%s%s='%s'", n++ ? ", " : "", j->t->columns[i].name,
                      r->fields[j->field_of[i]].text);
    }
}

/* Whether the current records of a and b have equal keys as SQLite compares
 * them (numbers by value). */
static int same_key(job *j, csv_reader *a, csv_reader *b)
{
    for (size_t i = 0; i < j->t->ncolumns; i++) {
        if (!j->is_key[i]) continue;
        const char *x = a->fields[j->field_of[i]].text, *y = b->fields[j->field_of[i]].text;
        int64_t xi, yi;
        double xd, yd;
        if (j->t->columns[i].type == NJ_COLUMN_INTEGER && !parse_integer(x, &xi) &&
            !parse_integer(y, &yi)) {
            if (xi != yi) return 0;
        } else if (j->t->columns[i].type == NJ_COLUMN_REAL && !parse_real(x, &xd) &&
                   !parse_real(y, &yd)) {
            if (xd != yd) return 0;
        } else if (strcmp(x, y) != 0) {
            return 0;
        }
    }
    return 1;
}

/* The unique index refused the current record of `r`: find the earlier line
 * with the same key by reading the file again (only ever on this error). */
static int duplicate_error(job *j, csv_reader *r, nj_err *err)
{
    nj_buf key;
    nj_buf_init(&key);
    describe_key(j, r, &key);
    int64_t line = r->fields[0].line, first = 0;
    csv_reader again;
    nj_err ignored;
    if (csv_open(&again, j->csv_path, &ignored) == 0 && csv_next(&again, &ignored) == 1) {
        while (csv_next(&again, &ignored) == 1 && again.fields[0].line < line)
            if (again.nfields == j->nheader && same_key(j, r, &again)) {
                first = again.fields[0].line;
                break;
            }
    }
    csv_close(&again);
    int rc = nj_err_set(err, NJ_EFORMAT,
                        "%s:%lld: duplicate key %s in table '%s' (first on line "
                        "%lld)",
                        j->csv_path, (long long)line, key.data, j->t->name, (long long)first);
    nj_buf_release(&key);
    return rc;
}

static int load_rows(job *j, csv_reader *r, sqlite3_stmt *ins, int64_t *rows, nj_err *err)
{
    int rc;
    while ((rc = csv_next(r, err)) == 1) {
        if (r->nfields != j->nheader)
            return nj_err_set(err, NJ_EFORMAT,
                              "%s:%lld: expected %zu fields as in the header, "
                              "found %zu",
                              j->csv_path, (long long)r->fields[0].line, j->nheader, r->nfields);
        for (size_t i = 0; i < j->t->ncolumns; i++)
            if ((rc = bind_value(j, r, ins, i, err)) < 0) return rc;
        int step = sqlite3_step(ins);
        if (step != SQLITE_DONE) {
            if (sqlite3_extended_errcode(j->pub->db) == SQLITE_CONSTRAINT_UNIQUE) {
                sqlite3_reset(ins);
                return duplicate_error(j, r, err);
            }
            rc = nj_err_set(err, NJ_EDB, "cannot insert %s:%lld into table '%s' in '%s': %s",
                            j->csv_path, (long long)r->fields[0].line, j->t->name, j->pub->path,
                            sqlite3_errmsg(j->pub->db));
            sqlite3_reset(ins);
            return rc;
        }
        sqlite3_reset(ins);
        (*rows)++;
    }
    return rc;
}

int nj_publish_csv(nj_publisher *pub, const nj_publish_table *t, const char *csv_path,
                   const char *ds, const char *model_version, int64_t run_id,
                   nj_publish_stats *stats, nj_err *err)
{
    int64_t started = nj_time_mono_ms();
    nj_publish_stats st = {0};
    csv_reader r = {0};
    job j = {pub, t, csv_path, NULL, NULL, 0};
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
    if ((rc = csv_open(&r, csv_path, err)) < 0 || (rc = map_header(&j, &r, err)) < 0) goto fail;

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
    if ((rc = load_rows(&j, &r, ins, &st.rows, err)) < 0) goto fail;
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
    nj_buf_release(&sql);
    return rc;
}
