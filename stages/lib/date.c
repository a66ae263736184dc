/* date.c - civil date arithmetic after Howard Hinnant's days_from_civil. */
#include "date.h"

#include <stdio.h>
#include <string.h>

static int days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int z, int *y, int *m, int *d)
{
    z += 719468;
    int era = (z >= 0 ? z : z - 146096) / 146097;
    int doe = z - era * 146097;
    int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

/* Reads `n` decimal digits at s into *v; 0 or -1. */
static int digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

static int parse_ymd(const char *s, int *day)
{
    int y, m, d;
    if (digits(s, 4, &y) < 0 || s[4] != '-' || digits(s + 5, 2, &m) < 0 || s[7] != '-' ||
        digits(s + 8, 2, &d) < 0)
        return -1;
    if (m < 1 || m > 12 || d < 1 || d > 31) return -1;
    *day = days_from_civil(y, m, d);
    int y2, m2, d2;
    civil_from_days(*day, &y2, &m2, &d2);
    return m2 == m && d2 == d ? 0 : -1; /* rejects 2001-02-30 */
}

int st_date_parse(const char *s, int *day)
{
    return strlen(s) == 10 ? parse_ymd(s, day) : -1;
}

int st_datetime_parse(const char *s, int *day, int *minute)
{
    int h, mi;
    if (strlen(s) != 16 || parse_ymd(s, day) < 0 || s[10] != ' ' || digits(s + 11, 2, &h) < 0 ||
        s[13] != ':' || digits(s + 14, 2, &mi) < 0 || h > 23 || mi > 59)
        return -1;
    *minute = h * 60 + mi;
    return 0;
}

char *st_date_format(int day, char *buf)
{
    int y, m, d;
    civil_from_days(day, &y, &m, &d);
    char tmp[40]; /* roomy enough that the compiler sees no truncation */
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02d", y % 10000, m, d);
    memcpy(buf, tmp, 10);
    buf[10] = '\0';
    return buf;
}

int st_date_weekday(int day)
{
    /* 1970-01-01 was a Thursday (3 with Monday = 0). */
    int w = (day + 3) % 7;
    return w < 0 ? w + 7 : w;
}
