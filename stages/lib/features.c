/* features.c - trailing delay statistics and the feature vector; see
 * features.h. */
#include "features.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "date.h"

enum { MAX_LOOKBACK_DAYS = 366 };

const char *const st_feature_names[ST_FEATURE_COUNT] = {"dep_hour",
                                                        "dep_hour_sin",
                                                        "dep_hour_cos",
                                                        "dow_tue",
                                                        "dow_wed",
                                                        "dow_thu",
                                                        "dow_fri",
                                                        "dow_sat",
                                                        "dow_sun",
                                                        "log_distance",
                                                        "origin_rate",
                                                        "dest_rate",
                                                        "route_rate",
                                                        "origin_prev_day_rate",
                                                        "log_origin_daily_flights"};

/* Open-addressing hash map from a packed airport key (up to 8 letters: "ATL"
 * or "ATLSFO" for a route) to flight and delay counts. Load stays <= 1/2. */
typedef struct slot {
    uint64_t key; /* 0 = empty; airport codes are never all NUL */
    size_t flights, delayed;
} slot;

struct st_ratemap {
    slot *slots;
    size_t cap, used;
};

static uint64_t pack(const char *a, const char *b)
{
    uint64_t k = 0;
    for (int i = 0; i < 3; i++)
        k = k << 8 | (uint8_t)a[i];
    for (int i = 0; b && i < 3; i++)
        k = k << 8 | (uint8_t)b[i];
    return k;
}

static size_t hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

static st_ratemap *ratemap_new(void)
{
    st_ratemap *m = st_xcalloc(1, sizeof *m);
    m->cap = 256;
    m->slots = st_xcalloc(m->cap, sizeof *m->slots);
    return m;
}

static void ratemap_free(st_ratemap *m)
{
    if (m) {
        free(m->slots);
        free(m);
    }
}

static slot *ratemap_find(const st_ratemap *m, uint64_t key)
{
    size_t i = hash(key) & (m->cap - 1);
    while (m->slots[i].key && m->slots[i].key != key)
        i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

static void ratemap_add(st_ratemap *m, uint64_t key, int delayed)
{
    if (2 * (m->used + 1) > m->cap) {
        st_ratemap bigger = {st_xcalloc(2 * m->cap, sizeof(slot)), 2 * m->cap, m->used};
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key) *ratemap_find(&bigger, m->slots[i].key) = m->slots[i];
        free(m->slots);
        *m = bigger;
    }
    slot *s = ratemap_find(m, key);
    if (!s->key) {
        s->key = key;
        m->used++;
    }
    s->flights++;
    s->delayed += delayed != 0;
}

void st_history_init(st_history *h, int target_day, double prior_weight, int label_delay_min)
{
    memset(h, 0, sizeof *h);
    h->target_day = target_day;
    h->prior_weight = prior_weight;
    h->label_delay_min = label_delay_min;
    h->seen = st_xcalloc(MAX_LOOKBACK_DAYS, 1);
    h->origin = ratemap_new();
    h->dest = ratemap_new();
    h->route = ratemap_new();
    h->prev_origin = ratemap_new();
}

void st_history_release(st_history *h)
{
    free(h->seen);
    ratemap_free(h->origin);
    ratemap_free(h->dest);
    ratemap_free(h->route);
    ratemap_free(h->prev_origin);
    memset(h, 0, sizeof *h);
}

int st_feature_is_calendar(const char *name)
{
    return strncmp(name, "dow_", 4) == 0;
}

int st_features_label(const st_history *h, const st_flight *f)
{
    return f->delay > h->label_delay_min;
}

int st_history_add(st_history *h, const st_flight *fl, size_t n, const char *what, st_err *err)
{
    char a[11], b[11];
    /* Check the whole file first so a refused file leaves h unchanged. The
     * dates of this file are marked in `mine` until they are all accepted. */
    uint8_t mine[MAX_LOOKBACK_DAYS] = {0};
    for (size_t i = 0; i < n; i++) {
        int back = h->target_day - 1 - fl[i].day;
        if (back < 0)
            return st_err_set(err,
                              "%s:%zu: flight dated %s is not before the feature date %s "
                              "(label leakage)",
                              what, i + 2, st_date_format(fl[i].day, a),
                              st_date_format(h->target_day, b));
        if (back >= MAX_LOOKBACK_DAYS)
            return st_err_set(err, "%s:%zu: flight dated %s is more than %d days before %s", what,
                              i + 2, st_date_format(fl[i].day, a), MAX_LOOKBACK_DAYS,
                              st_date_format(h->target_day, b));
        if (h->seen[back])
            return st_err_set(err, "%s:%zu: date %s was already given by an earlier history file",
                              what, i + 2, st_date_format(fl[i].day, a));
        mine[back] = 1;
    }
    for (int back = 0; back < MAX_LOOKBACK_DAYS; back++) {
        if (!mine[back]) continue;
        int day = h->target_day - 1 - back;
        h->seen[back] = 1;
        if (h->ndays == 0 || day < h->first_day) h->first_day = day;
        if (h->ndays == 0 || day > h->last_day) h->last_day = day;
        h->ndays++;
    }
    for (size_t i = 0; i < n; i++) {
        int late = st_features_label(h, &fl[i]);
        h->flights++;
        h->delayed += late;
        ratemap_add(h->origin, pack(fl[i].origin, NULL), late);
        ratemap_add(h->dest, pack(fl[i].dest, NULL), late);
        ratemap_add(h->route, pack(fl[i].origin, fl[i].dest), late);
        if (fl[i].day == h->target_day - 1) {
            ratemap_add(h->prev_origin, pack(fl[i].origin, NULL), late);
            h->prev_flights++;
            h->prev_delayed += late;
        }
    }
    return 0;
}

int st_history_add_file(st_history *h, const char *path, st_err *err)
{
    st_flights fl = {0};
    int rc = -1;
    if (st_flights_load(path, 1, &fl, err) >= 0) rc = st_history_add(h, fl.items, fl.n, path, err);
    st_flights_release(&fl);
    return rc;
}

static double smoothed(const st_ratemap *m, uint64_t key, double prior, double weight)
{
    const slot *s = ratemap_find(m, key);
    if (!s->key) return prior;
    return ((double)s->delayed + weight * prior) / ((double)s->flights + weight);
}

void st_features_compute(const st_history *h, const st_flight *f, double *out)
{
    double g = h->flights ? (double)h->delayed / (double)h->flights : 0;
    double m = h->prior_weight;
    double hour = (double)f->minute / 60.0;
    double angle = 2 * M_PI * hour / 24.0;
    int dow = st_date_weekday(f->day);
    out[0] = hour;
    out[1] = sin(angle);
    out[2] = cos(angle);
    for (int d = 1; d <= 6; d++) /* Monday is the baseline */
        out[2 + d] = dow == d;
    out[9] = log((double)f->distance);
    out[10] = smoothed(h->origin, pack(f->origin, NULL), g, m);
    out[11] = smoothed(h->dest, pack(f->dest, NULL), g, m);
    out[12] = smoothed(h->route, pack(f->origin, f->dest), g, m);
    /* Yesterday's rate at the origin, shrunk towards yesterday's global
     * rate; without yesterday in the window, the window's origin rate. */
    if (h->prev_flights) {
        double g1 = (double)h->prev_delayed / (double)h->prev_flights;
        out[13] = smoothed(h->prev_origin, pack(f->origin, NULL), g1, m);
    } else {
        out[13] = out[10];
    }
    const slot *s = ratemap_find(h->origin, pack(f->origin, NULL));
    double daily = s->key && h->ndays ? (double)s->flights / h->ndays : 0;
    out[14] = log1p(daily);
}
