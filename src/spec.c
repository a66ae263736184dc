/* spec.c - loading and validating a pipeline file into an nj_pipeline.
 *
 * Loading runs in two passes over the libyaml document tree:
 *   1. structure: every section is walked against a static table of allowed
 *      keys (top_keys, defaults_keys, cache_keys, partition_keys, stage_keys,
 *      and inside a stage stage_dep_keys and snapshot_keys); each key's parser checks
 *      the type of its value and fills the model. Strings that may hold
 *      templates are remembered as "sites" together with their YAML node.
 *   2. references: with every stage, output and param known, each stage's
 *      `partitioned` is settled (it defaults to whether the pipeline has a
 *      `partition:`), `needs:`, `params:` and stage deps ({stage, out,
 *      window}) are resolved, each template site is scanned (adding implicit
 *      params and stage uses), a stage that is not partitioned is checked not
 *      to read a partitioned one, and outputs are checked for overlap.
 * Every problem becomes one diagnostic with the position of the offending
 * node; they are sorted by position before being handed out, so the user
 * reads them in file order. Nothing is stopped early except a YAML syntax
 * error, after which nothing else can be trusted.
 *
 * The loader owns the YAML document and its per-stage scratch data; both are
 * freed before nj_pipeline_load() returns. The pipeline owns all its strings.
 */
#include "nightjar/spec.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "nightjar/fs.h"
#include "nightjar/gate.h"
#include "nightjar/pathset.h"
#include "nightjar/publish.h"
#include "nightjar/snapshot.h"
#include "nightjar/store.h"
#include "nightjar/template.h"

/* ---- diagnostics ---------------------------------------------------------- */

void nj_diag_add(nj_strs *diags, const char *file, nj_mark mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = nj_xvasprintf(fmt, ap);
    va_end(ap);
    char *line = mark.line > 0 ? nj_xasprintf("%s:%d:%d: %s", file, mark.line, mark.col, msg)
                               : nj_xasprintf("%s: %s", file, msg);
    free(msg);
    NJ_PUSH(diags->items, diags->len, diags->cap, line);
}

const char *nj_suggest(const char *word, const char *const *candidates, size_t n)
{
    size_t len = strlen(word);
    size_t limit = (len + 1) / 3 > 1 ? (len + 1) / 3 : 1;
    const char *best = NULL;
    size_t best_distance = limit + 1;
    for (size_t i = 0; i < n; i++) {
        size_t d = nj_edit_distance(word, candidates[i]);
        if (d < best_distance) {
            best = candidates[i];
            best_distance = d;
        }
    }
    return best;
}

/* ---- the loader ------------------------------------------------------------ */

/* retries, retry_delay, retry_delay_max, timeout as given in `defaults:` or
 * in a stage; has_* say whether the file set them. */
typedef struct settings {
    int has_retries, has_retry_delay, has_retry_delay_max, has_timeout;
    int retries;
    int64_t retry_delay_ms, retry_delay_max_ms, timeout_ms;
} settings;

/* A string that may hold templates, checked in pass 2. */
typedef struct site {
    yaml_node_t *node; /* the scalar, for its text and position */
    const char *where; /* the key it came from: "cmd", "deps", "env", ... */
    int is_path;       /* paths may only use params and ds */
} site;

/* Positions inside a stage dep {stage, out, window}, for pass 2's messages;
 * all zero for a path dep. */
typedef struct dep_marks {
    nj_mark stage, out, window; /* of the values */
    int has_window;
} dep_marks;

/* Scratch data for one stage, parallel to p->stages. */
typedef struct stage_extra {
    settings set;
    site *sites;
    size_t nsites, sites_cap;
    size_t deps_cap, outs_cap, needs_cap, params_cap, code_cap, uses_cap, env_cap;
    dep_marks *dep_marks; /* parallel to the stage's deps */
    size_t dep_marks_cap;
    int has_cmd; /* a `cmd` key was written (even with a bad value) */
    nj_mark cmd_key;
    int has_partitioned; /* `partitioned:` was written; its value: */
    int partitioned;
    nj_mark partitioned_mark;
    nj_mark snapshot_key;
    char *prefix; /* "stage 'train': " for messages */
    nj_mark champion_mark; /* first {{models.champion}} */
} stage_extra;

typedef struct diag {
    nj_mark mark;
    size_t seq; /* keeps report order among equal positions */
    char *msg;
} diag;

typedef struct big_map_dups {
    yaml_node_t *map;
    unsigned char *dup; /* dup[i]: key i repeats an earlier key */
} big_map_dups;

typedef struct loader {
    const char *file;
    big_map_dups *big;
    size_t nbig, big_cap;
    yaml_document_t doc;
    nj_pipeline *p;
    stage_extra *extra;
    size_t stages_cap, extra_cap, params_cap;
    settings defaults;
    char *workspace; /* as written */
    diag *diags;
    size_t ndiags, diags_cap;
} loader;

static void report(loader *L, nj_mark mark, const char *fmt, ...) NJ_PRINTF(3, 4);
static void report(loader *L, nj_mark mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = nj_xvasprintf(fmt, ap);
    va_end(ap);
    diag d = {mark, L->ndiags, msg};
    NJ_PUSH(L->diags, L->ndiags, L->diags_cap, d);
}

static int diag_cmp(const void *a, const void *b)
{
    const diag *x = a, *y = b;
    if (x->mark.line != y->mark.line) return x->mark.line < y->mark.line ? -1 : 1;
    if (x->mark.col != y->mark.col) return x->mark.col < y->mark.col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ---- YAML helpers ---------------------------------------------------------- */

static nj_mark mark_of(const yaml_node_t *node)
{
    nj_mark m = {(int)node->start_mark.line + 1, (int)node->start_mark.column + 1};
    return m;
}

static yaml_node_t *node_at(loader *L, int index)
{
    return yaml_document_get_node(&L->doc, index);
}

static const char *text_of(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar: YAML's null. */
static int is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = text_of(node);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int is_string(const yaml_node_t *node)
{
    return node->type == YAML_SCALAR_NODE && !is_null(node);
}

/* Where to point at a bad value: an empty value has no useful position of its
 * own, so point at its key. */
static nj_mark value_mark(const yaml_node_t *key, const yaml_node_t *value)
{
    return is_null(value) ? mark_of(key) : mark_of(value);
}

/* The position of byte `offset` of a scalar's text, when it can be mapped to
 * the source: a one-line scalar whose source span matches its text (plain, or
 * quoted without escapes). Otherwise the scalar's own position. */
static nj_mark mark_in_scalar(const yaml_node_t *node, size_t offset)
{
    nj_mark m = mark_of(node);
    yaml_mark_t s = node->start_mark, e = node->end_mark;
    size_t len = node->data.scalar.length;
    if (s.line != e.line || e.column < s.column) return m;
    size_t span = e.column - s.column;
    yaml_scalar_style_t style = node->data.scalar.style;
    if (style == YAML_PLAIN_SCALAR_STYLE && span == len)
        m.col += (int)offset;
    else if ((style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
              style == YAML_DOUBLE_QUOTED_SCALAR_STYLE) &&
             span == len + 2)
        m.col += (int)offset + 1;
    return m;
}

static int name_ok(const char *s, const char *extra)
{
    if (!*s) return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || strchr(extra, c)))
            return 0;
    }
    return 1;
}

/* " (did you mean 'x'?)" or "", in a static buffer for one format call. */
static const char *did_you_mean(const char *word, const char *const *candidates, size_t n)
{
    static char hint[300];
    const char *s = nj_suggest(word, candidates, n);
    if (!s) return "";
    snprintf(hint, sizeof(hint), " (did you mean '%s'?)", s);
    return hint;
}

/* ---- walking a mapping against a key table ------------------------------------ */

/* What a key parser works on. `stage` is an index into p->stages (when in a
 * stage); `set` the settings of defaults or of that stage. */
typedef struct stage_dep_scratch stage_dep_scratch;

typedef struct target {
    loader *L;
    const char *prefix; /* "", "defaults: " or "stage 'train': " */
    settings *set;
    size_t stage;
    stage_dep_scratch *dep; /* while walking a stage dep's mapping, or `from`/`candidate` */
    void *obj;              /* the gate or publish table being read */
} target;

typedef void (*key_fn)(target *t, yaml_node_t *key, yaml_node_t *value);

typedef struct key_rule {
    const char *name;
    int required;
    key_fn parse;
} key_rule;

#define MAX_RULES 32

/* Checks the key of pair `i` of `map`: it must be a scalar and not repeat an
 * earlier key. Returns its text, or NULL after reporting. */
/* Duplicate keys. Small mappings compare each key with the ones before it;
 * a large one (the `stages:` of a generated pipeline can have thousands of
 * keys) is sorted once and remembered, so the check stays O(n log n). */
#define BIG_MAPPING 32

typedef struct dup_sort_item {
    const char *text;
    size_t index;
} dup_sort_item;

static int dup_item_cmp(const void *a, const void *b)
{
    const dup_sort_item *x = a, *y = b;
    int c = strcmp(x->text, y->text);
    return c ? c : (x->index < y->index ? -1 : x->index > y->index);
}

static size_t pair_count(const yaml_node_t *map);

static int is_duplicate_key(loader *L, yaml_node_t *map, size_t i)
{
    yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
    size_t n = pair_count(map);
    const char *text = text_of(node_at(L, pairs[i].key));
    if (n <= BIG_MAPPING) {
        for (size_t j = 0; j < i; j++) {
            yaml_node_t *other = node_at(L, pairs[j].key);
            if (other->type == YAML_SCALAR_NODE && strcmp(text_of(other), text) == 0) return 1;
        }
        return 0;
    }
    big_map_dups *d = NULL;
    for (size_t k = 0; k < L->nbig && !d; k++)
        if (L->big[k].map == map) d = &L->big[k];
    if (!d) {
        big_map_dups fresh = {map, nj_xcalloc(n, 1)};
        dup_sort_item *items = nj_xcalloc(n, sizeof(*items));
        size_t m = 0;
        for (size_t j = 0; j < n; j++) {
            yaml_node_t *k = node_at(L, pairs[j].key);
            if (k->type == YAML_SCALAR_NODE) items[m++] = (dup_sort_item){text_of(k), j};
        }
        qsort(items, m, sizeof(*items), dup_item_cmp);
        for (size_t j = 1; j < m; j++)
            if (strcmp(items[j].text, items[j - 1].text) == 0) fresh.dup[items[j].index] = 1;
        free(items);
        NJ_PUSH(L->big, L->nbig, L->big_cap, fresh);
        d = &L->big[L->nbig - 1];
    }
    return d->dup[i];
}

static const char *pair_key(target *t, yaml_node_t *map, size_t i)
{
    loader *L = t->L;
    yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
    yaml_node_t *key = node_at(L, pairs[i].key);
    if (key->type != YAML_SCALAR_NODE) {
        report(L, mark_of(key), "%skeys must be strings", t->prefix);
        return NULL;
    }
    if (is_duplicate_key(L, map, i)) {
        report(L, mark_of(key), "%sduplicate key '%s'", t->prefix, text_of(key));
        return NULL;
    }
    return text_of(key);
}

static size_t pair_count(const yaml_node_t *map)
{
    return (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

static size_t item_count(const yaml_node_t *seq)
{
    return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

static void walk_mapping(target *t, yaml_node_t *map, const key_rule *rules, size_t nrules,
                         nj_mark missing_at)
{
    loader *L = t->L;
    const char *names[MAX_RULES];
    unsigned char seen[MAX_RULES] = {0};
    if (nrules > MAX_RULES) NJ_BUG("too many keys in a table (%zu)", nrules);
    for (size_t r = 0; r < nrules; r++)
        names[r] = rules[r].name;
    size_t n = pair_count(map);
    for (size_t i = 0; i < n; i++) {
        const char *name = pair_key(t, map, i);
        if (!name) continue;
        yaml_node_t *key = node_at(L, map->data.mapping.pairs.start[i].key);
        yaml_node_t *value = node_at(L, map->data.mapping.pairs.start[i].value);
        size_t r = 0;
        while (r < nrules && strcmp(rules[r].name, name) != 0)
            r++;
        if (r == nrules) {
            report(L, mark_of(key), "%sunknown key '%s'%s", t->prefix, name,
                   did_you_mean(name, names, nrules));
            continue;
        }
        seen[r] = 1;
        rules[r].parse(t, key, value);
    }
    for (size_t r = 0; r < nrules; r++)
        if (rules[r].required && !seen[r])
            report(L, missing_at, "%smissing required key '%s'", t->prefix, rules[r].name);
}

/* ---- settings shared by `defaults:` and stages ----------------------------------- */

static void parse_retries(target *t, yaml_node_t *key, yaml_node_t *value)
{
    const char *s = is_string(value) ? text_of(value) : "";
    long n = -1;
    if (*s && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 9) n = strtol(s, NULL, 10);
    if (n < 0) {
        report(t->L, value_mark(key, value), "%s'retries' must be a non-negative integer",
               t->prefix);
        return;
    }
    t->set->retries = (int)n;
    t->set->has_retries = 1;
}

static int parse_duration_value(target *t, yaml_node_t *key, yaml_node_t *value, int64_t *ms)
{
    const char *name = text_of(key);
    if (!is_string(value)) {
        report(t->L, value_mark(key, value), "%s'%s' must be a duration", t->prefix, name);
        return -1;
    }
    if (strcmp(name, "timeout") == 0 && strcmp(text_of(value), "none") == 0) {
        *ms = 0;
        return 0;
    }
    nj_err err = {0};
    if (nj_duration_parse(text_of(value), ms, &err) < 0) {
        report(t->L, mark_of(value), "%s'%s': %s", t->prefix, name, err.msg);
        return -1;
    }
    return 0;
}

static void parse_retry_delay(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (parse_duration_value(t, key, value, &t->set->retry_delay_ms) == 0)
        t->set->has_retry_delay = 1;
}

static void parse_retry_delay_max(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (parse_duration_value(t, key, value, &t->set->retry_delay_max_ms) == 0)
        t->set->has_retry_delay_max = 1;
}

static void parse_timeout(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (parse_duration_value(t, key, value, &t->set->timeout_ms) == 0) t->set->has_timeout = 1;
}

/* ---- stage keys ---------------------------------------------------------------- */

static nj_stage *stage_of(target *t)
{
    return &t->L->p->stages[t->stage];
}

static stage_extra *extra_of(target *t)
{
    return &t->L->extra[t->stage];
}

static void add_site(target *t, yaml_node_t *node, const char *where, int is_path)
{
    stage_extra *x = extra_of(t);
    site s = {node, where, is_path};
    NJ_PUSH(x->sites, x->nsites, x->sites_cap, s);
}

/* Calls `item` for each scalar of a sequence value; reports "'<key>' must be
 * a list of <what>" at a value that is not a sequence, and at each item that
 * is not a string. An empty value is an empty list. */
static void each_string_item(target *t, yaml_node_t *key, yaml_node_t *value, const char *what,
                             void (*item)(target *t, yaml_node_t *node))
{
    loader *L = t->L;
    if (is_null(value)) return;
    if (value->type != YAML_SEQUENCE_NODE) {
        report(L, mark_of(value), "%s'%s' must be a list of %s", t->prefix, text_of(key), what);
        return;
    }
    size_t n = item_count(value);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *node = node_at(L, value->data.sequence.items.start[i]);
        if (!is_string(node)) {
            report(L, mark_of(node), "%s'%s' must be a list of %s", t->prefix, text_of(key), what);
            continue;
        }
        item(t, node);
    }
}

static void parse_cmd(target *t, yaml_node_t *key, yaml_node_t *value)
{
    nj_stage *s = stage_of(t);
    extra_of(t)->has_cmd = 1;
    extra_of(t)->cmd_key = mark_of(key);
    if (!is_string(value)) {
        report(t->L, value_mark(key, value), "%s'cmd' must be a string", t->prefix);
        return;
    }
    s->cmd = nj_xstrdup(text_of(value));
    s->cmd_mark = mark_of(value);
    add_site(t, value, "cmd", 0);
}

/* Appends a dep to the stage, with its positions (zero for a path dep). */
static void push_dep(target *t, nj_dep d, dep_marks m)
{
    nj_stage *s = stage_of(t);
    stage_extra *x = extra_of(t);
    size_t n = s->ndeps;
    NJ_PUSH(x->dep_marks, n, x->dep_marks_cap, m);
    NJ_PUSH(s->deps, s->ndeps, x->deps_cap, d);
}

static void dep_item(target *t, yaml_node_t *node)
{
    nj_dep d = {.path = nj_path_normalize(text_of(node)), .mark = mark_of(node)};
    push_dep(t, d, (dep_marks){{0, 0}, {0, 0}, {0, 0}, 0});
    add_site(t, node, "deps", 1);
}

/* A stage dep being read: {stage: S, out: O, window: [from, to]}. */
struct stage_dep_scratch {
    nj_dep dep;
    dep_marks marks;
};

static void parse_dep_stage(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (!is_string(value)) {
        report(t->L, value_mark(key, value), "%s'stage' must be a stage name", t->prefix);
        return;
    }
    t->dep->dep.stage = nj_xstrdup(text_of(value));
    t->dep->marks.stage = mark_of(value);
}

static void parse_dep_out(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (!is_string(value)) {
        report(t->L, value_mark(key, value), "%s'out' must be an output name", t->prefix);
        return;
    }
    t->dep->dep.out = nj_xstrdup(text_of(value));
    t->dep->marks.out = mark_of(value);
}

/* A whole number of days, "3d"; with `signed_ok` also "-28d", "+3d". At most
 * six digits. Returns 0, or -1 when `text` is not one. */
static int parse_days(const char *text, int signed_ok, int32_t *days)
{
    const char *s = text;
    int sign = 1;
    if (signed_ok && (*s == '-' || *s == '+')) sign = *s++ == '-' ? -1 : 1;
    size_t digits = strspn(s, "0123456789");
    if (digits == 0 || digits > 6 || strcmp(s + digits, "d") != 0) return -1;
    *days = sign * (int32_t)strtol(s, NULL, 10);
    return 0;
}

static void parse_dep_window(target *t, yaml_node_t *key, yaml_node_t *value)
{
    loader *L = t->L;
    yaml_node_t *ends[2] = {NULL, NULL};
    if (value->type == YAML_SEQUENCE_NODE && item_count(value) == 2) {
        ends[0] = node_at(L, value->data.sequence.items.start[0]);
        ends[1] = node_at(L, value->data.sequence.items.start[1]);
    }
    if (!ends[0] || !is_string(ends[0]) || !is_string(ends[1])) {
        report(L, value_mark(key, value),
               "%s'window' must be a list of two day offsets such as [-28d, -1d]", t->prefix);
        return;
    }
    int32_t days[2];
    int ok = 1;
    for (int i = 0; i < 2; i++)
        if (parse_days(text_of(ends[i]), 1, &days[i]) < 0) {
            report(L, mark_of(ends[i]),
                   "%sinvalid window offset '%s' (expected days such as -28d, 0d or +3d)",
                   t->prefix, text_of(ends[i]));
            ok = 0;
        }
    if (!ok) return;
    if (days[0] > days[1]) {
        report(L, mark_of(value), "%s'window' [%s, %s] starts after it ends", t->prefix,
               text_of(ends[0]), text_of(ends[1]));
        return;
    }
    t->dep->dep.window_from = days[0];
    t->dep->dep.window_to = days[1];
    t->dep->marks.window = mark_of(value);
    t->dep->marks.has_window = 1;
}

static const key_rule stage_dep_keys[] = {
    {"stage", 1, parse_dep_stage},
    {"out", 1, parse_dep_out},
    {"window", 0, parse_dep_window},
};

/* {stage: S, out: O[, window: [from, to]]}: kept with path NULL when the
 * mapping had no problem (a dep with a bad window is not half-kept); S and O
 * are resolved in pass 2 (check_stage_deps). */
static void stage_dep_item(target *t, yaml_node_t *node)
{
    stage_dep_scratch sd = {.dep = {.mark = mark_of(node)}};
    char *prefix = nj_xasprintf("%sdeps: ", t->prefix);
    target dt = {t->L, prefix, t->set, t->stage, &sd, NULL};
    size_t problems = t->L->ndiags;
    walk_mapping(&dt, node, stage_dep_keys, sizeof(stage_dep_keys) / sizeof(stage_dep_keys[0]),
                 mark_of(node));
    free(prefix);
    if (t->L->ndiags == problems && sd.dep.stage && sd.dep.out) {
        push_dep(t, sd.dep, sd.marks);
        return;
    }
    free(sd.dep.stage);
    free(sd.dep.out);
}

static void parse_deps(target *t, yaml_node_t *key, yaml_node_t *value)
{
    loader *L = t->L;
    static const char what[] = "'deps' must be a list of paths or {stage, out} mappings";
    (void)key;
    if (is_null(value)) return;
    if (value->type != YAML_SEQUENCE_NODE) {
        report(L, mark_of(value), "%s%s", t->prefix, what);
        return;
    }
    size_t n = item_count(value);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *node = node_at(L, value->data.sequence.items.start[i]);
        if (is_string(node))
            dep_item(t, node);
        else if (node->type == YAML_MAPPING_NODE)
            stage_dep_item(t, node);
        else
            report(L, mark_of(node), "%s%s", t->prefix, what);
    }
}

static void code_item(target *t, yaml_node_t *node)
{
    nj_stage *s = stage_of(t);
    nj_ref r = {nj_path_normalize(text_of(node)), mark_of(node)};
    NJ_PUSH(s->code, s->ncode, extra_of(t)->code_cap, r);
    add_site(t, node, "code", 1);
}

static void parse_code(target *t, yaml_node_t *key, yaml_node_t *value)
{
    each_string_item(t, key, value, "paths", code_item);
}

static void needs_item(target *t, yaml_node_t *node)
{
    nj_stage *s = stage_of(t);
    for (size_t i = 0; i < s->nneeds; i++)
        if (strcmp(s->needs[i].name, text_of(node)) == 0) return;
    nj_ref r = {nj_xstrdup(text_of(node)), mark_of(node)};
    NJ_PUSH(s->needs, s->nneeds, extra_of(t)->needs_cap, r);
}

static void parse_needs(target *t, yaml_node_t *key, yaml_node_t *value)
{
    each_string_item(t, key, value, "stage names", needs_item);
}

static void add_stage_param(target *t, const char *name, size_t len, nj_mark mark)
{
    nj_stage *s = stage_of(t);
    for (size_t i = 0; i < s->nparams; i++)
        if (strlen(s->params[i].name) == len && memcmp(s->params[i].name, name, len) == 0) return;
    nj_ref r = {nj_xstrndup(name, len), mark};
    NJ_PUSH(s->params, s->nparams, extra_of(t)->params_cap, r);
}

static void param_item(target *t, yaml_node_t *node)
{
    add_stage_param(t, text_of(node), strlen(text_of(node)), mark_of(node));
}

static void parse_stage_params(target *t, yaml_node_t *key, yaml_node_t *value)
{
    each_string_item(t, key, value, "param names", param_item);
}

/* Iterates the pairs of a mapping of names to scalars (outs, env): reports a
 * value that is not a mapping and each value that is not a string. */
static void each_string_pair(target *t, yaml_node_t *key, yaml_node_t *value, const char *what,
                             void (*pair)(target *t, yaml_node_t *k, yaml_node_t *v))
{
    loader *L = t->L;
    if (is_null(value)) return;
    if (value->type != YAML_MAPPING_NODE) {
        report(L, mark_of(value), "%s'%s' must be a mapping of names to %s", t->prefix,
               text_of(key), what);
        return;
    }
    size_t n = pair_count(value);
    for (size_t i = 0; i < n; i++) {
        if (!pair_key(t, value, i)) continue;
        yaml_node_t *k = node_at(L, value->data.mapping.pairs.start[i].key);
        yaml_node_t *v = node_at(L, value->data.mapping.pairs.start[i].value);
        if (!is_string(v)) {
            report(L, value_mark(k, v), "%s'%s' must be a mapping of names to %s", t->prefix,
                   text_of(key), what);
            continue;
        }
        pair(t, k, v);
    }
}

/* An output path must stay inside the pipeline directory: not absolute, not
 * climbing out, not the directory itself. */
/* Reports a path that must stay inside the pipeline directory but is absolute
 * or climbs out of it ("<what> '<path>' must be relative to ..." / "...
 * escapes ..."). `dot_escapes`: the directory itself counts as escaping (an
 * output cannot be the whole directory). */
static void check_inside(target *t, yaml_node_t *node, const char *normalized, const char *what,
                         int dot_escapes)
{
    if (normalized[0] == '/')
        report(t->L, mark_of(node), "%s%s '%s' must be relative to the pipeline directory",
               t->prefix, what, text_of(node));
    else if (nj_path_escapes(normalized) || (dot_escapes && strcmp(normalized, ".") == 0))
        report(t->L, mark_of(node), "%s%s '%s' escapes the pipeline directory", t->prefix, what,
               text_of(node));
}

static int out_path_ok(const char *normalized)
{
    return normalized[0] != '/' && !nj_path_escapes(normalized) && strcmp(normalized, ".") != 0;
}

static void out_pair(target *t, yaml_node_t *k, yaml_node_t *v)
{
    nj_stage *s = stage_of(t);
    const char *name = text_of(k);
    if (!name_ok(name, ""))
        report(t->L, mark_of(k), "%sinvalid output name '%s' (use letters, digits, '_')", t->prefix,
               name);
    char *path = nj_path_normalize(text_of(v));
    check_inside(t, v, path, "output path", 1);
    nj_out o = {nj_xstrdup(name), path, mark_of(v)};
    NJ_PUSH(s->outs, s->nouts, extra_of(t)->outs_cap, o);
    add_site(t, v, "outs", 1);
}

static void parse_outs(target *t, yaml_node_t *key, yaml_node_t *value)
{
    each_string_pair(t, key, value, "paths", out_pair);
}

static void env_pair(target *t, yaml_node_t *k, yaml_node_t *v)
{
    nj_stage *s = stage_of(t);
    const char *name = text_of(k);
    if (!name_ok(name, "") || (name[0] >= '0' && name[0] <= '9'))
        report(t->L, mark_of(k), "%sinvalid env name '%s' (use letters, digits, '_')", t->prefix,
               name);
    nj_param e = {.name = nj_xstrdup(name), .value = nj_xstrdup(text_of(v)), .mark = mark_of(v)};
    NJ_PUSH(s->env, s->nenv, extra_of(t)->env_cap, e);
    add_site(t, v, "env", 0);
}

static void parse_env(target *t, yaml_node_t *key, yaml_node_t *value)
{
    each_string_pair(t, key, value, "scalars", env_pair);
}

static void parse_workdir(target *t, yaml_node_t *key, yaml_node_t *value)
{
    nj_stage *s = stage_of(t);
    if (!is_string(value)) {
        report(t->L, value_mark(key, value), "%s'workdir' must be a path", t->prefix);
        return;
    }
    char *path = nj_path_normalize(text_of(value));
    check_inside(t, value, path, "workdir", 0);
    if (strcmp(path, ".") == 0) {
        free(path); /* the pipeline directory itself */
        return;
    }
    free(s->workdir);
    s->workdir = path;
    add_site(t, value, "workdir", 1);
}

/* YAML's booleans: true, True, TRUE, false, False, FALSE. Returns 1, 0, or
 * -1 for anything else. */
static int parse_bool(const yaml_node_t *node)
{
    if (!is_string(node)) return -1;
    const char *s = text_of(node);
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return 0;
    return -1;
}

/* Settled in pass 2 (resolve_partitioned), once `partition:` is known. */
static void parse_partitioned(target *t, yaml_node_t *key, yaml_node_t *value)
{
    int b = parse_bool(value);
    if (b < 0) {
        report(t->L, value_mark(key, value), "%s'partitioned' must be true or false", t->prefix);
        return;
    }
    stage_extra *x = extra_of(t);
    x->has_partitioned = 1;
    x->partitioned = b;
    x->partitioned_mark = mark_of(key);
}

/* A snapshot input: a path template (params and ds) inside the pipeline
 * directory, kept normalised in the snapshot and also as a path dep of the
 * stage, so edges and the cache key see it like any input. */
static void snapshot_input(target *t, yaml_node_t *node)
{
    nj_stage *s = stage_of(t);
    char *path = nj_path_normalize(text_of(node));
    check_inside(t, node, path, "input", 0);
    nj_strs_push(&s->snapshot->inputs, path);
    nj_dep d = {.path = path, .mark = mark_of(node)};
    push_dep(t, d, (dep_marks){{0, 0}, {0, 0}, {0, 0}, 0});
    add_site(t, node, "snapshot inputs", 1);
}

static void parse_snapshot_inputs(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (is_null(value) || (value->type == YAML_SEQUENCE_NODE && item_count(value) == 0)) {
        report(t->L, mark_of(key), "%s'inputs' must not be empty", t->prefix);
        return;
    }
    each_string_item(t, key, value, "paths", snapshot_input);
}

static void parse_snapshot_format(target *t, yaml_node_t *key, yaml_node_t *value)
{
    nj_snapshot_spec *snap = stage_of(t)->snapshot;
    nj_err err = {0};
    if (!is_string(value) || nj_snapshot_format_check(text_of(value), &err) < 0) {
        report(t->L, value_mark(key, value), "%s%s", t->prefix,
               is_string(value) ? err.msg : "'format' must be tar.zst, tar.gz or tar");
        return;
    }
    free(snap->format);
    snap->format = nj_xstrdup(text_of(value));
}

static const key_rule snapshot_keys[] = {
    {"inputs", 1, parse_snapshot_inputs},
    {"format", 0, parse_snapshot_format},
};

/* The built-in snapshot type; check_stage_kind() checks the rest of the
 * stage (no cmd, one output) once all its keys are read. */
static void parse_snapshot(target *t, yaml_node_t *key, yaml_node_t *value)
{
    nj_stage *s = stage_of(t);
    extra_of(t)->snapshot_key = mark_of(key);
    if (value->type != YAML_MAPPING_NODE) {
        report(t->L, value_mark(key, value), "%s'snapshot' must be a mapping", t->prefix);
        return;
    }
    s->snapshot = nj_xcalloc(1, sizeof(*s->snapshot));
    char *prefix = nj_xasprintf("%ssnapshot: ", t->prefix);
    target st = {t->L, prefix, t->set, t->stage, NULL, NULL};
    walk_mapping(&st, value, snapshot_keys, sizeof(snapshot_keys) / sizeof(snapshot_keys[0]),
                 mark_of(key));
    free(prefix);
    if (!s->snapshot->format) s->snapshot->format = nj_xstrdup(NJ_SNAPSHOT_DEFAULT_FORMAT);
}

/* ---- stage keys: metrics and gate ------------------------------------------------ */

static void parse_metrics(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (!is_string(value) || !*text_of(value)) {
        report(t->L, value_mark(key, value), "%s'metrics' must name one of the stage's outputs",
               t->prefix);
        return;
    }
    nj_stage *s = stage_of(t);
    s->metrics = nj_xstrdup(text_of(value));
    s->metrics_mark = mark_of(value);
}

static const key_rule model_ref_keys[] = {
    {"stage", 1, parse_dep_stage},
    {"out", 1, parse_dep_out},
};

/* {stage: S, out: O} into *stage, *out (resolved in pass 2). */
static void parse_model_ref(target *t, yaml_node_t *key, yaml_node_t *value, char **stage,
                            char **out, nj_mark *stage_mark, nj_mark *out_mark)
{
    if (value->type != YAML_MAPPING_NODE) {
        report(t->L, value_mark(key, value), "%s'%s' must be a mapping {stage: S, out: O}",
               t->prefix, text_of(key));
        return;
    }
    stage_dep_scratch sd = {0};
    char *prefix = nj_xasprintf("%s%s: ", t->prefix, text_of(key));
    target rt = {t->L, prefix, t->set, t->stage, &sd, NULL};
    walk_mapping(&rt, value, model_ref_keys, sizeof(model_ref_keys) / sizeof(model_ref_keys[0]),
                 mark_of(value));
    free(prefix);
    free(*stage);
    free(*out);
    *stage = sd.dep.stage;
    *out = sd.dep.out;
    *stage_mark = sd.marks.stage;
    *out_mark = sd.marks.out;
}

static void parse_gate_candidate(target *t, yaml_node_t *key, yaml_node_t *value)
{
    nj_gate_spec *g = t->obj;
    parse_model_ref(t, key, value, &g->stage, &g->out, &g->stage_mark, &g->out_mark);
}

static void parse_gate_root(target *t, yaml_node_t *key, yaml_node_t *value, char **root)
{
    if (!is_null(value) && !is_string(value)) {
        report(t->L, mark_of(value), "%s'%s' must be a dotted path such as overall.model",
               t->prefix, text_of(key));
        return;
    }
    free(*root);
    *root = nj_xstrdup(is_null(value) ? "" : text_of(value));
}

static void parse_gate_metrics(target *t, yaml_node_t *key, yaml_node_t *value)
{
    parse_gate_root(t, key, value, &((nj_gate_spec *)t->obj)->candidate_root);
}

static void parse_gate_champion_metrics(target *t, yaml_node_t *key, yaml_node_t *value)
{
    parse_gate_root(t, key, value, &((nj_gate_spec *)t->obj)->champion_root);
}

/* Each rule is parsed here for its diagnostics (at the column of the
 * problem) and again, from the kept text, when the gate is evaluated. */
static void gate_rule(target *t, yaml_node_t *node)
{
    nj_gate_spec *g = t->obj;
    nj_gate gate;
    nj_gate_init(&gate);
    nj_err err = {0};
    int col = 1;
    if (nj_gate_add(&gate, text_of(node), &col, &err) < 0) {
        report(t->L, mark_in_scalar(node, (size_t)(col > 0 ? col - 1 : 0)), "%s%s", t->prefix,
               err.msg);
    } else {
        size_t n = g->rules.len;
        nj_strs_push(&g->rules, text_of(node));
        g->rule_marks = nj_xrealloc(g->rule_marks, (n + 1) * sizeof(*g->rule_marks));
        g->rule_marks[n] = mark_of(node);
    }
    nj_gate_release(&gate);
}

static void parse_gate_rules(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (value->type == YAML_SEQUENCE_NODE && item_count(value) == 0) {
        report(t->L, mark_of(value), "%s'rules' must not be empty", t->prefix);
        return;
    }
    each_string_item(t, key, value, "rules such as 'auc >= 0.6'", gate_rule);
}

static const key_rule gate_keys[] = {
    {"candidate", 1, parse_gate_candidate},
    {"metrics", 0, parse_gate_metrics},
    {"champion_metrics", 0, parse_gate_champion_metrics},
    {"rules", 1, parse_gate_rules},
};

static void parse_gate(target *t, yaml_node_t *key, yaml_node_t *value)
{
    nj_stage *s = stage_of(t);
    if (value->type != YAML_MAPPING_NODE) {
        report(t->L, value_mark(key, value),
               "%s'gate' must be a mapping {candidate, metrics, champion_metrics, rules}",
               t->prefix);
        return;
    }
    nj_gate_spec *g = nj_xcalloc(1, sizeof(*g));
    g->mark = mark_of(key);
    g->candidate_root = nj_xstrdup("");
    char *prefix = nj_xasprintf("%sgate: ", t->prefix);
    target gt = {t->L, prefix, t->set, t->stage, NULL, g};
    walk_mapping(&gt, value, gate_keys, sizeof(gate_keys) / sizeof(gate_keys[0]), mark_of(key));
    free(prefix);
    s->gate = g;
}

/* `cmd` is required unless
 * the stage is a snapshot: check_stage_kind() says so. */
static const key_rule stage_keys[] = {
    {"cmd", 0, parse_cmd},
    {"deps", 0, parse_deps},
    {"outs", 0, parse_outs},
    {"needs", 0, parse_needs},
    {"params", 0, parse_stage_params},
    {"code", 0, parse_code},
    {"env", 0, parse_env},
    {"retries", 0, parse_retries},
    {"retry_delay", 0, parse_retry_delay},
    {"retry_delay_max", 0, parse_retry_delay_max},
    {"timeout", 0, parse_timeout},
    {"workdir", 0, parse_workdir},
    {"partitioned", 0, parse_partitioned},
    {"snapshot", 0, parse_snapshot},
    {"metrics", 0, parse_metrics},
    {"gate", 0, parse_gate},
};

static const key_rule defaults_keys[] = {
    {"retries", 0, parse_retries},
    {"retry_delay", 0, parse_retry_delay},
    {"retry_delay_max", 0, parse_retry_delay_max},
    {"timeout", 0, parse_timeout},
};

/* ---- top-level keys ------------------------------------------------------------- */

static void parse_name(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (!is_string(value)) {
        report(t->L, value_mark(key, value), "'pipeline' must be a string");
        return;
    }
    if (!*text_of(value)) {
        report(t->L, mark_of(value), "'pipeline' must not be empty");
        return;
    }
    free(t->L->p->name);
    t->L->p->name = nj_xstrdup(text_of(value));
}

static void parse_workspace(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (!is_string(value)) {
        report(t->L, value_mark(key, value), "'workspace' must be a path");
        return;
    }
    free(t->L->workspace);
    t->L->workspace = nj_xstrdup(text_of(value));
}

static void parse_params(target *t, yaml_node_t *key, yaml_node_t *value)
{
    loader *L = t->L;
    nj_pipeline *p = L->p;
    if (is_null(value)) return;
    if (value->type != YAML_MAPPING_NODE) {
        report(L, value_mark(key, value), "'params' must be a mapping");
        return;
    }
    size_t n = pair_count(value);
    for (size_t i = 0; i < n; i++) {
        const char *name = pair_key(t, value, i);
        if (!name) continue;
        yaml_node_t *k = node_at(L, value->data.mapping.pairs.start[i].key);
        yaml_node_t *v = node_at(L, value->data.mapping.pairs.start[i].value);
        if (!name_ok(name, "-"))
            report(L, mark_of(k), "invalid param name '%s' (use letters, digits, '_', '-')", name);
        nj_param prm = {.name = nj_xstrdup(name), .mark = value_mark(k, v)};
        if (v->type == YAML_SCALAR_NODE) {
            prm.value = nj_xstrdup(text_of(v));
        } else if (v->type == YAML_SEQUENCE_NODE) {
            nj_buf joined;
            nj_buf_init(&joined);
            prm.is_list = 1;
            size_t m = item_count(v);
            for (size_t j = 0; j < m; j++) {
                yaml_node_t *item = node_at(L, v->data.sequence.items.start[j]);
                if (item->type != YAML_SCALAR_NODE) {
                    report(L, mark_of(item), "param '%s' must be a scalar or a list of scalars",
                           name);
                    continue;
                }
                nj_strs_push(&prm.items, text_of(item));
                if (joined.len) nj_buf_putc(&joined, ' ');
                nj_buf_puts(&joined, text_of(item));
            }
            prm.value = nj_buf_detach(&joined);
            nj_buf_release(&joined);
        } else {
            report(L, mark_of(v), "param '%s' must be a scalar or a list of scalars", name);
            prm.value = nj_xstrdup("");
        }
        NJ_PUSH(p->params, p->nparams, L->params_cap, prm);
    }
}

static void parse_defaults(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (is_null(value)) return;
    if (value->type != YAML_MAPPING_NODE) {
        report(t->L, mark_of(value), "'defaults' must be a mapping");
        return;
    }
    target d = {t->L, "defaults: ", &t->L->defaults, 0, NULL, NULL};
    walk_mapping(&d, value, defaults_keys, sizeof(defaults_keys) / sizeof(defaults_keys[0]),
                 mark_of(key));
}

/* A command stage needs `cmd`; a snapshot stage has none (its cmd is NULL)
 * and writes exactly one output, which its inputs must not overlap. */
static void check_stage_kind(loader *L, size_t i, nj_mark stage_key)
{
    nj_stage *s = &L->p->stages[i];
    stage_extra *x = &L->extra[i];
    int has_snapshot_key = x->snapshot_key.line > 0; /* even with a bad value */
    if (!has_snapshot_key && !x->has_cmd)
        report(L, stage_key, "%smissing required key 'cmd'", x->prefix);
    if (!s->snapshot) return;
    if (x->has_cmd) {
        report(L, x->cmd_key, "%sa snapshot stage has no 'cmd'", x->prefix);
        free(s->cmd);
        s->cmd = NULL;
    }
    if (s->nouts != 1) {
        report(L, x->snapshot_key,
               "%sa snapshot stage must declare exactly one output (it has %zu)", x->prefix,
               s->nouts);
        return;
    }
    /* The inputs are also the stage's path deps (with their positions). */
    const char *out = s->outs[0].path;
    for (size_t k = 0; k < s->ndeps; k++) {
        const nj_dep *d = &s->deps[k];
        if (!d->path || !nj_strs_contains(&s->snapshot->inputs, d->path)) continue;
        if (nj_path_within(out, d->path))
            report(L, d->mark, "%ssnapshot input '%s' contains its own output '%s'", x->prefix,
                   d->path, out);
        else if (nj_path_within(d->path, out))
            report(L, d->mark, "%ssnapshot input '%s' is inside its own output '%s'", x->prefix,
                   d->path, out);
    }
}

static void parse_stages(target *t, yaml_node_t *key, yaml_node_t *value)
{
    loader *L = t->L;
    nj_pipeline *p = L->p;
    if (is_null(value) || (value->type == YAML_MAPPING_NODE && pair_count(value) == 0)) {
        report(L, mark_of(key), "'stages' must not be empty");
        return;
    }
    if (value->type != YAML_MAPPING_NODE) {
        report(L, mark_of(value), "'stages' must be a mapping");
        return;
    }
    size_t n = pair_count(value);
    for (size_t i = 0; i < n; i++) {
        const char *name = pair_key(t, value, i);
        if (!name) continue;
        yaml_node_t *k = node_at(L, value->data.mapping.pairs.start[i].key);
        yaml_node_t *v = node_at(L, value->data.mapping.pairs.start[i].value);
        if (!name_ok(name, ".-"))
            report(L, mark_of(k), "invalid stage name '%s' (use letters, digits, '_', '-', '.')",
                   name);
        /* p->stages and L->extra grow together, index for index. */
        nj_stage s = {.name = nj_xstrdup(name), .mark = mark_of(k)};
        NJ_PUSH(p->stages, p->nstages, L->stages_cap, s);
        stage_extra x0 = {.prefix = nj_xasprintf("stage '%s': ", name)};
        size_t nextra = p->nstages - 1;
        NJ_PUSH(L->extra, nextra, L->extra_cap, x0);
        stage_extra *x = &L->extra[p->nstages - 1];
        if (v->type != YAML_MAPPING_NODE) {
            report(L, value_mark(k, v), "stage '%s' must be a mapping", name);
            continue;
        }
        target st = {L, x->prefix, &x->set, p->nstages - 1, NULL, NULL};
        walk_mapping(&st, v, stage_keys, sizeof(stage_keys) / sizeof(stage_keys[0]), mark_of(k));
        check_stage_kind(L, p->nstages - 1, mark_of(k));
    }
}

static void parse_cache_dir(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (!is_string(value) || !*text_of(value)) {
        report(t->L, value_mark(key, value), "%s'dir' must be a path", t->prefix);
        return;
    }
    nj_pipeline *p = t->L->p;
    char *joined = nj_path_join(p->dir, text_of(value));
    free(p->cache_dir);
    p->cache_dir = nj_path_normalize(joined);
    free(joined);
}

static void parse_cache_link(target *t, yaml_node_t *key, yaml_node_t *value)
{
    nj_link_mode mode;
    nj_err err = {0};
    if (!is_string(value) || nj_link_mode_parse(text_of(value), &mode, &err) < 0) {
        report(t->L, value_mark(key, value), "%s%s", t->prefix,
               is_string(value) ? err.msg : "'link' must be auto, reflink, hardlink or copy");
        return;
    }
    free(t->L->p->cache_link);
    t->L->p->cache_link = nj_xstrdup(nj_link_mode_name(mode));
}

static const key_rule cache_keys[] = {
    {"dir", 0, parse_cache_dir},
    {"link", 0, parse_cache_link},
};

static void parse_cache(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (is_null(value)) return;
    if (value->type != YAML_MAPPING_NODE) {
        report(t->L, mark_of(value), "'cache' must be a mapping");
        return;
    }
    target c = {t->L, "cache: ", t->set, 0, NULL, NULL};
    walk_mapping(&c, value, cache_keys, sizeof(cache_keys) / sizeof(cache_keys[0]), mark_of(key));
}

/* `partition: {by: ds, start: 2001-01-01, granularity: daily, lag: 1d}`. */
static void parse_partition_by(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (!is_string(value) || strcmp(text_of(value), "ds") != 0)
        report(t->L, value_mark(key, value), "%s'by' must be 'ds' (the only partition key for now)",
               t->prefix);
}

static void parse_partition_start(target *t, yaml_node_t *key, yaml_node_t *value)
{
    nj_err err = {0};
    if (!is_string(value)) {
        report(t->L, value_mark(key, value), "%s'start' must be a date (YYYY-MM-DD)", t->prefix);
        return;
    }
    if (nj_date_parse(text_of(value), &t->L->p->partition.start, &err) < 0)
        report(t->L, mark_of(value), "%s'start': %s", t->prefix, err.msg);
}

static void parse_partition_granularity(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (is_string(value) && strcmp(text_of(value), "daily") == 0) return;
    if (is_string(value))
        report(t->L, mark_of(value), "%sunsupported granularity '%s': only 'daily' is supported",
               t->prefix, text_of(value));
    else
        report(t->L, value_mark(key, value), "%s'granularity': only 'daily' is supported",
               t->prefix);
}

static void parse_partition_lag(target *t, yaml_node_t *key, yaml_node_t *value)
{
    int32_t days;
    if (!is_string(value) || parse_days(text_of(value), 0, &days) < 0) {
        report(t->L, value_mark(key, value),
               "%s'lag' must be a whole number of days such as 0d, 1d or 2d", t->prefix);
        return;
    }
    t->L->p->partition.lag_days = days;
}

static const key_rule partition_keys[] = {
    {"by", 0, parse_partition_by},
    {"start", 1, parse_partition_start},
    {"granularity", 0, parse_partition_granularity},
    {"lag", 0, parse_partition_lag},
};

static void parse_partition(target *t, yaml_node_t *key, yaml_node_t *value)
{
    nj_partition *part = &t->L->p->partition;
    if (value->type != YAML_MAPPING_NODE) {
        report(t->L, value_mark(key, value),
               "'partition' must be a mapping such as {by: ds, start: 2001-01-01}");
        return;
    }
    part->enabled = 1;
    part->lag_days = 1;
    part->mark = mark_of(key);
    target pt = {t->L, "partition: ", t->set, 0, NULL, NULL};
    walk_mapping(&pt, value, partition_keys, sizeof(partition_keys) / sizeof(partition_keys[0]),
                 mark_of(key));
}

/* ---- publish: ------------------------------------------------------------------ */

static nj_publish_spec *table_of(target *t)
{
    return t->obj;
}

static void parse_table_from(target *t, yaml_node_t *key, yaml_node_t *value)
{
    nj_publish_spec *tb = table_of(t);
    nj_mark ignored;
    tb->from_mark = mark_of(value);
    parse_model_ref(t, key, value, &tb->stage, &tb->out, &ignored, &ignored);
}

static void parse_table_columns(target *t, yaml_node_t *key, yaml_node_t *value)
{
    loader *L = t->L;
    nj_publish_spec *tb = table_of(t);
    if (value->type != YAML_MAPPING_NODE || pair_count(value) == 0) {
        report(L, value_mark(key, value),
               "%s'columns' must be a mapping of column names to text, integer or real",
               t->prefix);
        return;
    }
    size_t n = pair_count(value);
    tb->columns = nj_xcalloc(n, sizeof(*tb->columns));
    for (size_t i = 0; i < n; i++) {
        const char *name = pair_key(t, value, i);
        yaml_node_t *v = node_at(L, value->data.mapping.pairs.start[i].value);
        if (!name) continue;
        nj_err err = {0};
        nj_column_type type = NJ_COLUMN_TEXT;
        if (!is_string(v) || nj_column_type_parse(text_of(v), &type, &err) < 0) {
            report(L, mark_of(v), "%scolumn '%s': %s", t->prefix, name,
                   is_string(v) ? err.msg : "the type must be text, integer or real");
            continue;
        }
        tb->columns[tb->ncolumns++] = (nj_publish_column){nj_xstrdup(name), type};
    }
}

static void table_key_item(target *t, yaml_node_t *node)
{
    nj_publish_spec *tb = table_of(t);
    tb->key = nj_xrealloc(tb->key, (tb->nkey + 1) * sizeof(*tb->key));
    tb->key[tb->nkey++] = nj_xstrdup(text_of(node));
}

static void parse_table_key(target *t, yaml_node_t *key, yaml_node_t *value)
{
    each_string_item(t, key, value, "column names", table_key_item);
}

static void parse_table_keep(target *t, yaml_node_t *key, yaml_node_t *value)
{
    const char *text = is_string(value) ? text_of(value) : "";
    size_t digits = strspn(text, "0123456789");
    if (digits == 0 || digits > 6 || text[digits]) {
        report(t->L, value_mark(key, value),
               "%s'keep_partitions' must be a whole number of dates (0 keeps all)", t->prefix);
        return;
    }
    table_of(t)->keep_partitions = (int)strtol(text, NULL, 10);
}

static const key_rule table_keys[] = {
    {"from", 1, parse_table_from},
    {"columns", 1, parse_table_columns},
    {"key", 0, parse_table_key},
    {"keep_partitions", 0, parse_table_keep},
};

static void parse_publish_tables(target *t, yaml_node_t *key, yaml_node_t *value)
{
    loader *L = t->L;
    nj_pipeline *p = L->p;
    if (value->type != YAML_MAPPING_NODE || pair_count(value) == 0) {
        report(L, value_mark(key, value), "publish: 'tables' must be a mapping of table names");
        return;
    }
    size_t n = pair_count(value);
    p->tables = nj_xcalloc(n, sizeof(*p->tables));
    for (size_t i = 0; i < n; i++) {
        const char *name = pair_key(t, value, i);
        yaml_node_t *k = node_at(L, value->data.mapping.pairs.start[i].key);
        yaml_node_t *v = node_at(L, value->data.mapping.pairs.start[i].value);
        if (!name) continue;
        if (v->type != YAML_MAPPING_NODE) {
            report(L, value_mark(k, v), "publish: table '%s' must be a mapping {from, columns}",
                   name);
            continue;
        }
        nj_publish_spec *tb = &p->tables[p->ntables++];
        tb->name = nj_xstrdup(name);
        tb->mark = mark_of(k);
        char *prefix = nj_xasprintf("publish: table '%s': ", name);
        target tt = {L, prefix, t->set, 0, NULL, tb};
        size_t problems = L->ndiags;
        walk_mapping(&tt, v, table_keys, sizeof(table_keys) / sizeof(table_keys[0]), mark_of(k));
        if (L->ndiags == problems) {
            nj_publish_table spec = {tb->name, tb->columns, tb->ncolumns,
                                     (const char *const *)tb->key, tb->nkey, tb->keep_partitions};
            nj_err err = {0};
            if (nj_publish_table_check(&spec, &err) < 0) report(L, mark_of(k), "publish: %s", err.msg);
        }
        free(prefix);
    }
}

static void parse_publish_database(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (!is_string(value) || !*text_of(value)) {
        report(t->L, value_mark(key, value), "publish: 'database' must be a path");
        return;
    }
    char *path = nj_path_join(t->L->p->dir, text_of(value));
    free(t->L->p->publish_db);
    t->L->p->publish_db = nj_path_normalize(path);
    free(path);
}

static const key_rule publish_keys[] = {
    {"database", 0, parse_publish_database},
    {"tables", 1, parse_publish_tables},
};

static void parse_publish(target *t, yaml_node_t *key, yaml_node_t *value)
{
    if (value->type != YAML_MAPPING_NODE) {
        report(t->L, value_mark(key, value), "'publish' must be a mapping {database, tables}");
        return;
    }
    target pt = {t->L, "publish: ", t->set, 0, NULL, NULL};
    walk_mapping(&pt, value, publish_keys, sizeof(publish_keys) / sizeof(publish_keys[0]),
                 mark_of(key));
}

static const key_rule top_keys[] = {
    {"pipeline", 1, parse_name}, {"workspace", 0, parse_workspace},
    {"params", 0, parse_params}, {"defaults", 0, parse_defaults},
    {"cache", 0, parse_cache},   {"partition", 0, parse_partition},
    {"stages", 1, parse_stages},       {"publish", 0, parse_publish},
};

/* ---- pass 2: references ------------------------------------------------------- */

static const char **stage_names(const nj_pipeline *p)
{
    const char **names = nj_xcalloc(p->nstages, sizeof(*names));
    for (size_t i = 0; i < p->nstages; i++)
        names[i] = p->stages[i].name;
    return names;
}

static const char **param_names(const nj_pipeline *p)
{
    const char **names = nj_xcalloc(p->nparams, sizeof(*names));
    for (size_t i = 0; i < p->nparams; i++)
        names[i] = p->params[i].name;
    return names;
}

static const char **out_names(const nj_stage *s)
{
    const char **names = nj_xcalloc(s->nouts, sizeof(*names));
    for (size_t i = 0; i < s->nouts; i++)
        names[i] = s->outs[i].name;
    return names;
}

static nj_param *find_param_n(const nj_pipeline *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->nparams; i++)
        if (strlen(p->params[i].name) == len && memcmp(p->params[i].name, name, len) == 0)
            return &p->params[i];
    return NULL;
}

static size_t find_stage_n(const nj_pipeline *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->nstages; i++)
        if (strlen(p->stages[i].name) == len && memcmp(p->stages[i].name, name, len) == 0) return i;
    return p->nstages;
}

static nj_out *find_out_n(const nj_stage *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->nouts; i++)
        if (strlen(s->outs[i].name) == len && memcmp(s->outs[i].name, name, len) == 0)
            return &s->outs[i];
    return NULL;
}

typedef struct site_scan {
    target *t;
    const site *site;
    size_t next; /* offset just past the last expression seen */
} site_scan;

/* Reports `msg` about a {{...}} whose name (`len` bytes at `name`) is unknown,
 * with a suggestion among `candidates`. */
static void report_unknown_name(site_scan *sc, nj_mark at, const char *what, const char *name,
                                size_t len, const char *expr, size_t expr_len,
                                const char **candidates, size_t n)
{
    char *word = nj_xstrndup(name, len);
    report(sc->t->L, at, "%s%s '%s' in '{{%.*s}}'%s", sc->t->prefix, what, word, (int)expr_len,
           expr, did_you_mean(word, candidates, n));
    free(word);
}

static int check_expr(void *arg, const char *expr, size_t len, size_t offset)
{
    site_scan *sc = arg;
    target *t = sc->t;
    loader *L = t->L;
    nj_pipeline *p = L->p;
    const char *text = text_of(sc->site->node);
    nj_mark at = mark_in_scalar(sc->site->node, offset);
    const char *end = expr + len;
    while (*end == ' ' || *end == '\t')
        end++;
    sc->next = (size_t)(end + 2 - text);

    nj_expr e;
    if (nj_template_parse_expr(expr, len, &e, NULL) < 0) {
        report(L, at, "%sunknown template expression '{{%.*s}}'", t->prefix, (int)len, expr);
        return 0;
    }
    if (sc->site->is_path &&
        (e.kind == NJ_EXPR_OUT || e.kind == NJ_EXPR_STAGE_OUT || e.kind == NJ_EXPR_DEPS)) {
        report(L, at, "%s'{{%.*s}}' is not allowed in %s (only params and ds)", t->prefix, (int)len,
               expr, sc->site->where);
        return 0;
    }
    nj_stage *self = &p->stages[t->stage];
    switch (e.kind) {
    case NJ_EXPR_DS:
        /* One instance serves every date: its key must not depend on one. */
        if (p->partition.enabled && !self->partitioned)
            report(L, at, "stage '%s' (partitioned: false) cannot use '{{%.*s}}'", self->name,
                   (int)len, expr);
        break;
    case NJ_EXPR_DEPS: {
        if (strcmp(sc->site->where, "cmd") != 0) {
            report(L, at, "%s'{{%.*s}}' is only allowed in cmd", t->prefix, (int)len, expr);
            break;
        }
        int found = 0;
        for (size_t k = 0; k < self->ndeps && !found; k++) {
            const nj_dep *d = &self->deps[k];
            found = d->stage && strlen(d->stage) == e.stage_len &&
                    memcmp(d->stage, e.stage, e.stage_len) == 0 && strlen(d->out) == e.name_len &&
                    memcmp(d->out, e.name, e.name_len) == 0;
        }
        if (!found)
            report(L, at, "%s'{{%.*s}}' needs a dep {stage: %.*s, out: %.*s}", t->prefix, (int)len,
                   expr, (int)e.stage_len, e.stage, (int)e.name_len, e.name);
        break;
    }
    case NJ_EXPR_PARAM:
        if (find_param_n(p, e.name, e.name_len)) {
            add_stage_param(t, e.name, e.name_len, at);
        } else {
            char *word = nj_xstrndup(e.name, e.name_len);
            const char **names = param_names(p);
            report(L, at, "%sunknown param '%s'%s", t->prefix, word,
                   did_you_mean(word, names, p->nparams));
            free(names);
            free(word);
        }
        break;
    case NJ_EXPR_OUT:
        if (!find_out_n(self, e.name, e.name_len)) {
            const char **names = out_names(self);
            report_unknown_name(sc, at, "unknown output", e.name, e.name_len, expr, len, names,
                                self->nouts);
            free(names);
        }
        break;
    case NJ_EXPR_STAGE_OUT: {
        size_t i = find_stage_n(p, e.stage, e.stage_len);
        if (i == p->nstages) {
            const char **names = stage_names(p);
            report_unknown_name(sc, at, "unknown stage", e.stage, e.stage_len, expr, len, names,
                                p->nstages);
            free(names);
            break;
        }
        nj_stage *owner = &p->stages[i];
        if (!find_out_n(owner, e.name, e.name_len)) {
            char *what = nj_xasprintf("stage '%s' has no output", owner->name);
            const char **names = out_names(owner);
            report_unknown_name(sc, at, what, e.name, e.name_len, expr, len, names, owner->nouts);
            free(names);
            free(what);
            break;
        }
        if (i == t->stage) break; /* same as {{outs.x}}: not a dependency */
        for (size_t u = 0; u < self->nuses; u++)
            if (strcmp(self->uses[u].name, owner->name) == 0) return 0;
        nj_ref r = {nj_xstrdup(owner->name), at};
        NJ_PUSH(self->uses, self->nuses, L->extra[t->stage].uses_cap, r);
        break;
    }
    case NJ_EXPR_CHAMPION:
        if (strcmp(sc->site->where, "cmd") != 0) {
            report(L, at, "%s'{{%.*s}}' is only allowed in cmd", t->prefix, (int)len, expr);
            break;
        }
        if (!self->uses_champion) L->extra[t->stage].champion_mark = at;
        self->uses_champion = 1;
        break;
    default:
        break;
    }
    return 0;
}

static void check_site(target *t, const site *s)
{
    site_scan sc = {t, s, 0};
    const char *text = text_of(s->node);
    if (nj_template_scan(text, check_expr, &sc, NULL) == NJ_EFORMAT) {
        const char *open = strstr(text + sc.next, "{{");
        size_t offset = open ? (size_t)(open - text) : 0;
        report(t->L, mark_in_scalar(s->node, offset), "%sunclosed '{{' in %s", t->prefix, s->where);
    }
}

/* Settles `partitioned` for stage i: its own value, else whether the
 * pipeline has a partition. Without a `partition:` no stage is. */
static void resolve_partitioned(loader *L, size_t i)
{
    nj_pipeline *p = L->p;
    stage_extra *x = &L->extra[i];
    if (!p->partition.enabled) {
        if (x->has_partitioned && x->partitioned)
            report(L, x->partitioned_mark, "%s'partitioned' needs a 'partition:' section",
                   x->prefix);
        p->stages[i].partitioned = 0;
        return;
    }
    p->stages[i].partitioned = x->has_partitioned ? x->partitioned : 1;
}

/* Resolves stage i's stage deps {stage, out, window}: the stage and its
 * output must exist, not be the stage itself nor repeat an earlier stage
 * dep, and a window needs both stages partitioned. */
static void check_stage_deps(loader *L, size_t i)
{
    nj_pipeline *p = L->p;
    nj_stage *s = &p->stages[i];
    stage_extra *x = &L->extra[i];
    for (size_t k = 0; k < s->ndeps; k++) {
        const nj_dep *d = &s->deps[k];
        const dep_marks *m = &x->dep_marks[k];
        if (!d->stage) continue;
        size_t j = find_stage_n(p, d->stage, strlen(d->stage));
        if (j == p->nstages) {
            const char **names = stage_names(p);
            report(L, m->stage, "%sdep on unknown stage '%s'%s", x->prefix, d->stage,
                   did_you_mean(d->stage, names, p->nstages));
            free(names);
            continue;
        }
        if (j == i) {
            report(L, m->stage, "%sa stage dep on itself (use {{outs.%s}} for its own outputs)",
                   x->prefix, d->out);
            continue;
        }
        const nj_stage *up = &p->stages[j];
        if (!nj_stage_out(up, d->out)) {
            const char **names = out_names(up);
            report(L, m->out, "%sstage '%s' has no output '%s'%s", x->prefix, up->name, d->out,
                   did_you_mean(d->out, names, up->nouts));
            free(names);
            continue;
        }
        int repeated = 0;
        for (size_t e = 0; e < k && !repeated; e++)
            repeated = s->deps[e].stage && strcmp(s->deps[e].stage, d->stage) == 0 &&
                       strcmp(s->deps[e].out, d->out) == 0;
        if (repeated) {
            report(L, d->mark, "%sdep {stage: %s, out: %s} is listed twice", x->prefix, d->stage,
                   d->out);
            continue;
        }
        if (m->has_window && (!s->partitioned || !up->partitioned)) {
            const char *why = !p->partition.enabled ? " (there is no 'partition:' section)" : "";
            char *named = NULL;
            if (p->partition.enabled)
                named = nj_xasprintf(" ('%s' is partitioned: false)",
                                     !s->partitioned ? s->name : up->name);
            report(L, m->window, "%s'window' needs both stages partitioned%s", x->prefix,
                   named ? named : why);
            free(named);
        }
    }
}

/* A stage that is not partitioned runs once for all dates, so it cannot
 * read a stage that runs once per date. Checked here for the edges named
 * in the file - stage deps, `needs` and {{stages.S.outs.x}} - once per
 * upstream stage, at its first mention; path edges (a dep path inside a
 * partitioned stage's output) are found by nj_dag_build(). */
typedef struct upstream_seen {
    size_t stage;
    nj_mark mark;
} upstream_seen;

static int mark_before(nj_mark a, nj_mark b)
{
    return a.line != b.line ? a.line < b.line : a.col < b.col;
}

static void note_upstream(upstream_seen **seen, size_t *n, size_t *cap, size_t stage, nj_mark at)
{
    for (size_t k = 0; k < *n; k++)
        if ((*seen)[k].stage == stage) {
            if (mark_before(at, (*seen)[k].mark)) (*seen)[k].mark = at;
            return;
        }
    upstream_seen u = {stage, at};
    NJ_PUSH(*seen, *n, *cap, u);
}

static void check_partition_edges(loader *L, size_t i)
{
    nj_pipeline *p = L->p;
    const nj_stage *s = &p->stages[i];
    if (!p->partition.enabled || s->partitioned) return;
    upstream_seen *seen = NULL;
    size_t n = 0, cap = 0;
    for (size_t k = 0; k < s->ndeps; k++) {
        if (!s->deps[k].stage) continue;
        size_t j = find_stage_n(p, s->deps[k].stage, strlen(s->deps[k].stage));
        if (j < p->nstages && j != i && p->stages[j].partitioned)
            note_upstream(&seen, &n, &cap, j, L->extra[i].dep_marks[k].stage);
    }
    for (size_t k = 0; k < s->nneeds; k++) {
        size_t j = find_stage_n(p, s->needs[k].name, strlen(s->needs[k].name));
        if (j < p->nstages && j != i && p->stages[j].partitioned)
            note_upstream(&seen, &n, &cap, j, s->needs[k].mark);
    }
    for (size_t k = 0; k < s->nuses; k++) {
        size_t j = find_stage_n(p, s->uses[k].name, strlen(s->uses[k].name));
        if (j < p->nstages && p->stages[j].partitioned)
            note_upstream(&seen, &n, &cap, j, s->uses[k].mark);
    }
    for (size_t k = 0; k < n; k++)
        report(L, seen[k].mark,
               "stage '%s' (partitioned: false) cannot read partitioned stage '%s'", s->name,
               p->stages[seen[k].stage].name);
    free(seen);
}

static void check_stage_refs(loader *L, size_t i)
{
    nj_pipeline *p = L->p;
    nj_stage *s = &p->stages[i];
    stage_extra *x = &L->extra[i];
    target t = {L, x->prefix, &x->set, i, NULL, NULL};

    /* The candidate lists for "did you mean" are built only for an error:
     * building them per stage made loading quadratic in the stage count. */
    for (size_t k = 0; k < s->nneeds; k++) {
        if (find_stage_n(p, s->needs[k].name, strlen(s->needs[k].name)) < p->nstages) continue;
        const char **names = stage_names(p);
        report(L, s->needs[k].mark, "%sneeds unknown stage '%s'%s", x->prefix, s->needs[k].name,
               did_you_mean(s->needs[k].name, names, p->nstages));
        free(names);
    }
    for (size_t k = 0; k < s->nparams; k++) {
        if (nj_pipeline_param(p, s->params[k].name)) continue;
        const char **names = param_names(p);
        report(L, s->params[k].mark, "%sunknown param '%s'%s", x->prefix, s->params[k].name,
               did_you_mean(s->params[k].name, names, p->nparams));
        free(names);
    }

    check_stage_deps(L, i);

    /* Sites are in file order, so implicit params follow first use. */
    for (size_t k = 0; k < x->nsites; k++)
        check_site(&t, &x->sites[k]);

    check_partition_edges(L, i);
}

/* Two stages must not write the same path, nor one inside the other's output
 * directory: the later stage (in file order) gets the diagnostic, once per
 * output, naming the earliest stage and output it overlaps. */
typedef struct overlap_probe {
    size_t before;                 /* only stages earlier than this one count */
    const nj_pathset_entry *first; /* earliest (stage, output) overlapping */
} overlap_probe;

static void note_overlap(void *ctx, const nj_pathset_entry *e)
{
    overlap_probe *op = ctx;
    if (e->owner >= op->before) return;
    if (!op->first || e->owner < op->first->owner ||
        (e->owner == op->first->owner && e->sub < op->first->sub))
        op->first = e;
}

static void check_out_overlaps(loader *L)
{
    nj_pipeline *p = L->p;
    nj_pathset outs = {0};
    for (size_t i = 0; i < p->nstages; i++)
        for (size_t m = 0; m < p->stages[i].nouts; m++)
            if (out_path_ok(p->stages[i].outs[m].path))
                nj_pathset_add(&outs, p->stages[i].outs[m].path, i, m);
    nj_pathset_sort(&outs);
    for (size_t j = 0; j < p->nstages; j++) {
        for (size_t k = 0; k < p->stages[j].nouts; k++) {
            const nj_out *o = &p->stages[j].outs[k];
            if (!out_path_ok(o->path)) continue;
            overlap_probe op = {j, NULL};
            nj_pathset_overlaps(&outs, o->path, note_overlap, &op);
            if (!op.first) continue;
            const nj_stage *a = &p->stages[op.first->owner];
            const char *q = op.first->path;
            if (strcmp(o->path, q) == 0)
                report(L, o->mark, "%soutput '%s' is also written by stage '%s'",
                       L->extra[j].prefix, o->path, a->name);
            else if (nj_path_within(o->path, q))
                report(L, o->mark, "%soutput '%s' is inside output '%s' of stage '%s'",
                       L->extra[j].prefix, o->path, q, a->name);
            else
                report(L, o->mark, "%soutput '%s' contains output '%s' of stage '%s'",
                       L->extra[j].prefix, o->path, q, a->name);
        }
    }
    nj_pathset_release(&outs);
}

static void resolve_settings(loader *L, size_t i)
{
    nj_stage *s = &L->p->stages[i];
    const settings *own = &L->extra[i].set, *def = &L->defaults;
    s->retries = own->has_retries   ? own->retries
                 : def->has_retries ? def->retries
                                    : NJ_DEFAULT_RETRIES;
    s->retry_delay_ms = own->has_retry_delay   ? own->retry_delay_ms
                        : def->has_retry_delay ? def->retry_delay_ms
                                               : NJ_DEFAULT_RETRY_DELAY_MS;
    s->retry_delay_max_ms = own->has_retry_delay_max   ? own->retry_delay_max_ms
                            : def->has_retry_delay_max ? def->retry_delay_max_ms
                                                       : NJ_DEFAULT_RETRY_DELAY_MAX_MS;
    s->timeout_ms = own->has_timeout   ? own->timeout_ms
                    : def->has_timeout ? def->timeout_ms
                                       : NJ_DEFAULT_TIMEOUT_MS;
}

/* ---- loading ------------------------------------------------------------------- */

/* ---- pass 2: metrics, gate, champion users, publish ------------------------------ */

static void add_implicit_need(loader *L, size_t i, const char *stage, nj_mark at)
{
    nj_stage *s = &L->p->stages[i];
    for (size_t k = 0; k < s->nneeds; k++)
        if (strcmp(s->needs[k].name, stage) == 0) return;
    nj_ref r = {nj_xstrdup(stage), at};
    NJ_PUSH(s->needs, s->nneeds, L->extra[i].needs_cap, r);
}

/* A {stage, out} reference of `what` (the gate's candidate, a table's
 * `from`): 1 when both exist, else reports and returns 0. */
static int check_stage_out_ref(loader *L, const char *prefix, const char *stage, nj_mark stage_mark,
                               const char *out, nj_mark out_mark)
{
    nj_pipeline *p = L->p;
    if (!stage || !out) return 0;
    size_t j = find_stage_n(p, stage, strlen(stage));
    if (j == p->nstages) {
        const char **names = stage_names(p);
        report(L, stage_mark, "%sunknown stage '%s'%s", prefix, stage,
               did_you_mean(stage, names, p->nstages));
        free(names);
        return 0;
    }
    if (!nj_stage_out(&p->stages[j], out)) {
        const char **names = out_names(&p->stages[j]);
        report(L, out_mark, "%sstage '%s' has no output '%s'%s", prefix, stage, out,
               did_you_mean(out, names, p->stages[j].nouts));
        free(names);
        return 0;
    }
    return 1;
}

static void check_gate(loader *L, size_t i)
{
    nj_pipeline *p = L->p;
    nj_stage *s = &p->stages[i];
    nj_gate_spec *g = s->gate;
    char *prefix = nj_xasprintf("%sgate: ", L->extra[i].prefix);
    if (p->gate_stage) {
        report(L, g->mark, "%sonly one stage of a pipeline may have a gate ('%s' has one)",
               L->extra[i].prefix, p->gate_stage->name);
    } else {
        p->gate_stage = s;
    }
    if (!s->metrics)
        report(L, g->mark, "%sa gate needs 'metrics:' (the JSON output its rules read)",
               L->extra[i].prefix);
    if (check_stage_out_ref(L, prefix, g->stage, g->stage_mark, g->out, g->out_mark)) {
        if (strcmp(g->stage, s->name) == 0)
            report(L, g->stage_mark, "%sthe candidate must come from another stage", prefix);
        else
            add_implicit_need(L, i, g->stage, g->stage_mark);
    }
    for (size_t k = 0; k < g->rules.len; k++) {
        nj_gate gate;
        nj_gate_init(&gate);
        if (nj_gate_add(&gate, g->rules.items[k], NULL, NULL) == 0 && gate.rules[0].uses_champion &&
            !g->champion_root)
            report(L, g->rule_marks[k],
                   "%srule '%s' compares with the champion but the gate has no "
                   "'champion_metrics'",
                   prefix, g->rules.items[k]);
        nj_gate_release(&gate);
    }
    free(prefix);
}

static void check_release(loader *L)
{
    nj_pipeline *p = L->p;
    for (size_t i = 0; i < p->nstages; i++) {
        nj_stage *s = &p->stages[i];
        if (s->metrics && !nj_stage_out(s, s->metrics)) {
            const char **names = out_names(s);
            report(L, s->metrics_mark, "%s'metrics' names no output '%s'%s", L->extra[i].prefix,
                   s->metrics, did_you_mean(s->metrics, names, s->nouts));
            free(names);
        }
        if (s->gate) check_gate(L, i);
    }
    /* Stages that use the champion wait for the gate of their date. */
    for (size_t i = 0; i < p->nstages; i++) {
        nj_stage *s = &p->stages[i];
        if (!s->uses_champion || s == p->gate_stage) continue;
        if (!p->gate_stage)
            report(L, L->extra[i].champion_mark,
                   "%s'{{models.champion}}' needs a stage with a 'gate:' (no stage has one)",
                   L->extra[i].prefix);
        else
            add_implicit_need(L, i, p->gate_stage->name, L->extra[i].champion_mark);
    }
    for (size_t t = 0; t < p->ntables; t++) {
        nj_publish_spec *tb = &p->tables[t];
        char *prefix = nj_xasprintf("publish: table '%s': from: ", tb->name);
        check_stage_out_ref(L, prefix, tb->stage, tb->from_mark, tb->out, tb->from_mark);
        free(prefix);
    }
    if (p->ntables && !p->publish_db) {
        char *rel = nj_xasprintf("serving/%s.db", p->name ? p->name : "pipeline");
        p->publish_db = nj_path_join(p->dir, rel);
        free(rel);
    }
}

static void load_document(loader *L, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int ok = yaml_parser_load(&parser, &L->doc);
    if (!ok) {
        /* Reader errors (bad encoding) have no problem_mark; use the reader's. */
        yaml_mark_t ym = parser.error == YAML_READER_ERROR ? parser.mark : parser.problem_mark;
        nj_mark m = {(int)ym.line + 1, (int)ym.column + 1};
        report(L, m, "syntax error: %s%s%s", parser.problem ? parser.problem : "invalid YAML",
               parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        memset(&L->doc, 0, sizeof(L->doc));
        return;
    }
    yaml_parser_delete(&parser);

    yaml_node_t *root = yaml_document_get_root_node(&L->doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        nj_mark m = root ? mark_of(root) : (nj_mark){1, 1};
        report(L, m, "the pipeline file must be a mapping");
    } else {
        target t = {L, "", NULL, 0, NULL, NULL};
        walk_mapping(&t, root, top_keys, sizeof(top_keys) / sizeof(top_keys[0]), mark_of(root));
        for (size_t i = 0; i < L->p->nstages; i++)
            resolve_partitioned(L, i);
        for (size_t i = 0; i < L->p->nstages; i++) {
            check_stage_refs(L, i);
            resolve_settings(L, i);
        }
        check_release(L);
        check_out_overlaps(L);
    }
    yaml_document_delete(&L->doc);
}

static void loader_release(loader *L)
{
    for (size_t i = 0; L->p && i < L->p->nstages; i++) {
        free(L->extra[i].sites);
        free(L->extra[i].dep_marks);
        free(L->extra[i].prefix);
    }
    free(L->extra);
    for (size_t i = 0; i < L->ndiags; i++)
        free(L->diags[i].msg);
    free(L->diags);
    free(L->workspace);
    for (size_t i = 0; i < L->nbig; i++)
        free(L->big[i].dup);
    free(L->big);
}

int nj_pipeline_load(const char *path, nj_pipeline **out, nj_strs *diags, nj_err *err)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = nj_fs_read_file(path, &text, &len, NULL);
    if (rc < 0) return nj_err_sys(err, -rc, "cannot read pipeline '%s'", path);

    loader L = {.file = path};
    L.p = nj_xcalloc(1, sizeof(*L.p));
    L.p->file = nj_xstrdup(path);
    char *dir = nj_path_dirname(path);
    L.p->dir = nj_path_absolute(dir);
    free(dir);

    load_document(&L, text, len);
    free(text);

    nj_pipeline *p = L.p;
    char *ws = nj_path_join(p->dir, L.workspace ? L.workspace : ".nightjar");
    p->workspace = nj_path_normalize(ws);
    free(ws);
    if (!p->cache_link) p->cache_link = nj_xstrdup("auto");

    if (L.ndiags > 0) {
        qsort(L.diags, L.ndiags, sizeof(*L.diags), diag_cmp);
        for (size_t i = 0; diags && i < L.ndiags; i++)
            nj_diag_add(diags, path, L.diags[i].mark, "%s", L.diags[i].msg);
        rc = nj_err_set(err, NJ_EPIPELINE, "%zu problem%s in '%s'", L.ndiags,
                        L.ndiags == 1 ? "" : "s", path);
        loader_release(&L);
        nj_pipeline_free(p);
        return rc;
    }
    loader_release(&L);
    *out = p;
    return 0;
}

/* ---- the model ----------------------------------------------------------------- */

static void param_release(nj_param *prm)
{
    free(prm->name);
    free(prm->value);
    nj_strs_release(&prm->items);
}

static void refs_free(nj_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(refs[i].name);
    free(refs);
}

void nj_pipeline_free(nj_pipeline *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nstages; i++) {
        nj_stage *s = &p->stages[i];
        free(s->name);
        free(s->cmd);
        for (size_t k = 0; k < s->ndeps; k++) {
            free(s->deps[k].path);
            free(s->deps[k].stage);
            free(s->deps[k].out);
        }
        free(s->deps);
        if (s->snapshot) {
            nj_strs_release(&s->snapshot->inputs);
            free(s->snapshot->format);
            free(s->snapshot);
        }
        for (size_t k = 0; k < s->nouts; k++) {
            free(s->outs[k].name);
            free(s->outs[k].path);
        }
        free(s->outs);
        refs_free(s->needs, s->nneeds);
        refs_free(s->params, s->nparams);
        refs_free(s->code, s->ncode);
        refs_free(s->uses, s->nuses);
        for (size_t k = 0; k < s->nenv; k++)
            param_release(&s->env[k]);
        free(s->env);
        free(s->workdir);
        free(s->metrics);
        if (s->gate) {
            free(s->gate->stage);
            free(s->gate->out);
            free(s->gate->candidate_root);
            free(s->gate->champion_root);
            nj_strs_release(&s->gate->rules);
            free(s->gate->rule_marks);
            free(s->gate);
        }
    }
    free(p->stages);
    for (size_t t = 0; t < p->ntables; t++) {
        nj_publish_spec *tb = &p->tables[t];
        free(tb->name);
        free(tb->stage);
        free(tb->out);
        for (size_t c = 0; c < tb->ncolumns; c++)
            free((char *)tb->columns[c].name);
        free(tb->columns);
        for (size_t k = 0; k < tb->nkey; k++)
            free(tb->key[k]);
        free(tb->key);
    }
    free(p->tables);
    free(p->publish_db);
    for (size_t i = 0; i < p->nparams; i++)
        param_release(&p->params[i]);
    free(p->params);
    free(p->file);
    free(p->dir);
    free(p->name);
    free(p->workspace);
    free(p->cache_dir);
    free(p->cache_link);
    free(p);
}

nj_stage *nj_pipeline_stage(const nj_pipeline *p, const char *name)
{
    size_t i = find_stage_n(p, name, strlen(name));
    return i < p->nstages ? &p->stages[i] : NULL;
}

nj_out *nj_stage_out(const nj_stage *s, const char *name)
{
    return find_out_n(s, name, strlen(name));
}

nj_param *nj_pipeline_param(const nj_pipeline *p, const char *name)
{
    return find_param_n(p, name, strlen(name));
}

int nj_pipeline_set_param(nj_pipeline *p, const char *assignment, nj_err *err)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return nj_err_set(err, NJ_EUSAGE, "--param takes NAME=VALUE, got '%s'", assignment);
    char *name = nj_xstrndup(assignment, (size_t)(eq - assignment));
    nj_param *prm = nj_pipeline_param(p, name);
    int rc = 0;
    if (!prm) {
        const char **names = param_names(p);
        rc = nj_err_set(err, NJ_EUSAGE, "--param: pipeline '%s' has no param '%s'%s", p->name,
                        name, did_you_mean(name, names, p->nparams));
        free(names);
    } else {
        /* An override is one scalar: a list param becomes a one-item list. */
        free(prm->value);
        prm->value = nj_xstrdup(eq + 1);
        nj_strs_release(&prm->items);
        if (prm->is_list) nj_strs_push(&prm->items, eq + 1);
    }
    free(name);
    return rc;
}

int32_t nj_dep_window(const nj_pipeline *p, const nj_dep *dep, int32_t ds, int32_t *first,
                      int32_t *last)
{
    if (!dep->stage) NJ_BUG("window of a path dep '%s'", dep->path);
    const nj_stage *up = nj_pipeline_stage(p, dep->stage);
    if (!up) NJ_BUG("dep on unknown stage '%s' after loading", dep->stage);
    if (!p->partition.enabled || !up->partitioned) {
        *first = *last = ds;
        return 1;
    }
    int32_t from = ds + dep->window_from, to = ds + dep->window_to;
    if (from < p->partition.start) from = p->partition.start;
    *first = from;
    *last = to;
    return to >= from ? to - from + 1 : 0;
}

size_t nj_pipeline_stage_index(const nj_pipeline *p, const nj_stage *s)
{
    if (s < p->stages || s >= p->stages + p->nstages) NJ_BUG("stage not in pipeline");
    return (size_t)(s - p->stages);
}
