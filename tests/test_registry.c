/* test_registry.c - the model registry on a real state database:
 * registration, promotion, holds, rollback through the event history,
 * listing, prefixes, and atomicity when a step fails. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "nightjar/registry.h"
#include "nightjar/state.h"
#include "support.h"

TestSuite(registry, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 20);

static nj_state *st;

static nj_registry *open_registry(void)
{
    nj_err err = {0};
    nj_registry *reg = NULL;
    cr_assert_eq(nj_state_open("ws/state.db", &st, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_registry_open(st, &reg, &err), 0, "%s", err.msg);
    return reg;
}

static void close_registry(nj_registry *reg)
{
    nj_registry_free(reg);
    nj_state_close(st);
    st = NULL;
}

/* A 64-digit version made of one repeated hex digit, e.g. "aaaa...". */
static const char *version(char digit)
{
    static char v[8][65];
    static int next;
    char *s = v[next++ % 8];
    memset(s, digit, 64);
    s[64] = '\0';
    return s;
}

static void register_model(nj_registry *reg, char digit, const char *ds)
{
    nj_err err = {0};
    nj_model_record m = {.version = (char *)version(digit),
                         .pipeline = "flights",
                         .stage = "train",
                         .ds = (char *)ds,
                         .run_id = 1,
                         .created_ms = 1000 + digit,
                         .training_dates = "[\"2001-01-01\", \"2001-02-11\"]",
                         .metrics = "{\"auc\": 0.67}"};
    int created = -1;
    cr_assert_eq(nj_registry_register(reg, &m, &created, &err), 0, "%s", err.msg);
    cr_assert_eq(created, 1);
}

static char *alias(nj_registry *reg, const char *name)
{
    nj_err err = {0};
    char *v = (char *)1;
    cr_assert_eq(nj_registry_alias(reg, "flights", name, &v, &err), 0, "%s", err.msg);
    return v;
}

static void assert_aliases(nj_registry *reg, char champion, char previous)
{
    char *c = alias(reg, NJ_ALIAS_CHAMPION), *p = alias(reg, NJ_ALIAS_PREVIOUS);
    if (champion)
        cr_assert_str_eq(c ? c : "(none)", version(champion));
    else
        cr_assert_null(c, "champion %s", c);
    if (previous)
        cr_assert_str_eq(p ? p : "(none)", version(previous));
    else
        cr_assert_null(p, "previous %s", p);
    free(c);
    free(p);
}

static void promote(nj_registry *reg, char digit)
{
    nj_err err = {0};
    int changed = -1;
    cr_assert_eq(
        nj_registry_promote(reg, "flights", version(digit), 5, "gate passed", &changed, &err), 0,
        "%s", err.msg);
    cr_assert_eq(changed, 1);
}

static void rollback(nj_registry *reg, char want)
{
    nj_err err = {0};
    char *now = NULL;
    cr_assert_eq(nj_registry_rollback(reg, "flights", 0, NULL, &now, &err), 0, "%s", err.msg);
    cr_assert_str_eq(now, version(want));
    free(now);
}

Test(registry, registers_idempotently_by_version)
{
    nj_registry *reg = open_registry();
    nj_err err = {0};
    register_model(reg, 'a', "2001-03-01");
    nj_model_record m = {.version = (char *)version('a'), .pipeline = "flights", .stage = "other"};
    int created = -1;
    cr_assert_eq(nj_registry_register(reg, &m, &created, &err), 0, "%s", err.msg);
    cr_assert_eq(created, 0);
    nj_model_record got;
    cr_assert_eq(nj_registry_get(reg, version('a'), &got, &err), 0, "%s", err.msg);
    cr_assert_str_eq(got.stage, "train", "the first registration stays");
    cr_assert_str_eq(got.ds, "2001-03-01");
    cr_assert_str_eq(got.metrics, "{\"auc\": 0.67}");
    cr_assert_eq(got.created_ms, 1000 + 'a');
    cr_assert_null(got.aliases);
    nj_model_record_release(&got);
    nj_model_record_release(NULL);

    m.pipeline = "other";
    cr_assert_eq(nj_registry_register(reg, &m, &created, &err), NJ_EUSAGE);
    cr_assert_str_eq(err.msg,
                     "model 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' "
                     "is already registered by pipeline 'flights'");
    m.version = (char *)version('b');
    m.metrics = "{\"auc\": }";
    cr_assert_eq(nj_registry_register(reg, &m, &created, &err), NJ_EFORMAT);
    cr_assert(strstr(err.msg, "metrics:1:9: expected a value"), "%s", err.msg);
    cr_assert_eq(nj_registry_get(reg, version('b'), &got, &err), NJ_ENOTFOUND);

    nj_model_event *ev;
    size_t n;
    cr_assert_eq(nj_registry_events(reg, "flights", 0, &ev, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1, "one register event, not two");
    cr_assert_str_eq(ev[0].action, "register");
    cr_assert_eq(ev[0].run_id, 1);
    nj_model_event_release(&ev[0]);
    free(ev);
    close_registry(reg);
}

Test(registry, promotes_atomically_and_keeps_the_previous_champion)
{
    nj_registry *reg = open_registry();
    nj_err err = {0};
    register_model(reg, 'a', "2001-03-01");
    register_model(reg, 'b', "2001-03-02");
    assert_aliases(reg, 0, 0);
    promote(reg, 'a');
    assert_aliases(reg, 'a', 0);
    promote(reg, 'b');
    assert_aliases(reg, 'b', 'a');
    int changed = -1;
    cr_assert_eq(nj_registry_promote(reg, "flights", version('b'), 0, NULL, &changed, &err), 0);
    cr_assert_eq(changed, 0, "promoting the champion again is a no-op");
    assert_aliases(reg, 'b', 'a');

    cr_assert_eq(nj_registry_promote(reg, "flights", version('c'), 0, NULL, NULL, &err),
                 NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg,
                     "model 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc' "
                     "is not registered for pipeline 'flights'");
    assert_aliases(reg, 'b', 'a');

    nj_model_event *ev;
    size_t n;
    cr_assert_eq(nj_registry_events(reg, "flights", 2, &ev, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(ev[0].action, "promote");
    cr_assert_str_eq(ev[0].version, version('b'));
    cr_assert_str_eq(ev[0].previous_version, version('a'));
    cr_assert_str_eq(ev[0].detail, "gate passed");
    cr_assert_eq(ev[0].run_id, 5);
    cr_assert_str_eq(ev[1].action, "promote");
    cr_assert_null(ev[1].previous_version);
    for (size_t i = 0; i < n; i++)
        nj_model_event_release(&ev[i]);
    free(ev);
    close_registry(reg);
}

Test(registry, a_failed_promotion_changes_nothing)
{
    nj_registry *reg = open_registry();
    nj_err err = {0};
    register_model(reg, 'a', NULL);
    register_model(reg, 'b', NULL);
    promote(reg, 'a');
    /* Make the event insert fail after the aliases were written. */
    cr_assert_eq(sqlite3_exec(nj_state_db(st),
                              "CREATE TRIGGER no_events BEFORE INSERT ON model_events "
                              "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    cr_assert_eq(nj_registry_promote(reg, "flights", version('b'), 0, NULL, NULL, &err), NJ_EDB);
    cr_assert(strstr(err.msg, "disk on fire"), "%s", err.msg);
    assert_aliases(reg, 'a', 0);
    cr_assert_eq(nj_registry_rollback(reg, "flights", 0, NULL, NULL, &err), NJ_ENOTFOUND);

    /* Inside a caller's transaction the registry nests with a savepoint. */
    cr_assert_eq(sqlite3_exec(nj_state_db(st), "DROP TRIGGER no_events; BEGIN", NULL, NULL, NULL),
                 SQLITE_OK);
    promote(reg, 'b');
    cr_assert_eq(sqlite3_exec(nj_state_db(st), "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_aliases(reg, 'a', 0);
    close_registry(reg);
}

Test(registry, rollback_walks_back_through_the_history)
{
    nj_registry *reg = open_registry();
    nj_err err = {0};
    register_model(reg, 'a', NULL);
    register_model(reg, 'b', NULL);
    register_model(reg, 'c', NULL);
    cr_assert_eq(nj_registry_rollback(reg, "flights", 0, NULL, NULL, &err), NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg, "pipeline 'flights' has no previous model to roll back to");
    promote(reg, 'a');
    promote(reg, 'b');
    promote(reg, 'c');
    assert_aliases(reg, 'c', 'b');
    rollback(reg, 'b');
    assert_aliases(reg, 'b', 'a');
    rollback(reg, 'a');
    assert_aliases(reg, 'a', 0);
    cr_assert_eq(nj_registry_rollback(reg, "flights", 0, NULL, NULL, &err), NJ_ENOTFOUND);
    assert_aliases(reg, 'a', 0);

    /* Promote again after rolling back: the history still explains it. */
    promote(reg, 'c');
    assert_aliases(reg, 'c', 'a');
    rollback(reg, 'a');
    assert_aliases(reg, 'a', 0);

    nj_model_event *ev;
    size_t n;
    cr_assert_eq(nj_registry_events(reg, "flights", 0, &ev, &n, &err), 0, "%s", err.msg);
    cr_assert_str_eq(ev[0].action, "rollback");
    cr_assert_str_eq(ev[0].version, version('a'));
    cr_assert_null(ev[0].previous_version);
    cr_assert_str_eq(ev[0].detail,
                     "from cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc");
    cr_assert_eq(ev[0].run_id, 0);
    for (size_t i = 0; i < n; i++)
        nj_model_event_release(&ev[i]);
    free(ev);
    close_registry(reg);
}

Test(registry, a_hold_records_the_failing_rules_and_keeps_the_champion)
{
    nj_registry *reg = open_registry();
    nj_err err = {0};
    register_model(reg, 'a', NULL);
    register_model(reg, 'b', NULL);
    promote(reg, 'a');
    const char *why = "auc >= champion.auc - 0.002: 0.6712 >= 0.6745 - 0.002 = 0.6725 → FAIL";
    cr_assert_eq(nj_registry_hold(reg, "flights", version('b'), 9, why, &err), 0, "%s", err.msg);
    assert_aliases(reg, 'a', 0);
    nj_model_event *ev;
    size_t n;
    cr_assert_eq(nj_registry_events(reg, "flights", 1, &ev, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(ev[0].action, "hold");
    cr_assert_str_eq(ev[0].version, version('b'));
    cr_assert_str_eq(ev[0].previous_version, version('a'));
    cr_assert_str_eq(ev[0].detail, why);
    cr_assert_eq(ev[0].run_id, 9);
    nj_model_event_release(&ev[0]);
    free(ev);
    cr_assert_eq(nj_registry_hold(reg, "flights", version('e'), 9, why, &err), NJ_ENOTFOUND);
    close_registry(reg);
}

Test(registry, lists_models_with_aliases_and_resolves_prefixes)
{
    nj_registry *reg = open_registry();
    nj_err err = {0};
    register_model(reg, 'a', "2001-03-01");
    register_model(reg, 'b', "2001-03-02");
    register_model(reg, 'c', "2001-03-03");
    promote(reg, 'a');
    promote(reg, 'b');
    nj_model_record *models;
    size_t n;
    cr_assert_eq(nj_registry_list(reg, "flights", &models, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(models[0].version, version('c'), "newest first");
    cr_assert_null(models[0].aliases);
    cr_assert_str_eq(models[1].aliases, "champion");
    cr_assert_str_eq(models[2].aliases, "previous");
    cr_assert_str_eq(models[2].training_dates, "[\"2001-01-01\", \"2001-02-11\"]");
    cr_assert_str_eq(models[2].metrics, "{\"auc\": 0.67}");
    for (size_t i = 0; i < n; i++)
        nj_model_record_release(&models[i]);
    free(models);
    cr_assert_eq(nj_registry_list(reg, "nothing", &models, &n, &err), 0);
    cr_assert_eq(n, 0);
    free(models);

    char *v = NULL;
    cr_assert_eq(nj_registry_resolve(reg, "flights", "BBBB", &v, &err), 0, "%s", err.msg);
    cr_assert_str_eq(v, version('b'));
    free(v);
    cr_assert_eq(nj_registry_resolve(reg, "flights", "dddd", &v, &err), NJ_ENOTFOUND);
    cr_assert_str_eq(err.msg, "pipeline 'flights' has no model 'dddd'");
    cr_assert_eq(nj_registry_resolve(reg, "flights", "ab", &v, &err), NJ_EUSAGE);
    nj_model_record m = {.version = "aaaa1234", .pipeline = "flights", .stage = "train"};
    cr_assert_eq(nj_registry_register(reg, &m, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_registry_resolve(reg, "flights", "aaaa", &v, &err), NJ_EUSAGE);
    cr_assert(strstr(err.msg, "model version 'aaaa' is ambiguous in pipeline 'flights': "), "%s",
              err.msg);
    close_registry(reg);
}

Test(registry, survives_reopening_the_state_database)
{
    nj_registry *reg = open_registry();
    register_model(reg, 'a', NULL);
    register_model(reg, 'b', NULL);
    promote(reg, 'a');
    promote(reg, 'b');
    close_registry(reg);
    reg = open_registry();
    assert_aliases(reg, 'b', 'a');
    rollback(reg, 'a');
    close_registry(reg);
    nj_registry_free(NULL);
}
