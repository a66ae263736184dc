/* test_data.c - the CSV reader's errors, row validation, the leakage rule,
 * dates and SHA-256. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/csv.h"
#include "lib/date.h"
#include "lib/features.h"
#include "lib/flights.h"
#include "lib/sha256.h"

static char dir[] = "/tmp/nj-stages-test-XXXXXX";

static void enter_tmpdir(void)
{
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(chdir(dir), 0);
}

static void leave_tmpdir(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

TestSuite(csv, .init = enter_tmpdir, .fini = leave_tmpdir, .timeout = 10);

Test(csv, missing_file_names_the_file)
{
    st_csv csv;
    st_err err;
    cr_assert_eq(st_csv_open(&csv, "nope.csv", &err), -1);
    cr_assert_str_eq(err.msg, "cannot open 'nope.csv': No such file or directory");
}

Test(csv, empty_file_has_no_header)
{
    st_csv csv;
    st_err err;
    write_file("empty.csv", "");
    cr_assert_eq(st_csv_open(&csv, "empty.csv", &err), -1);
    cr_assert_str_eq(err.msg, "'empty.csv': file is empty (no header line)");
}

Test(csv, wrong_header_is_shown_with_the_expected_one)
{
    st_csv csv;
    st_err err;
    write_file("h.csv", "flight_id,dep_time\n");
    cr_assert_eq(st_csv_open(&csv, "h.csv", &err), 0);
    cr_assert_eq(st_csv_expect_header(&csv, st_schedule_columns, 5, &err), -1);
    cr_assert_str_eq(err.msg, "h.csv:1: header is 'flight_id,dep_time' but expected "
                              "'flight_id,dep_time,origin,destination,distance'");
    st_csv_close(&csv);
}

Test(csv, quotes_are_refused_with_the_line)
{
    st_csv csv;
    st_err err;
    write_file("q.csv", "a,b\n1,2\n\"x\",3\n");
    cr_assert_eq(st_csv_open(&csv, "q.csv", &err), 0);
    cr_assert_eq(st_csv_next(&csv, &err), 1);
    cr_assert_eq(csv.nfields, 2);
    cr_assert_str_eq(csv.fields[1], "2");
    cr_assert_eq(st_csv_next(&csv, &err), -1);
    cr_assert_str_eq(err.msg, "q.csv:3: quoted fields are not supported");
    st_csv_close(&csv);
}

Test(csv, comment_line_and_crlf)
{
    st_csv csv;
    write_file("c.csv", "# nj-features date=2001-01-02\r\na,b\r\n1,2\r\n");
    cr_assert_eq(st_csv_open(&csv, "c.csv", NULL), 0);
    cr_assert_str_eq(csv.comment, "nj-features date=2001-01-02");
    cr_assert_eq(st_csv_next(&csv, NULL), 1);
    cr_assert_str_eq(csv.fields[1], "2");
    cr_assert_eq(csv.lineno, 3);
    cr_assert_eq(st_csv_next(&csv, NULL), 0);
    st_csv_close(&csv);
}

Test(csv, bad_value_in_a_day_file_names_file_and_line)
{
    st_flights fl = {0};
    st_err err;
    write_file("d.csv", "flight_id,dep_time,origin,destination,distance,delay\n"
                        "a,2001-01-01 10:00,ATL,SFO,2139,5\n"
                        "b,2001-01-01 11:00,ATL,SFO,2139,abc\n");
    cr_assert_eq(st_flights_load("d.csv", 1, &fl, &err), -1);
    cr_assert_str_eq(err.msg, "d.csv:3: delay 'abc' is not an integer");
    st_flights_release(&fl);
}

Test(csv, header_only_day_is_an_error)
{
    st_flights fl = {0};
    st_err err;
    write_file("e.csv", "flight_id,dep_time,origin,destination,distance\n");
    cr_assert_eq(st_flights_load("e.csv", 0, &fl, &err), -1);
    cr_assert_str_eq(err.msg, "'e.csv': no flights (only a header)");
}

TestSuite(flight, .timeout = 10);

static const char *parse(const char *id, const char *t, const char *o, const char *d,
                         const char *dist, const char *delay)
{
    static char why[200];
    char *f[6] = {(char *)id, (char *)t, (char *)o, (char *)d, (char *)dist, (char *)delay};
    st_flight fl;
    why[0] = '\0';
    st_flight_parse(f, 6, 1, &fl, why, sizeof why);
    return why;
}

Test(flight, validation_reasons)
{
    cr_assert_str_eq(parse("a", "2001-01-01 10:00", "ATL", "SFO", "10", "-3"), "");
    cr_assert_str_eq(parse("a", "2001-02-30 10:00", "ATL", "SFO", "10", "1"),
                     "dep_time '2001-02-30 10:00' is not 'YYYY-MM-DD HH:MM'");
    cr_assert_str_eq(parse("a", "2001-01-01 24:00", "ATL", "SFO", "10", "1"),
                     "dep_time '2001-01-01 24:00' is not 'YYYY-MM-DD HH:MM'");
    cr_assert_str_eq(parse("a", "2001-01-01 10:00", "AT", "SFO", "10", "1"),
                     "origin 'AT' is not a 3-letter airport code");
    cr_assert_str_eq(parse("a", "2001-01-01 10:00", "ATL", "sfo", "10", "1"),
                     "destination 'sfo' is not a 3-letter airport code");
    cr_assert_str_eq(parse("a", "2001-01-01 10:00", "ATL", "SFO", "0", "1"),
                     "distance 0 is not positive");
    cr_assert_str_eq(parse("a", "2001-01-01 10:00", "ATL", "SFO", "1.5", "1"),
                     "distance '1.5' is not an integer");
    cr_assert_str_eq(parse("", "2001-01-01 10:00", "ATL", "SFO", "1", "1"),
                     "flight_id '' is empty or longer than 39 characters");
}

Test(flight, dates_and_weekdays)
{
    int day;
    char buf[11];
    cr_assert_eq(st_date_parse("2001-03-01", &day), 0);
    cr_assert_str_eq(st_date_format(day - 1, buf), "2001-02-28");
    cr_assert_eq(st_date_weekday(day), 3); /* a Thursday */
    cr_assert_eq(st_date_parse("2001-1-01", &day), -1);
}

TestSuite(leakage, .timeout = 10);

static st_flight flight_on(const char *date, int delay)
{
    st_flight f = {.minute = 600, .origin = "ATL", .dest = "SFO", .distance = 2139};
    f.delay = delay;
    strcpy(f.id, "x");
    cr_assert_eq(st_date_parse(date, &f.day), 0);
    return f;
}

Test(leakage, history_on_or_after_the_feature_date_is_refused)
{
    int d;
    st_date_parse("2001-02-01", &d);
    st_history h;
    st_err err;
    st_history_init(&h, d, 20, 15);
    st_flight ok[2] = {flight_on("2001-01-31", 30), flight_on("2001-01-31", 0)};
    st_flight same[1] = {flight_on("2001-02-01", 30)};
    st_flight later[2] = {flight_on("2001-01-30", 0), flight_on("2001-02-02", 30)};
    cr_assert_eq(st_history_add(&h, ok, 2, "ok.csv", &err), 0);
    cr_assert_eq(st_history_add(&h, same, 1, "same.csv", &err), -1);
    cr_assert_str_eq(err.msg, "same.csv:2: flight dated 2001-02-01 is not before the feature "
                              "date 2001-02-01 (label leakage)");
    cr_assert_eq(st_history_add(&h, later, 2, "later.csv", &err), -1);
    cr_assert_str_eq(err.msg, "later.csv:3: flight dated 2001-02-02 is not before the feature "
                              "date 2001-02-01 (label leakage)");
    /* Refused files changed nothing: only the first file counts. */
    cr_assert_eq(h.flights, 2);
    cr_assert_eq(h.delayed, 1);
    cr_assert_eq(h.ndays, 1);
    cr_assert_eq(st_history_add(&h, ok, 2, "again.csv", &err), -1);
    cr_assert_str_eq(err.msg, "again.csv:2: date 2001-01-31 was already given by an earlier "
                              "history file");
    st_history_release(&h);
}

Test(leakage, features_use_smoothed_history_rates)
{
    int d;
    st_date_parse("2001-02-01", &d);
    st_history h;
    st_history_init(&h, d, 2, 15);
    /* 4 flights ATL->SFO, 1 delayed; 4 flights JFK->SFO, 3 delayed: g = 0.5.
     * ATL rate = (1 + 2 * 0.5) / (4 + 2) = 1/3. */
    st_flight fl[8];
    for (int i = 0; i < 8; i++) {
        fl[i] = flight_on("2001-01-31", 0);
        if (i >= 4) memcpy(fl[i].origin, "JFK", 4);
        fl[i].delay = (i == 0 || i >= 5) ? 60 : 0;
    }
    cr_assert_eq(st_history_add(&h, fl, 8, "h.csv", NULL), 0);
    st_flight today = flight_on("2001-02-01", 0);
    double x[ST_FEATURE_COUNT];
    st_features_compute(&h, &today, x);
    cr_assert_str_eq(st_feature_names[10], "origin_rate");
    cr_assert_float_eq(x[10], 1.0 / 3, 1e-12);
    cr_assert_float_eq(x[11], 0.5, 1e-12);     /* SFO: 4 of 8 */
    cr_assert_float_eq(x[13], 1.0 / 3, 1e-12); /* yesterday = the window */
    cr_assert_float_eq(x[0], 10.0, 1e-12);     /* 10:00 */
    cr_assert_float_eq(x[5], 1.0, 1e-12);      /* 2001-02-01 is a Thursday */
    st_history_release(&h);
}

TestSuite(sha256, .timeout = 10);

Test(sha256, known_vectors)
{
    char hex[65];
    st_sha256 h;
    st_sha256_init(&h);
    st_sha256_hex(&h, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    st_sha256_init(&h);
    st_sha256_update(&h, "abc", 3);
    st_sha256_hex(&h, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* 1,000,000 x 'a' fed in odd-sized pieces crosses every block boundary. */
    st_sha256_init(&h);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    while (left) {
        size_t n = left < sizeof a ? left : sizeof a;
        st_sha256_update(&h, a, n);
        left -= n;
    }
    st_sha256_hex(&h, hex);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
