/* date.h - calendar dates as day numbers (days since 1970-01-01).
 * Dates are proleptic Gregorian and carry no time zone: flight times in the
 * data are local wall-clock times and are compared as such. */
#ifndef ST_DATE_H
#define ST_DATE_H

/* Parses exactly "YYYY-MM-DD" (a real calendar date) into *day; 0 or -1. */
int st_date_parse(const char *s, int *day);

/* Parses exactly "YYYY-MM-DD HH:MM" into *day and *minute (0..1439). */
int st_datetime_parse(const char *s, int *day, int *minute);

/* Writes "YYYY-MM-DD" into buf (at least 11 bytes); returns buf. */
char *st_date_format(int day, char *buf);

/* 0 = Monday .. 6 = Sunday. */
int st_date_weekday(int day);

#endif
