/* test_util.c - durations, dates, buffers, edit distance. */
#include <criterion/criterion.h>
#include <string.h>

#include "nightjar/util.h"

Test(util, parses_durations_with_units)
{
    int64_t ms = 0;
    cr_assert_eq(nj_duration_parse("90s", &ms, NULL), 0);
    cr_assert_eq(ms, 90000);
    cr_assert_eq(nj_duration_parse("5m", &ms, NULL), 0);
    cr_assert_eq(ms, 300000);
    cr_assert_eq(nj_duration_parse("2h", &ms, NULL), 0);
    cr_assert_eq(ms, 7200000);
    cr_assert_eq(nj_duration_parse("250ms", &ms, NULL), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(nj_duration_parse("1.5s", &ms, NULL), 0);
    cr_assert_eq(ms, 1500);
    cr_assert_eq(nj_duration_parse("12", &ms, NULL), 0);
    cr_assert_eq(ms, 12000);
}

Test(util, rejects_bad_durations_with_message)
{
    nj_err err = {0};
    int64_t ms;
    cr_assert_eq(nj_duration_parse("5 minutes", &ms, &err), NJ_EFORMAT);
    cr_assert_str_eq(err.msg,
                     "invalid duration '5 minutes' (expected a number with ms, s, m, h or d, "
                     "e.g. '90s')");
    cr_assert_eq(nj_duration_parse("-3s", &ms, NULL), NJ_EFORMAT);
    cr_assert_eq(nj_duration_parse("", &ms, NULL), NJ_EFORMAT);
}

Test(util, dates_round_trip_and_reject_impossible_days)
{
    int32_t d;
    char out[11];
    cr_assert_eq(nj_date_parse("2001-03-01", &d, NULL), 0);
    nj_date_format(d - 1, out);
    cr_assert_str_eq(out, "2001-02-28");
    cr_assert_eq(nj_date_parse("2000-03-01", &d, NULL), 0);
    nj_date_format(d - 1, out);
    cr_assert_str_eq(out, "2000-02-29");
    cr_assert_eq(nj_date_parse("1970-01-01", &d, NULL), 0);
    cr_assert_eq(d, 0);
    cr_assert_eq(nj_date_parse("2001-02-30", &d, NULL), NJ_EFORMAT);
    cr_assert_eq(nj_date_parse("2001-2-3", &d, NULL), NJ_EFORMAT);
    cr_assert_eq(nj_date_parse("2001-02-03x", &d, NULL), NJ_EFORMAT);
}

Test(util, buffer_grows_and_detaches)
{
    nj_buf b;
    nj_buf_init(&b);
    for (int i = 0; i < 1000; i++)
        nj_buf_printf(&b, "%d,", i);
    cr_assert(nj_str_starts(b.data, "0,1,2,"));
    cr_assert(nj_str_ends(b.data, "998,999,"));
    char *s = nj_buf_detach(&b);
    cr_assert_eq(strlen(s), 3890);
    free(s);
    nj_buf_release(&b);
}

Test(util, edit_distance)
{
    cr_assert_eq(nj_edit_distance("stpes", "stages"), 2);
    cr_assert_eq(nj_edit_distance("", "abc"), 3);
    cr_assert_eq(nj_edit_distance("same", "same"), 0);
    cr_assert_eq(nj_edit_distance("rnu", "run"), 1, "a transposition is one edit");
    cr_assert_eq(nj_edit_distance("trian", "train"), 1);
}
