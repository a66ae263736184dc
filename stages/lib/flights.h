/* flights.h - one flight record, its validation, and whole-day files.
 *
 * Landing and normalized files share one layout (see fixtures/flights):
 *     actuals:  flight_id,dep_time,origin,destination,distance,delay
 *     schedule: flight_id,dep_time,origin,destination,distance
 * A row is valid when dep_time is "YYYY-MM-DD HH:MM", origin and destination
 * are three uppercase letters, distance is an integer > 0 and delay (when
 * present) an integer. nj-ingest quarantines invalid rows; every later
 * stage treats one as a hard error.
 */
#ifndef ST_FLIGHTS_H
#define ST_FLIGHTS_H

#include <stddef.h>

#include "err.h"

#define ST_FLIGHT_ID_MAX 40

extern const char *const st_actuals_columns[6];
extern const char *const st_schedule_columns[5];

typedef struct st_flight {
    char id[ST_FLIGHT_ID_MAX];
    int day;    /* departure date, days since 1970-01-01 */
    int minute; /* departure minute of the day, 0..1439 */
    char origin[4];
    char dest[4];
    int distance; /* miles, > 0 */
    int delay;    /* minutes (negative = early); 0 when not known */
} st_flight;

typedef struct st_flights {
    st_flight *items;
    size_t n, cap;
} st_flights;

/* Parses fields (nfields of them) of a row with (with_delay = 1) or without
 * a delay column into *f. Returns 0, or -1 with a reason like
 * "delay 'abc' is not an integer" in why. */
int st_flight_parse(char **fields, int nfields, int with_delay, st_flight *f, char *why,
                    size_t whylen);

/* Loads every row of a normalized (or schedule) file into *out (appending).
 * Any invalid row fails with "<path>:<line>: <reason>"; a file with no rows
 * fails with "'<path>': no flights". Returns the number of rows loaded. */
long st_flights_load(const char *path, int with_delay, st_flights *out, st_err *err);

void st_flights_release(st_flights *fl);

#endif
