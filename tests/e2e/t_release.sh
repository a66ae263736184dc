#!/usr/bin/env bash
# The gate, the model registry and publishing, end to end with real
# processes and real SQLite files: promotion, hold (the champion keeps
# scoring, exit 5), republish without duplicates, a malformed output that
# leaves the table untouched, keep_partitions, and the Prometheus textfile.
. "$(dirname "$0")/lib.sh"

cp "$NJ_SRC/fixtures/release/gate.yaml" .
P=gate.yaml
ST=.nightjar/state.db
DB=serving/gated.db
champion() { sql $ST "SELECT version FROM model_aliases WHERE pipeline = 'gated' AND alias = '$1'"; }
rows() { sql $DB "SELECT count(*) FROM risk WHERE ds = '$1'"; }

# A first candidate that fails an absolute rule: no champion, score cannot run.
mkdir first && cp $P first/ && (
    cd first
    expect_exit 1 "$NJ" run $P --date 2024-01-02 --param auc=0.50
    assert_contains err.txt "HELD, and there is no champion yet"
    assert_contains err.txt "auc >= 0.6: 0.5 >= 0.6 → FAIL"
    assert_contains err.txt "stage 'score' uses {{models.champion}} but pipeline 'gated' has no champion yet"
    [ ! -e serving/gated.db ] || fail "nothing may be published without a model"
)
ok "without a champion a held candidate stops the stages that need one"

expect_exit 0 "$NJ" run $P --date 2024-01-02 --metrics-file metrics.prom
assert_contains err.txt "gate evaluate@2024-01-02: candidate"
assert_contains err.txt "promoted to champion"
assert_contains err.txt "published risk 2024-01-02: 3 rows"
v1=$(champion champion)
[ ${#v1} = 64 ] || fail "champion should be a content hash, got '$v1'"
assert_eq "$(rows 2024-01-02)" 3
assert_eq "$(sql $DB "SELECT DISTINCT model_version FROM risk")" "$v1"
assert_eq "$(sql $DB "SELECT DISTINCT run_id FROM risk")" 1
assert_eq "$(sql $DB "SELECT count(*) FROM risk_latest")" 3
assert_eq "$(sql $DB "SELECT table_name, ds, run_id, rows FROM nightjar_publications")" "risk|2024-01-02|1|3"
assert_eq "$(sql $ST "SELECT decision, passed FROM gate_decisions")" "promoted|1"
assert_eq "$(sql $ST "SELECT json_extract(metrics, '\$.model.auc') FROM stage_metrics WHERE stage = 'evaluate'")" 0.7
assert_eq "$(sql $ST "SELECT count(*) FROM models WHERE version = '$v1' AND path IS NOT NULL")" 1
sql .nightjar/cache/index.db "SELECT reason FROM pins WHERE hash = '$v1'" | grep -qx model ||
    fail "the registered model must be pinned against gc"
assert_contains metrics.prom 'nightjar_last_run_exit_code{pipeline="gated"} 0'
assert_contains metrics.prom 'nightjar_last_run_rows_published{pipeline="gated"} 3'
assert_contains metrics.prom 'nightjar_last_run_gate_held{pipeline="gated"} 0'
assert_contains metrics.prom '# TYPE nightjar_last_success_timestamp_seconds gauge'
ok "a passing candidate becomes champion, scores, and its rows are published and traced"

expect_exit 0 "$NJ" run $P --date 2024-01-02
assert_not_contains err.txt "published"
assert_not_contains err.txt "promoted"
assert_contains err.txt "up_to_date"
assert_eq "$(sql $DB "SELECT count(*) FROM nightjar_publications")" 1
assert_eq "$(sql $ST "SELECT count(*) FROM gate_decisions")" 1
ok "a rerun of the same date does nothing: no re-evaluation, no republish"

expect_exit 0 "$NJ" run $P --date 2024-01-02 --param rows=5
assert_eq "$(rows 2024-01-02)" 5
assert_eq "$(sql $DB "SELECT count(*) FROM nightjar_publications WHERE ds = '2024-01-02'")" 2
ok "republishing a date replaces its rows, never duplicates them"

expect_exit 5 "$NJ" run $P --date 2024-01-03 --param auc=0.50 --metrics-file metrics.prom
assert_contains err.txt "HELD, champion ${v1:0:12} keeps scoring"
assert_contains err.txt "auc >= champion.auc - 0.01: 0.5 >= 0.7 - 0.01 = 0.69 → FAIL"
assert_contains err.txt "1 candidate model was held by the gate"
assert_eq "$(champion champion)" "$v1"
assert_eq "$(rows 2024-01-03)" 3
assert_eq "$(sql $DB "SELECT DISTINCT model_version FROM risk WHERE ds = '2024-01-03'")" "$v1"
assert_eq "$(sql $ST "SELECT decision FROM gate_decisions WHERE ds = '2024-01-03'")" held
assert_eq "$(sql $ST "SELECT action FROM model_events ORDER BY id DESC LIMIT 1")" hold
assert_contains metrics.prom 'nightjar_last_run_exit_code{pipeline="gated"} 5'
assert_contains metrics.prom 'nightjar_last_run_gate_held{pipeline="gated"} 1'
ok "a worse candidate is held: the champion keeps scoring and publishing, exit 5"

expect_exit 0 "$NJ" run $P --date 2024-01-04 --param auc=0.695
v3=$(champion champion)
[ "$v3" != "$v1" ] || fail "the candidate within the tolerance should be champion"
assert_eq "$(champion previous)" "$v1"
assert_eq "$(sql $DB "SELECT DISTINCT model_version FROM risk WHERE ds = '2024-01-04'")" "$v3"
ok "a candidate within the champion rule's tolerance is promoted; the old one is previous"

before=$(sql $DB "SELECT ds, id, p, model_version FROM risk ORDER BY ds, id")
expect_exit 1 "$NJ" run $P --date 2024-01-05 --param auc=0.695 --param bad=yes
assert_contains err.txt "publish: table 'risk' on 2024-01-05:"
assert_contains err.txt "out/predictions/2024-01-05.csv:5:3: column 'p': 'notanumber' is not a real"
assert_eq "$(sql $DB "SELECT ds, id, p, model_version FROM risk ORDER BY ds, id")" "$before"
assert_eq "$(rows 2024-01-05)" 0
ok "a malformed output fails the publish with file:line:col and leaves the table untouched"

expect_exit 0 "$NJ" run $P --date 2024-01-05 --param auc=0.695
expect_exit 0 "$NJ" run $P --date 2024-01-06 --param auc=0.695
assert_eq "$(sql $DB "SELECT group_concat(ds) FROM (SELECT DISTINCT ds FROM risk ORDER BY ds)")" \
    "2024-01-04,2024-01-05,2024-01-06"
assert_eq "$(sql $DB "SELECT DISTINCT ds FROM risk_latest")" 2024-01-06
ok "keep_partitions keeps the newest dates; the _latest view shows the newest"

expect_exit 0 "$NJ" backfill $P --from 2024-01-07 --to 2024-01-08 --param auc=0.695
v8=$(champion champion)
expect_exit 0 "$NJ" lineage $P --table risk --ds 2024-01-08
assert_contains out.txt "lineage of table 'risk' for 2024-01-08 (pipeline 'gated')"
assert_contains out.txt "from score@2024-01-08"
assert_contains out.txt "nightjar backfill $P --from 2024-01-07 --to 2024-01-08"
assert_contains out.txt "$v8"
assert_contains out.txt "train@2024-01-08"
assert_contains out.txt "promoted by evaluate@2024-01-08"
assert_contains out.txt "param auc 0.695"
ok "lineage of a backfilled date reads publication, run, keys, model and gate from the state"

finish
