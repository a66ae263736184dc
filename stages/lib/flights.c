/* flights.c - see flights.h. */
#include "flights.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "date.h"

const char *const st_actuals_columns[6] = {"flight_id",   "dep_time", "origin",
                                           "destination", "distance", "delay"};
const char *const st_schedule_columns[5] = {"flight_id", "dep_time", "origin", "destination",
                                            "distance"};

static int parse_int(const char *s, int *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (!*s || *end || errno || x < INT_MIN || x > INT_MAX || (*s == '+' || *s == ' ')) return -1;
    *v = (int)x;
    return 0;
}

static int is_airport(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (s[i] < 'A' || s[i] > 'Z') return 0;
    return s[3] == '\0';
}

int st_flight_parse(char **fields, int nfields, int with_delay, st_flight *f, char *why,
                    size_t whylen)
{
    int want = with_delay ? 6 : 5;
    memset(f, 0, sizeof *f);
    if (nfields != want) {
        snprintf(why, whylen, "%d fields but expected %d", nfields, want);
        return -1;
    }
    size_t idlen = strlen(fields[0]);
    if (idlen == 0 || idlen >= ST_FLIGHT_ID_MAX) {
        snprintf(why, whylen, "flight_id '%.60s' is empty or longer than %d characters", fields[0],
                 ST_FLIGHT_ID_MAX - 1);
        return -1;
    }
    memcpy(f->id, fields[0], idlen + 1);
    if (st_datetime_parse(fields[1], &f->day, &f->minute) < 0) {
        snprintf(why, whylen, "dep_time '%.60s' is not 'YYYY-MM-DD HH:MM'", fields[1]);
        return -1;
    }
    if (!is_airport(fields[2])) {
        snprintf(why, whylen, "origin '%.60s' is not a 3-letter airport code", fields[2]);
        return -1;
    }
    if (!is_airport(fields[3])) {
        snprintf(why, whylen, "destination '%.60s' is not a 3-letter airport code", fields[3]);
        return -1;
    }
    memcpy(f->origin, fields[2], 4);
    memcpy(f->dest, fields[3], 4);
    if (parse_int(fields[4], &f->distance) < 0) {
        snprintf(why, whylen, "distance '%.60s' is not an integer", fields[4]);
        return -1;
    }
    if (f->distance <= 0) {
        snprintf(why, whylen, "distance %d is not positive", f->distance);
        return -1;
    }
    if (with_delay && parse_int(fields[5], &f->delay) < 0) {
        snprintf(why, whylen, "delay '%.60s' is not an integer", fields[5]);
        return -1;
    }
    return 0;
}

long st_flights_load(const char *path, int with_delay, st_flights *out, st_err *err)
{
    st_csv csv;
    long rows = 0;
    int rc;
    if (st_csv_open(&csv, path, err) < 0) return -1;
    if (st_csv_expect_header(&csv, with_delay ? st_actuals_columns : st_schedule_columns,
                             with_delay ? 6 : 5, err) < 0)
        goto fail;
    while ((rc = st_csv_next(&csv, err)) > 0) {
        char why[200];
        st_grow((void **)&out->items, &out->cap, out->n + 1, sizeof *out->items);
        if (st_flight_parse(csv.fields, csv.nfields, with_delay, &out->items[out->n], why,
                            sizeof why) < 0) {
            st_err_set(err, "%s:%ld: %s", path, csv.lineno, why);
            goto fail;
        }
        out->n++;
        rows++;
    }
    if (rc < 0) goto fail;
    if (rows == 0) {
        st_err_set(err, "'%s': no flights (only a header)", path);
        goto fail;
    }
    st_csv_close(&csv);
    return rows;
fail:
    st_csv_close(&csv);
    return -1;
}

void st_flights_release(st_flights *fl)
{
    free(fl->items);
    memset(fl, 0, sizeof *fl);
}
