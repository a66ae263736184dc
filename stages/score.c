/* nj-score - delay probabilities for the flights scheduled on a day.
 *
 * Features are rebuilt from the schedule (which has no delays) and the
 * history of earlier actuals with the same code and the same parameters
 * (prior weight, label threshold) nj-features used for training: they are
 * read from the model file, so training and scoring cannot drift apart.
 * Exit: 0 ok, 1 bad input, 2 usage.
 */
#include <string.h>
#include <stdio.h>

#include "lib/args.h"
#include "lib/date.h"
#include "lib/err.h"
#include "lib/features.h"
#include "lib/flights.h"
#include "lib/model.h"
#include "lib/outfile.h"

static const char *const prog = "nj-score";
static const char usage[] =
    "usage: nj-score --model MODEL.bin --schedule SCHEDULE/D.csv\n"
    "                --history NORM/D-28.csv ... NORM/D-1.csv --out PREDICTIONS.csv\n"
    "                [--date YYYY-MM-DD]\n"
    "\n"
    "Predicts the delay probability of every flight in --schedule (flight_id,\n"
    "dep_time,origin,destination,distance), all of which must be dated D (--date,\n"
    "or the first flight's date). --history must hold only actuals before D.\n"
    "Writes flight_id,dep_time,origin,destination,p_delay,model_version where\n"
    "model_version is the first 12 hex digits of the model file's sha256.\n"
    "Exit: 0 ok, 1 bad input, 2 usage.\n";

static int check_features(const st_model *m, const char *path, st_err *err)
{
    int same = m->fit.p == ST_FEATURE_COUNT;
    for (int j = 0; same && j < ST_FEATURE_COUNT; j++)
        same = !strcmp(m->names[j], st_feature_names[j]);
    if (!same)
        return st_err_set(err,
                          "model '%s' was trained on other features than this nj-score "
                          "computes (retrain it)",
                          path);
    return 0;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *schedule_path = NULL, *out_path = NULL, *date = NULL;
    st_list history = {0};
    st_opt opts[] = {
        {"model", ST_OPT_STRING, &model_path}, {"schedule", ST_OPT_STRING, &schedule_path},
        {"history", ST_OPT_LIST, &history},    {"out", ST_OPT_STRING, &out_path},
        {"date", ST_OPT_STRING, &date},        {0}};
    st_args_parse(argc, argv, opts, prog, usage);
    st_args_require(model_path, "model", prog, usage);
    st_args_require(schedule_path, "schedule", prog, usage);
    st_args_require(out_path, "out", prog, usage);
    if (history.n == 0)
        st_die(prog, ST_EXIT_USAGE, "--history needs at least one file of an earlier date");
    int day = 0;
    if (date && st_date_parse(date, &day) < 0)
        st_die(prog, ST_EXIT_USAGE, "--date '%s' is not YYYY-MM-DD", date);

    int rc = ST_EXIT_OK;
    st_err err = {{0}};
    st_model model = {0};
    st_flights flights = {0};
    st_history h = {0};
    st_outfile out = {0};
    if (st_model_load(&model, model_path, &err) < 0 ||
        check_features(&model, model_path, &err) < 0 ||
        st_flights_load(schedule_path, 0, &flights, &err) < 0)
        goto fail;
    if (!date) day = flights.items[0].day;
    char d[11], want[11];
    st_date_format(day, want);
    for (size_t i = 0; i < flights.n; i++)
        if (flights.items[i].day != day) {
            st_err_set(&err, "%s:%zu: flight dated %s, but the schedule is for %s", schedule_path,
                       i + 2, st_date_format(flights.items[i].day, d), want);
            goto fail;
        }
    st_history_init(&h, day, model.prior_weight, model.label_delay_min);
    for (size_t i = 0; i < history.n; i++)
        if (st_history_add_file(&h, history.items[i], &err) < 0) goto fail;
    if (st_outfile_open(&out, out_path, &err) < 0) goto fail;
    fprintf(out.file, "flight_id,dep_time,origin,destination,p_delay,model_version\n");
    double sum = 0;
    for (size_t i = 0; i < flights.n; i++) {
        const st_flight *f = &flights.items[i];
        double x[ST_FEATURE_COUNT];
        st_features_compute(&h, f, x);
        double p = st_logreg_predict(&model.fit, x);
        sum += p;
        fprintf(out.file, "%s,%s %02d:%02d,%s,%s,%.6f,%s\n", f->id, want, f->minute / 60,
                f->minute % 60, f->origin, f->dest, p, model.version);
    }
    if (st_outfile_commit(&out, &err) < 0) goto fail;
    fprintf(stderr, "%s: %s: %zu flights, mean p_delay %.4f, model %s -> %s\n", prog, want,
            flights.n, sum / (double)flights.n, model.version, out_path);
    goto done;
fail:
    rc = ST_EXIT_DATA;
    st_outfile_abort(&out);
done:
    st_model_release(&model);
    st_flights_release(&flights);
    if (h.seen) st_history_release(&h);
    st_list_release(&history);
    if (rc != ST_EXIT_OK) st_die(prog, rc, "%s", err.msg);
    return rc;
}
