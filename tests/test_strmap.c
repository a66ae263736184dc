/* test_strmap.c - the string hash map: lookups, misses, replacement, growth. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/strmap.h"

Test(strmap, finds_what_was_put_and_nothing_else)
{
    nj_strmap m;
    nj_strmap_init(&m);
    int a = 1, b = 2;
    cr_assert_null(nj_strmap_get(&m, "train"), "an empty map finds nothing");
    cr_assert_null(nj_strmap_put(&m, "train", &a));
    cr_assert_null(nj_strmap_put(&m, "score", &b));
    cr_assert_eq(nj_strmap_get(&m, "train"), &a);
    cr_assert_eq(nj_strmap_get(&m, "score"), &b);
    cr_assert_null(nj_strmap_get(&m, "trai"));
    cr_assert_null(nj_strmap_get(&m, "train "));
    cr_assert_null(nj_strmap_get(&m, ""));
    cr_assert_eq(nj_strmap_count(&m), 2);
    nj_strmap_release(&m);
    cr_assert_null(nj_strmap_get(&m, "train"), "released is empty again");
}

Test(strmap, a_second_put_replaces_value_and_key)
{
    nj_strmap m;
    nj_strmap_init(&m);
    int a = 1, b = 2;
    char *first = strdup("data/x.csv"), *second = strdup("data/x.csv");
    nj_strmap_put(&m, first, &a);
    cr_assert_eq(nj_strmap_put(&m, second, &b), &a, "returns the replaced value");
    free(first); /* the map must no longer look at the old key */
    cr_assert_eq(nj_strmap_get(&m, "data/x.csv"), &b);
    cr_assert_eq(nj_strmap_count(&m), 1);
    nj_strmap_release(&m);
    free(second);
}

Test(strmap, keeps_every_key_through_growth)
{
    enum { N = 5000 };
    char (*keys)[32] = calloc(N, sizeof(*keys));
    int *values = calloc(N, sizeof(int));
    nj_strmap m;
    nj_strmap_init(&m);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "out/s_%d_%d", i / 50, i % 50);
        values[i] = i;
        cr_assert_null(nj_strmap_put(&m, keys[i], &values[i]));
    }
    cr_assert_eq(nj_strmap_count(&m), N);
    for (int i = 0; i < N; i++) {
        char probe[32];
        snprintf(probe, sizeof(probe), "out/s_%d_%d", i / 50, i % 50);
        int *v = nj_strmap_get(&m, probe);
        cr_assert_not_null(v, "%s", probe);
        cr_assert_eq(*v, i);
    }
    cr_assert_null(nj_strmap_get(&m, "out/s_100_0"));
    nj_strmap_release(&m);
    free(keys);
    free(values);
}
