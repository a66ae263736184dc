/* nj-ingest - validate one day of landed actuals into a normalized partition.
 *
 * Every input row ends up in exactly one of two places: the normalized file
 * (valid rows, rewritten canonically) or the quarantine file (invalid rows
 * with their line number, the reason and the raw text). Nothing is dropped
 * silently. Exit codes: 0 ok, 1 bad or missing input (or too many bad rows),
 * 2 usage.
 */
#include <stdio.h>
#include <string.h>

#include "lib/args.h"
#include "lib/csv.h"
#include "lib/date.h"
#include "lib/err.h"
#include "lib/flights.h"
#include "lib/outfile.h"

static const char *const prog = "nj-ingest";
static const char usage[] =
    "usage: nj-ingest --in LANDING.csv --out NORM.csv --quarantine BAD.csv\n"
    "                 [--date YYYY-MM-DD] [--max-bad-fraction 0.01]\n"
    "\n"
    "Validates one day of flight actuals (flight_id,dep_time,origin,destination,\n"
    "distance,delay) and writes the valid rows to --out and the malformed ones to\n"
    "--quarantine as line,reason,row. A row is malformed if it has the wrong number\n"
    "of fields, a dep_time other than 'YYYY-MM-DD HH:MM' (or not on --date), an\n"
    "airport code other than 3 letters, a distance <= 0 or a non-integer delay.\n"
    "Fails on a missing or empty file, a wrong header, or when more than\n"
    "--max-bad-fraction of the rows are malformed (then --out is not written).\n"
    "Counts go to stderr. Exit: 0 ok, 1 bad input, 2 usage.\n";

int main(int argc, char **argv)
{
    const char *in = NULL, *out_path = NULL, *bad_path = NULL, *date = NULL;
    double max_bad = 0.01;
    st_opt opts[] = {{"in", ST_OPT_STRING, &in},
                     {"out", ST_OPT_STRING, &out_path},
                     {"quarantine", ST_OPT_STRING, &bad_path},
                     {"date", ST_OPT_STRING, &date},
                     {"max-bad-fraction", ST_OPT_DOUBLE, &max_bad},
                     {0}};
    st_args_parse(argc, argv, opts, prog, usage);
    st_args_require(in, "in", prog, usage);
    st_args_require(out_path, "out", prog, usage);
    st_args_require(bad_path, "quarantine", prog, usage);
    int want_day = 0;
    if (date && st_date_parse(date, &want_day) < 0)
        st_die(prog, ST_EXIT_USAGE, "--date '%s' is not YYYY-MM-DD", date);

    st_err err = {{0}};
    st_csv csv = {0};
    st_outfile out = {0}, bad = {0};
    long rows = 0, good = 0, quarantined = 0;
    int rc;
    if (st_csv_open(&csv, in, &err) < 0 ||
        st_csv_expect_header(&csv, st_actuals_columns, 6, &err) < 0 ||
        st_outfile_open(&out, out_path, &err) < 0 || st_outfile_open(&bad, bad_path, &err) < 0)
        goto fail;
    fprintf(out.file, "flight_id,dep_time,origin,destination,distance,delay\n");
    fprintf(bad.file, "line,reason,row\n");
    while ((rc = st_csv_next(&csv, &err)) > 0) {
        st_flight f;
        char why[200], d[11];
        rows++;
        int ok = st_flight_parse(csv.fields, csv.nfields, 1, &f, why, sizeof why) == 0;
        if (ok && date && f.day != want_day) {
            snprintf(why, sizeof why, "dep_time '%s' is not on %s", csv.fields[1], date);
            ok = 0;
        }
        if (ok) {
            good++;
            fprintf(out.file, "%s,%s %02d:%02d,%s,%s,%d,%d\n", f.id, st_date_format(f.day, d),
                    f.minute / 60, f.minute % 60, f.origin, f.dest, f.distance, f.delay);
            continue;
        }
        quarantined++;
        /* Reasons hold no commas, so the raw row can follow as-is: the
         * splitter only replaced its commas with NULs. */
        fprintf(bad.file, "%ld,%s,", csv.lineno, why);
        for (int i = 0; i < csv.nfields; i++)
            fprintf(bad.file, "%s%s", i ? "," : "", csv.fields[i]);
        fputc('\n', bad.file);
    }
    if (rc < 0) goto fail;
    fprintf(stderr, "%s: %s: %ld rows, %ld valid, %ld quarantined\n", prog, in, rows, good,
            quarantined);
    if (st_outfile_commit(&bad, &err) < 0) goto fail;
    if (rows == 0) {
        st_err_set(&err, "'%s': no flights (only a header)", in);
        goto fail;
    }
    if ((double)quarantined > max_bad * (double)rows) {
        st_err_set(&err,
                   "%s: %ld of %ld rows (%.2f%%) are malformed, more than --max-bad-fraction "
                   "%g; see '%s'",
                   in, quarantined, rows, 100.0 * (double)quarantined / (double)rows, max_bad,
                   bad_path);
        goto fail;
    }
    if (st_outfile_commit(&out, &err) < 0) goto fail;
    st_csv_close(&csv);
    return ST_EXIT_OK;
fail:
    st_outfile_abort(&out);
    st_outfile_abort(&bad);
    st_csv_close(&csv);
    st_die(prog, ST_EXIT_DATA, "%s", err.msg);
}
