/* features.h - the per-flight features of the delay model and the trailing
 * delay statistics they are computed from.
 *
 * An st_history is built for one target date D from normalized actuals of
 * earlier dates and then turns any flight of D into ST_FEATURE_COUNT numbers
 * (names in st_feature_names). nj-features uses it on the actuals of D to
 * make training and test rows; nj-score uses it on the schedule of D, so
 * both compute features with the same code.
 *
 * No label leakage: st_history_add_file() refuses a file holding any flight
 * dated D or later, because a delay known only on or after D must not feed a
 * feature of D. It also refuses a date given twice (it would count twice).
 *
 * Rates are smoothed towards the window's global rate g with a prior weight
 * m: rate = (delayed + m * g) / (flights + m), so an airport seen 3 times
 * gets roughly g instead of 0 or 1.
 */
#ifndef ST_FEATURES_H
#define ST_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "flights.h"

#define ST_FEATURE_COUNT 15

extern const char *const st_feature_names[ST_FEATURE_COUNT];

typedef struct st_ratemap st_ratemap; /* opaque: key -> (flights, delayed) */

typedef struct st_history {
    int target_day;      /* D: only flights before D may be added */
    double prior_weight; /* m above, >= 0 */
    int label_delay_min; /* delayed = delay > label_delay_min minutes */
    size_t flights;      /* in the whole window */
    size_t delayed;
    int first_day, last_day; /* range of dates added, valid when ndays > 0 */
    int ndays;
    uint8_t *seen; /* seen[D - 1 - day] for the 366 days before D */
    st_ratemap *origin, *dest, *route, *prev_origin;
    size_t prev_flights, prev_delayed; /* on D - 1 */
} st_history;

void st_history_init(st_history *h, int target_day, double prior_weight, int label_delay_min);
void st_history_release(st_history *h);

/* Adds every flight of the normalized actuals file `path`. Fails naming the
 * file and line for bad rows, for a flight dated D or later
 * ("...:2: flight dated 2001-02-01 is not before the feature date
 * 2001-02-01 (label leakage)"), a flight more than 366 days before D, or a
 * date already added. */
int st_history_add_file(st_history *h, const char *path, st_err *err);

/* Same check and bookkeeping for flights already in memory (tests use it). */
int st_history_add(st_history *h, const st_flight *fl, size_t n, const char *what, st_err *err);

/* Writes the ST_FEATURE_COUNT features of flight f (which must be dated
 * target_day) into out. The history must hold at least one flight. */
void st_features_compute(const st_history *h, const st_flight *f, double *out);

/* 1 if the named feature is fixed by the calendar (the weekday one-hots):
 * a single scoring day always differs from a multi-day window in those, so
 * drift checks report them but must not warn. */
int st_feature_is_calendar(const char *name);

/* 1 if the flight counts as delayed under h's label rule. */
int st_features_label(const st_history *h, const st_flight *f);

#endif
