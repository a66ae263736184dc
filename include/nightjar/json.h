/* json.h - a small JSON reader (a DOM) and helpers for writing JSON.
 *
 * Reads RFC 8259 JSON: objects, arrays, strings with every escape including
 * \uXXXX and surrogate pairs (decoded to UTF-8), numbers (as double), true,
 * false and null. Meant for metrics files and other small documents that
 * stages write: the whole document is held in memory.
 *
 *     nj_err err = {0};
 *     nj_json *doc = NULL;
 *     if (nj_json_load("metrics.json", &doc, &err) < 0)
 *         fprintf(stderr, "nightjar: error: %s\n", err.msg);
 *         // "metrics.json:3:14: expected ',' or '}'"
 *     const nj_json *auc = nj_json_path(doc, "overall.model.auc");
 *     if (auc && auc->type == NJ_JSON_NUMBER) printf("%g\n", auc->number);
 *     nj_json_free(doc);
 *
 * Ownership: nj_json_parse()/nj_json_load() return a tree that the caller
 * frees with nj_json_free() on the root; every pointer into the tree (from
 * nj_json_get(), nj_json_path(), items, keys, strings) is borrowed and valid
 * until then. Trees are never modified after parsing.
 *
 * Decisions: "\u0000" is refused (strings are NUL-terminated C strings);
 * nesting deeper than 256 is refused; of duplicate object keys the last one
 * wins in lookups (as in JavaScript); raw bytes >= 0x80 are taken as they are
 * (not validated as UTF-8). Numbers are converted with strtod() and so assume
 * the "C" locale, which nightjar never changes.
 */
#ifndef NJ_JSON_H
#define NJ_JSON_H

#include <stddef.h>

#include "nightjar/err.h"
#include "nightjar/util.h"

typedef enum nj_json_type {
    NJ_JSON_NULL,
    NJ_JSON_BOOL,
    NJ_JSON_NUMBER,
    NJ_JSON_STRING,
    NJ_JSON_ARRAY,
    NJ_JSON_OBJECT,
} nj_json_type;

typedef struct nj_json nj_json;
struct nj_json {
    nj_json_type type;
    int boolean;    /* NJ_JSON_BOOL: 0 or 1 */
    double number;  /* NJ_JSON_NUMBER */
    char *string;   /* NJ_JSON_STRING: UTF-8, NUL-terminated */
    size_t len;     /* NJ_JSON_ARRAY/NJ_JSON_OBJECT: number of items */
    nj_json *items; /* array elements, or object member values in file order */
    char **keys;    /* NJ_JSON_OBJECT: member names, parallel to items */
};

/* Parses `len` bytes of `text` (need not be NUL-terminated). `name` is only
 * for messages. Returns 0 and the tree in *out (caller frees), or NJ_EFORMAT
 * with "<name>:<line>:<col>: <what>" (1-based byte column), e.g.
 * "metrics.json:3:14: expected ',' or '}'". */
int nj_json_parse(const char *text, size_t len, const char *name, nj_json **out, nj_err *err);

/* Reads and parses the file at `path`; errors name the path. */
int nj_json_load(const char *path, nj_json **out, nj_err *err);

void nj_json_free(nj_json *root); /* NULL is fine; only ever call it on a root */

/* The value of member `key` of an object (the last one if repeated), or NULL
 * when `obj` is NULL, not an object, or has no such member. Borrowed. */
const nj_json *nj_json_get(const nj_json *obj, const char *key);

/* Follows a dotted path: "overall.model.auc" is member "overall", then
 * "model", then "auc"; a segment of digits indexes an array ("by_origin.0").
 * An empty path ("" or NULL) is `root` itself. Returns NULL when any step is
 * missing. Borrowed. Member names containing '.' cannot be reached. */
const nj_json *nj_json_path(const nj_json *root, const char *path);

/* "null", "boolean", "number", "string", "array", "object". */
const char *nj_json_type_name(nj_json_type type);

/* Appends `s` as a quoted JSON string: '"' and '\\' escaped, control bytes as
 * \n, \t, ... or \u00XX; other bytes (UTF-8) as they are. NULL gives null. */
void nj_json_write_string(nj_buf *out, const char *s);
/* Appends a number that reads back to the same double ("%.17g" shortened
 * when a shorter form round-trips); NaN and infinities give null. */
void nj_json_write_number(nj_buf *out, double v);
/* Appends `v` as compact JSON (no spaces). */
void nj_json_write(nj_buf *out, const nj_json *v);

#endif
