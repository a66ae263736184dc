/* json.c - a recursive-descent JSON parser into a DOM, dotted-path lookup,
 * and a writer for strings, numbers and whole trees.
 *
 * A parsed tree is one heap-allocated root; each array or object owns one
 * contiguous array of child values (and of key strings). Positions are not
 * stored in the tree: an error computes its line and column from the offset
 * at which it was found, so parsing pays nothing for messages it never gives.
 */
#include "nightjar/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/fs.h"

#define MAX_DEPTH 256

typedef struct parser {
    const char *start, *p, *end;
    const char *name;
    int depth;
    nj_err *err;
} parser;

static int fail_at(parser *ps, const char *at, const char *fmt, ...) NJ_PRINTF(3, 4);
static int fail_at(parser *ps, const char *at, const char *fmt, ...)
{
    int line = 1, col = 1;
    for (const char *c = ps->start; c < at; c++) {
        if (*c == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return nj_err_set(ps->err, NJ_EFORMAT, "%s:%d:%d: %s", ps->name, line, col, what);
}

static void skip_space(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* What is at p, for "expected X, found Y" messages. */
static const char *describe(parser *ps, char *buf, size_t size)
{
    if (ps->p >= ps->end) return "end of input";
    unsigned char c = (unsigned char)*ps->p;
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, size, "'%c'", c);
    else
        snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

static void release(nj_json *v)
{
    switch (v->type) {
    case NJ_JSON_STRING:
        free(v->string);
        break;
    case NJ_JSON_OBJECT:
        for (size_t i = 0; i < v->len; i++)
            free(v->keys[i]);
        free(v->keys);
        /* fall through */
    case NJ_JSON_ARRAY:
        for (size_t i = 0; i < v->len; i++)
            release(&v->items[i]);
        free(v->items);
        break;
    default:
        break;
    }
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(nj_buf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    }
    nj_buf_add(b, u, n);
}

/* At the opening quote. Returns the decoded string (caller frees) or NULL. */
static char *parse_string(parser *ps)
{
    nj_buf b;
    nj_buf_init(&b);
    ps->p++;
    for (;;) {
        const char *run = ps->p;
        while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\' && (unsigned char)*ps->p >= 0x20)
            ps->p++;
        nj_buf_add(&b, run, (size_t)(ps->p - run));
        if (ps->p >= ps->end) {
            fail_at(ps, ps->p, "unterminated string");
            goto fail;
        }
        char c = *ps->p;
        if (c == '"') break;
        if (c != '\\') {
            fail_at(ps, ps->p, "control character 0x%02x in string", (unsigned char)c);
            goto fail;
        }
        const char *esc = ps->p++;
        if (ps->p >= ps->end) {
            fail_at(ps, ps->p, "unterminated string");
            goto fail;
        }
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *k = *ps->p ? strchr(from, *ps->p) : NULL;
        if (k) {
            nj_buf_putc(&b, to[k - from]);
            ps->p++;
            continue;
        }
        if (*ps->p != 'u') {
            fail_at(ps, esc, "invalid escape '\\%c'", *ps->p);
            goto fail;
        }
        unsigned cp, lo;
        if (ps->end - ps->p < 5 || hex4(ps->p + 1, &cp) < 0) {
            fail_at(ps, esc, "invalid \\u escape: expected 4 hex digits");
            goto fail;
        }
        ps->p += 5;
        if (cp >= 0xdc00 && cp <= 0xdfff) {
            fail_at(ps, esc, "unpaired surrogate \\u%04x", cp);
            goto fail;
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
                hex4(ps->p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
                fail_at(ps, esc, "unpaired surrogate \\u%04x", cp);
                goto fail;
            }
            ps->p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        if (cp == 0) {
            fail_at(ps, esc, "\\u0000 is not supported");
            goto fail;
        }
        put_utf8(&b, cp);
    }
    ps->p++;
    return nj_buf_detach(&b);
fail:
    nj_buf_release(&b);
    return NULL;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? exactly, as RFC 8259 says. */
static int parse_number(parser *ps, double *out)
{
    const char *s = ps->p, *q = s;
    const char *e = ps->end;
#define DIGITS(q) ((q) < e && *(q) >= '0' && *(q) <= '9')
    if (q < e && *q == '-') q++;
    if (!DIGITS(q)) return fail_at(ps, s, "invalid number");
    if (*q == '0')
        q++;
    else
        while (DIGITS(q))
            q++;
    if (q < e && *q == '.') {
        if (!DIGITS(q + 1)) return fail_at(ps, q + 1, "invalid number: expected a digit after '.'");
        q++;
        while (DIGITS(q))
            q++;
    }
    if (q < e && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < e && (*q == '+' || *q == '-')) q++;
        if (!DIGITS(q)) return fail_at(ps, q, "invalid number: expected a digit in the exponent");
        while (DIGITS(q))
            q++;
    }
#undef DIGITS
    char small[64];
    char *copy = (size_t)(q - s) < sizeof(small) ? small : nj_xmalloc((size_t)(q - s) + 1);
    memcpy(copy, s, (size_t)(q - s));
    copy[q - s] = '\0';
    errno = 0;
    *out = strtod(copy, NULL);
    int range = errno == ERANGE && isinf(*out);
    if (copy != small) free(copy);
    if (range) return fail_at(ps, s, "number out of range");
    ps->p = q;
    return 0;
}

static int parse_value(parser *ps, nj_json *v);

static int parse_container(parser *ps, nj_json *v, int object)
{
    char close = object ? '}' : ']', what[16];
    size_t cap = 0, kcap = 0;
    v->type = object ? NJ_JSON_OBJECT : NJ_JSON_ARRAY;
    if (++ps->depth > MAX_DEPTH) return fail_at(ps, ps->p, "nesting deeper than %d", MAX_DEPTH);
    ps->p++;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        char *key = NULL;
        if (object) {
            if (ps->p >= ps->end || *ps->p != '"')
                return fail_at(ps, ps->p, "expected a member name in quotes, found %s",
                               describe(ps, what, sizeof(what)));
            if (!(key = parse_string(ps))) return ps->err ? ps->err->code : NJ_EFORMAT;
            skip_space(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                free(key);
                return fail_at(ps, ps->p, "expected ':' after member name, found %s",
                               describe(ps, what, sizeof(what)));
            }
            ps->p++;
            NJ_PUSH(v->keys, v->len, kcap, key);
            v->len--; /* v->len counts items; the key was pushed with the same index */
        }
        nj_grow(&v->items, &cap, v->len + 1, sizeof(*v->items));
        nj_json *item = &v->items[v->len];
        memset(item, 0, sizeof(*item));
        v->len++;
        int rc = parse_value(ps, item);
        if (rc < 0) return rc;
        skip_space(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_space(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            ps->depth--;
            return 0;
        }
        return fail_at(ps, ps->p, "expected ',' or '%c', found %s", close,
                       describe(ps, what, sizeof(what)));
    }
}

static int word(parser *ps, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0) return 0;
    ps->p += n;
    return 1;
}

/* Parses one value at p (after skipping space) into *v, which is zeroed.
 * On failure *v may hold partial children: the caller releases it. */
static int parse_value(parser *ps, nj_json *v)
{
    char what[16];
    skip_space(ps);
    if (ps->p >= ps->end) return fail_at(ps, ps->p, "expected a value, found end of input");
    switch (*ps->p) {
    case '{':
        return parse_container(ps, v, 1);
    case '[':
        return parse_container(ps, v, 0);
    case '"':
        v->type = NJ_JSON_STRING;
        return (v->string = parse_string(ps)) ? 0 : ps->err ? ps->err->code : NJ_EFORMAT;
    case 't':
    case 'f':
    case 'n':
        if (word(ps, "true") || word(ps, "false")) {
            v->type = NJ_JSON_BOOL;
            v->boolean = ps->p[-1] == 'e' && ps->p[-4] == 't'; /* "true", not "false" */
            return 0;
        }
        if (word(ps, "null")) return 0;
        break;
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
            v->type = NJ_JSON_NUMBER;
            return parse_number(ps, &v->number);
        }
    }
    return fail_at(ps, ps->p, "expected a value, found %s", describe(ps, what, sizeof(what)));
}

int nj_json_parse(const char *text, size_t len, const char *name, nj_json **out, nj_err *err)
{
    nj_err local;
    parser ps = {text, text, text + len, name ? name : "<json>", 0, err ? err : &local};
    nj_json *root = nj_xcalloc(1, sizeof(*root));
    *out = NULL;
    int rc = parse_value(&ps, root);
    if (rc == 0) {
        skip_space(&ps);
        if (ps.p < ps.end) rc = fail_at(&ps, ps.p, "unexpected text after the JSON value");
    }
    if (rc < 0) {
        nj_json_free(root);
        return rc;
    }
    *out = root;
    return 0;
}

int nj_json_load(const char *path, nj_json **out, nj_err *err)
{
    char *data = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = nj_fs_read_file(path, &data, &len, err);
    if (rc == 0) rc = nj_json_parse(data, len, path, out, err);
    free(data);
    return rc;
}

void nj_json_free(nj_json *root)
{
    if (!root) return;
    release(root);
    free(root);
}

const nj_json *nj_json_get(const nj_json *obj, const char *key)
{
    if (!obj || obj->type != NJ_JSON_OBJECT || !key) return NULL;
    for (size_t i = obj->len; i-- > 0;)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

const nj_json *nj_json_path(const nj_json *root, const char *path)
{
    const nj_json *v = root;
    if (!path || !*path) return root;
    for (const char *seg = path; v; seg++) {
        size_t n = strcspn(seg, ".");
        char key[256];
        if (n >= sizeof(key)) return NULL;
        memcpy(key, seg, n);
        key[n] = '\0';
        if (v->type == NJ_JSON_ARRAY) {
            char *endp;
            errno = 0;
            unsigned long long i = strtoull(key, &endp, 10);
            if (n == 0 || *endp || key[0] < '0' || key[0] > '9' || i >= v->len) return NULL;
            v = &v->items[i];
        } else {
            v = nj_json_get(v, key);
        }
        seg += n;
        if (!*seg) return v;
    }
    return NULL;
}

const char *nj_json_type_name(nj_json_type type)
{
    static const char *const names[] = {"null", "boolean", "number", "string", "array", "object"};
    return (unsigned)type < sizeof(names) / sizeof(names[0]) ? names[type] : "unknown";
}

void nj_json_write_string(nj_buf *out, const char *s)
{
    if (!s) {
        nj_buf_puts(out, "null");
        return;
    }
    nj_buf_putc(out, '"');
    for (const char *run = s;; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        nj_buf_add(out, run, (size_t)(s - run));
        run = s + 1;
        if (!c) break;
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\t' ? "\\t"
                          : c == '\r' ? "\\r"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : NULL;
        if (esc)
            nj_buf_puts(out, esc);
        else
            nj_buf_printf(out, "\\u%04x", c);
    }
    nj_buf_putc(out, '"');
}

void nj_json_write_number(nj_buf *out, double v)
{
    if (!isfinite(v)) {
        nj_buf_puts(out, "null");
        return;
    }
    char s[32];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof(s), "%.*g", prec, v);
        if (strtod(s, NULL) == v) break;
    }
    nj_buf_puts(out, s);
}

void nj_json_write(nj_buf *out, const nj_json *v)
{
    switch (v->type) {
    case NJ_JSON_NULL:
        nj_buf_puts(out, "null");
        break;
    case NJ_JSON_BOOL:
        nj_buf_puts(out, v->boolean ? "true" : "false");
        break;
    case NJ_JSON_NUMBER:
        nj_json_write_number(out, v->number);
        break;
    case NJ_JSON_STRING:
        nj_json_write_string(out, v->string);
        break;
    case NJ_JSON_ARRAY:
    case NJ_JSON_OBJECT:
        nj_buf_putc(out, v->type == NJ_JSON_ARRAY ? '[' : '{');
        for (size_t i = 0; i < v->len; i++) {
            if (i) nj_buf_putc(out, ',');
            if (v->type == NJ_JSON_OBJECT) {
                nj_json_write_string(out, v->keys[i]);
                nj_buf_putc(out, ':');
            }
            nj_json_write(out, &v->items[i]);
        }
        nj_buf_putc(out, v->type == NJ_JSON_ARRAY ? ']' : '}');
        break;
    }
}
