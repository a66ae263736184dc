/* nj-features - per-flight features and labels of one day, from that day's
 * normalized actuals and a trailing window of earlier days.
 *
 * The first line of the output records the parameters ("# nj-features
 * date=... prior_weight=... label_delay_min=... history=first..last/ndays")
 * so nj-train can refuse to mix rows made with different parameters and
 * nj-score can rebuild the same features. Exit: 0 ok, 1 bad input, 2 usage.
 */
#include <stdio.h>

#include "lib/args.h"
#include "lib/date.h"
#include "lib/err.h"
#include "lib/features.h"
#include "lib/flights.h"
#include "lib/outfile.h"

static const char *const prog = "nj-features";
static const char usage[] =
    "usage: nj-features --date YYYY-MM-DD --day NORM/D.csv --history NORM/D-28.csv ...\n"
    "                   --out FEATURES/D.csv [--prior-weight 20] [--label-delay-min 15]\n"
    "\n"
    "Writes flight_id,dep_time,origin,destination, the features (hour, weekday,\n"
    "log distance, smoothed delay rates of origin, destination and route over the\n"
    "--history days, the origin's rate on D-1, log daily flights at the origin)\n"
    "and label = delay > --label-delay-min for every flight of --day, which must\n"
    "all be dated --date. Every --history file must hold only flights dated\n"
    "before --date (no label leakage), each date at most once.\n"
    "Exit: 0 ok, 1 bad input, 2 usage.\n";

int main(int argc, char **argv)
{
    const char *date = NULL, *day_path = NULL, *out_path = NULL;
    st_list history = {0};
    double prior_weight = 20;
    int label_delay_min = 15;
    st_opt opts[] = {{"date", ST_OPT_STRING, &date},
                     {"day", ST_OPT_STRING, &day_path},
                     {"history", ST_OPT_LIST, &history},
                     {"out", ST_OPT_STRING, &out_path},
                     {"prior-weight", ST_OPT_DOUBLE, &prior_weight},
                     {"label-delay-min", ST_OPT_INT, &label_delay_min},
                     {0}};
    st_args_parse(argc, argv, opts, prog, usage);
    st_args_require(date, "date", prog, usage);
    st_args_require(day_path, "day", prog, usage);
    st_args_require(out_path, "out", prog, usage);
    int day;
    if (st_date_parse(date, &day) < 0)
        st_die(prog, ST_EXIT_USAGE, "--date '%s' is not YYYY-MM-DD", date);
    if (history.n == 0)
        st_die(prog, ST_EXIT_USAGE, "--history needs at least one file of an earlier date");
    if (prior_weight < 0) st_die(prog, ST_EXIT_USAGE, "--prior-weight must be >= 0");

    st_err err = {{0}};
    st_history h;
    st_flights flights = {0};
    st_outfile out = {0};
    st_history_init(&h, day, prior_weight, label_delay_min);
    for (size_t i = 0; i < history.n; i++)
        if (st_history_add_file(&h, history.items[i], &err) < 0) goto fail;
    if (st_flights_load(day_path, 1, &flights, &err) < 0) goto fail;
    for (size_t i = 0; i < flights.n; i++)
        if (flights.items[i].day != day) {
            char d[11];
            st_err_set(&err, "%s:%zu: flight dated %s, but --date is %s", day_path, i + 2,
                       st_date_format(flights.items[i].day, d), date);
            goto fail;
        }
    if (st_outfile_open(&out, out_path, &err) < 0) goto fail;
    char first[11], last[11];
    fprintf(out.file,
            "# nj-features date=%s prior_weight=%g label_delay_min=%d history=%s..%s/%d\n", date,
            prior_weight, label_delay_min, st_date_format(h.first_day, first),
            st_date_format(h.last_day, last), h.ndays);
    fprintf(out.file, "flight_id,dep_time,origin,destination");
    for (int j = 0; j < ST_FEATURE_COUNT; j++)
        fprintf(out.file, ",%s", st_feature_names[j]);
    fprintf(out.file, ",label\n");
    size_t delayed = 0;
    for (size_t i = 0; i < flights.n; i++) {
        const st_flight *f = &flights.items[i];
        double x[ST_FEATURE_COUNT];
        char d[11];
        st_features_compute(&h, f, x);
        fprintf(out.file, "%s,%s %02d:%02d,%s,%s", f->id, st_date_format(f->day, d), f->minute / 60,
                f->minute % 60, f->origin, f->dest);
        for (int j = 0; j < ST_FEATURE_COUNT; j++)
            fprintf(out.file, ",%.9g", x[j]);
        int label = st_features_label(&h, f);
        delayed += label;
        fprintf(out.file, ",%d\n", label);
    }
    if (st_outfile_commit(&out, &err) < 0) goto fail;
    fprintf(stderr, "%s: %s: %zu flights (%.1f%% delayed), history %s..%s (%d days, %zu flights)\n",
            prog, date, flights.n, 100.0 * (double)delayed / (double)flights.n, first, last,
            h.ndays, h.flights);
    st_flights_release(&flights);
    st_history_release(&h);
    st_list_release(&history);
    return ST_EXIT_OK;
fail:
    st_outfile_abort(&out);
    st_flights_release(&flights);
    st_history_release(&h);
    st_list_release(&history);
    st_die(prog, ST_EXIT_DATA, "%s", err.msg);
}
