/* strmap.h - a hash map from strings to pointers, for the lookups that run
 * once per stage or per file on a run's hot path (stage names, the stat
 * cache, last keys), where a linear scan or an SQLite query each would cost
 * more than the work itself.
 *
 *     nj_strmap names;
 *     nj_strmap_init(&names);
 *     nj_strmap_put(&names, s->name, s);        // key and value borrowed
 *     nj_stage *found = nj_strmap_get(&names, "train");
 *     nj_strmap_release(&names);
 *
 * Ownership: the map owns only its table. Keys and values are borrowed (but
 * see nj_strmap_free_values() for maps whose values own their keys): a
 * key must stay unchanged and alive as long as it is in the map. There is no
 * removal; a value may be replaced. Not thread-safe.
 */
#ifndef NJ_STRMAP_H
#define NJ_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct nj_strmap_slot {
    const char *key; /* NULL: empty */
    uint64_t hash;
    void *value;
} nj_strmap_slot;

typedef struct nj_strmap {
    nj_strmap_slot *slots;
    size_t cap, len; /* cap is 0 or a power of two, len <= cap / 2 */
} nj_strmap;

void nj_strmap_init(nj_strmap *m);
void nj_strmap_release(nj_strmap *m); /* frees the table; m is re-initialised */
/* Calls free_value on every value, then nj_strmap_release(): for maps that
 * own their values (and keys inside them). */
void nj_strmap_free_values(nj_strmap *m, void (*free_value)(void *));
/* The value stored for `key`, or NULL. */
void *nj_strmap_get(const nj_strmap *m, const char *key);
/* Stores `value` for `key`, which from then on is the key the map holds (the
 * key of a replaced entry is no longer used). Returns the value it replaces,
 * or NULL. */
void *nj_strmap_put(nj_strmap *m, const char *key, void *value);
/* How many keys the map holds. */
size_t nj_strmap_count(const nj_strmap *m);

#endif
