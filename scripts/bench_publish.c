/* bench_publish.c - timing entry point for scripts/bench-publish (not part of
 * the build).
 *
 *     bench_publish DB CSV DS
 *
 * Publishes CSV as date DS of table flight_delay_risk (flight_id text key,
 * dep_time, origin, destination text, p_delay real; the CSV's own
 * model_version column is ignored: nightjar sets model_version itself) into
 * the serving database DB. Prints "<rows> <seconds> <rows/s> <publish seconds>"
 * on stdout: seconds from opening the database to closing it (the close
 * checkpoints the WAL, as it does when the sqlite3 shell exits), and of the
 * nj_publish_csv() call alone. */
#include <stdio.h>
#include <time.h>

#include "nightjar/publish.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench_publish DB CSV DS\n");
        return 2;
    }
    static const nj_publish_column cols[] = {
        {"flight_id", NJ_COLUMN_TEXT},   {"dep_time", NJ_COLUMN_TEXT}, {"origin", NJ_COLUMN_TEXT},
        {"destination", NJ_COLUMN_TEXT}, {"p_delay", NJ_COLUMN_REAL},
    };
    static const char *const key[] = {"flight_id"};
    nj_publish_table t = {"flight_delay_risk", cols, 5, key, 1, 0};
    nj_publisher *pub = NULL;
    nj_publish_stats st;
    nj_err err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (nj_publish_open(argv[1], &pub, &err) < 0 ||
        nj_publish_csv(pub, &t, argv[2], argv[3], "bench-model-0001", 1, &st, &err) < 0) {
        fprintf(stderr, "bench_publish: error: %s\n", err.msg);
        nj_publish_close(pub);
        return 1;
    }
    nj_publish_close(pub);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%lld %.3f %.0f %.3f\n", (long long)st.rows, secs, (double)st.rows / secs,
           (double)st.duration_ms / 1000.0);
    return 0;
}
