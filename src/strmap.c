/* strmap.c - open addressing with linear probing over a power-of-two table,
 * kept at most half full so a miss ends after a probe or two. Each slot keeps
 * its key's 64-bit FNV-1a hash, so probing compares strings only when the
 * hashes agree. */
#include "nightjar/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "nightjar/util.h"

static uint64_t hash_of(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

void nj_strmap_init(nj_strmap *m)
{
    memset(m, 0, sizeof(*m));
}

void nj_strmap_release(nj_strmap *m)
{
    free(m->slots);
    nj_strmap_init(m);
}

void nj_strmap_free_values(nj_strmap *m, void (*free_value)(void *))
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) free_value(m->slots[i].value);
    nj_strmap_release(m);
}

/* The slot holding `key`, or the empty slot where it would go. */
static nj_strmap_slot *find_slot(nj_strmap_slot *slots, size_t cap, const char *key,
                                 uint64_t hash)
{
    size_t mask = cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        nj_strmap_slot *s = &slots[i];
        if (!s->key || (s->hash == hash && strcmp(s->key, key) == 0)) return s;
    }
}

static void grow(nj_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    nj_strmap_slot *slots = nj_xcalloc(cap, sizeof(*slots));
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) *find_slot(slots, cap, m->slots[i].key, m->slots[i].hash) = m->slots[i];
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
}

void *nj_strmap_get(const nj_strmap *m, const char *key)
{
    if (m->len == 0) return NULL;
    nj_strmap_slot *s = find_slot(m->slots, m->cap, key, hash_of(key));
    return s->key ? s->value : NULL;
}

void *nj_strmap_put(nj_strmap *m, const char *key, void *value)
{
    if (2 * (m->len + 1) > m->cap) grow(m);
    uint64_t hash = hash_of(key);
    nj_strmap_slot *s = find_slot(m->slots, m->cap, key, hash);
    if (s->key) {
        void *old = s->value;
        s->key = key; /* the caller may free the old key once it is replaced */
        s->value = value;
        return old;
    }
    *s = (nj_strmap_slot){key, hash, value};
    m->len++;
    return NULL;
}

size_t nj_strmap_count(const nj_strmap *m)
{
    return m->len;
}
