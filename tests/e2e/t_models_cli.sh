# The release verbs on a real workspace: `models list/promote/rollback/events`,
# `metrics` and `lineage`. A real backfill makes the state database (schema,
# runs, stage keys, snapshots, cache objects); the registry, metrics, gate and
# publication rows a gated run would write are then inserted with sqlite3,
# using the real model hashes and key texts of that backfill.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/partition/daily.yaml" .
mkdir landing
for d in $(seq -w 01 09); do echo "day 2001-01-$d" > landing/2001-01-$d.txt; done
DB=.nightjar/state.db
INDEX=.nightjar/cache/index.db
obj() { echo ".nightjar/cache/objects/sha256/${1:0:2}/${1:2}"; }
out_hash() { # STAGE DS: the hash of the stage instance's (only) output
    sql $DB "SELECT outputs FROM stage_keys WHERE stage = '$1' AND ds = '$2'" | awk 'NF {print $3}'
}
py_json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

expect_exit 0 "$NJ" backfill daily.yaml --from 2001-01-04 --to 2001-01-06
v4=$(out_hash train 2001-01-04); v5=$(out_hash train 2001-01-05); v6=$(out_hash train 2001-01-06)
snap4=$(out_hash snap 2001-01-04)
[ ${#v4} = 64 ] && [ ${#v5} = 64 ] && [ ${#v6} = 64 ] || fail "no model hashes from the backfill"

# ---- nothing registered yet --------------------------------------------------
expect_exit 0 "$NJ" models list daily.yaml
assert_eq "$(cat out.txt)" "no models registered for 'daily'"
expect_exit 0 "$NJ" models list daily.yaml --json
assert_eq "$(cat out.txt)" "[]"
assert_eq "$(sql $DB "SELECT count(*) FROM sqlite_master WHERE name = 'models'")" 0 \
    "looking must not create the registry"
expect_exit 0 "$NJ" metrics daily.yaml
assert_contains out.txt "no metrics recorded for 'daily' yet"
expect_exit 1 "$NJ" lineage daily.yaml --table risk --ds 2001-01-06
assert_contains err.txt "table 'risk' of 'daily' was never published; nothing has been published yet"
expect_exit 1 "$NJ" models rollback daily.yaml
assert_contains err.txt "pipeline 'daily' has no previous model to roll back to"
ok "an empty registry: list says so, lineage and rollback fail clearly"

# ---- what a gated run records ------------------------------------------------
# The registry's tables exactly as registry.h declares them.
schema=$(sed -n '/#define NJ_REGISTRY_SCHEMA/,/^$/p' "$NJ_SRC/include/nightjar/registry.h" |
         grep -o '"[^"]*"' | sed 's/^"//; s/"$//' | tr -d '\n')
sqlite3 $DB "$schema"
M='{"auc": %s, "log_loss": %s, "brier": %s, "calibration": [{"lo": 0, "hi": 0.1, "n": 3}]}'
# shellcheck disable=SC2059
sqlite3 $DB <<SQL
INSERT INTO models VALUES ('$v4', 'daily', 'train', '2001-01-04', 1, 978660000000, NULL,
  '["2001-01-01","2001-01-02","2001-01-03"]', '$(printf "$M" 0.61 0.52 0.2)');
INSERT INTO models VALUES ('$v5', 'daily', 'train', '2001-01-05', 1, 978746400000, NULL,
  '["2001-01-02","2001-01-03","2001-01-04"]', '$(printf "$M" 0.64 0.5 0.19)');
INSERT INTO models VALUES ('$v6', 'daily', 'train', '2001-01-06', 1, 978832800000, NULL,
  '["2001-01-03","2001-01-04","2001-01-05"]', '$(printf "$M" 0.58 0.55 0.21)');
INSERT INTO model_events (pipeline, ts_ms, action, version, previous_version, run_id) VALUES
  ('daily', 978660000000, 'register', '$v4', NULL, 1),
  ('daily', 978660000001, 'promote', '$v4', NULL, 1),
  ('daily', 978746400000, 'register', '$v5', NULL, 1),
  ('daily', 978746400001, 'promote', '$v5', '$v4', 1),
  ('daily', 978832800000, 'register', '$v6', NULL, 1);
INSERT INTO model_events (pipeline, ts_ms, action, version, previous_version, run_id, detail)
  VALUES ('daily', 978832800001, 'hold', '$v6', '$v5', 1, 'auc >= 0.6: 0.58 >= 0.6 → FAIL');
INSERT INTO model_aliases VALUES ('daily', 'champion', '$v5', 978746400001),
                                 ('daily', 'previous', '$v4', 978746400001);
INSERT INTO model_sources SELECT '$v5', stage, ds, key, components FROM stage_keys
  WHERE stage = 'train' AND ds = '2001-01-05';
SQL
expect_exit 0 "$NJ" models list daily.yaml
assert_eq "$(sed -n 1p out.txt | awk '{print $1}')" VERSION
assert_eq "$(sed -n 2p out.txt | awk '{print $1}')" "${v6:0:12}" "newest first"
assert_eq "$(sed -n 4p out.txt | awk '{print $1}')" "${v4:0:12}"
assert_contains out.txt "${v5:0:12}  2001-01-06 02:00:00  train@2001-01-05"
assert_contains out.txt "2001-01-02..2001-01-04 (3)"
assert_eq "$(grep -c champion out.txt)" 1
assert_contains out.txt "champion           auc=0.64 log_loss=0.5 brier=0.19"
assert_contains out.txt "previous           auc=0.61"
expect_exit 0 "$NJ" models list daily.yaml --json
py_json "assert [m['version'] for m in d] == ['$v6', '$v5', '$v4']; \
assert d[1]['aliases'] == ['champion'] and d[2]['aliases'] == ['previous'] and d[0]['aliases'] == []; \
assert d[1]['training_dates'][-1] == '2001-01-04' and d[1]['metrics']['auc'] == 0.64; \
assert d[1]['created'] == '2001-01-06T02:00:00Z'" < out.txt
ok "models list: newest first, dates trained on, headline metrics, aliases; --json whole"

# ---- promote and rollback ----------------------------------------------------
events() { sql $DB "SELECT count(*) FROM model_events"; }
before=$(events)
expect_exit 0 "$NJ" models promote daily.yaml "${v6:0:8}"
assert_eq "$(cat out.txt)" "champion of 'daily' is now ${v6:0:12} (was ${v5:0:12})"
assert_eq "$(sql $DB "SELECT version FROM model_aliases WHERE alias = 'champion'")" "$v6"
assert_eq "$(sql $DB "SELECT version FROM model_aliases WHERE alias = 'previous'")" "$v5"
assert_eq "$(sql $DB "SELECT action, version, previous_version, run_id IS NULL FROM model_events
                      ORDER BY id DESC LIMIT 1")" "promote|$v6|$v5|1"
assert_eq "$(sql $INDEX "SELECT reason, workspace FROM pins WHERE hash = '$v6'")" "model|$T/.nightjar"
expect_exit 0 "$NJ" models promote daily.yaml "${v6:0:12}"
assert_contains out.txt "${v6:0:12} is already the champion of 'daily'; nothing changed"
assert_eq "$(events)" $((before + 1)) "promoting the champion again records nothing"
ok "promote by prefix: champion changes, the old one becomes previous, event and pin recorded"

expect_exit 0 "$NJ" models rollback daily.yaml
assert_eq "$(cat out.txt)" \
    "champion of 'daily' is now ${v5:0:12} (was ${v6:0:12}); previous is now ${v4:0:12}"
assert_eq "$(sql $DB "SELECT action, version, previous_version, run_id IS NULL, detail
                      FROM model_events ORDER BY id DESC LIMIT 1")" \
    "rollback|$v5|$v4|1|from $v6"
expect_exit 0 "$NJ" models rollback daily.yaml
assert_contains out.txt "is now ${v4:0:12} (was ${v5:0:12}); previous is now none"
expect_exit 1 "$NJ" models rollback daily.yaml
assert_contains err.txt "models rollback: pipeline 'daily' has no previous model to roll back to"
assert_eq "$(sql $DB "SELECT version FROM model_aliases WHERE alias = 'champion'")" "$v4"
assert_eq "$(sql $INDEX "SELECT count(*) FROM pins WHERE hash IN ('$v4', '$v5')")" 2 \
    "each champion a rollback brings back is pinned"
ok "rollback goes back one champion at a time, and fails when there is none to go back to"

expect_exit 0 "$NJ" models events daily.yaml --last 3
assert_eq "$(wc -l < out.txt)" 4
assert_eq "$(sed -n 2p out.txt | awk '{print $4, $5, $6, $7}')" "rollback ${v4:0:12} - by"
assert_contains out.txt "from $v6"
expect_exit 0 "$NJ" models events daily.yaml --json
py_json "assert d[-1]['action'] == 'register' and d[-1]['run_id'] == 1; \
assert d[0]['action'] == 'rollback' and d[0]['run_id'] is None; \
assert [e['action'] for e in d].count('hold') == 1" < out.txt
ok "models events: the log newest first, changes by hand without a run"

# Prefixes: too short, ambiguous, unknown. Two registered versions share 'abcd'.
sqlite3 $DB "INSERT INTO models (version, pipeline, stage, created_ms) VALUES
  ('abcd1$(printf '0%.0s' $(seq 59))', 'daily', 'train', 1),
  ('abcd2$(printf '0%.0s' $(seq 59))', 'daily', 'train', 2)"
expect_exit 2 "$NJ" models promote daily.yaml abcd
assert_contains err.txt "model version 'abcd' is ambiguous in pipeline 'daily': abcd1"
expect_exit 1 "$NJ" models promote daily.yaml ffff0000
assert_contains err.txt "pipeline 'daily' has no model 'ffff0000'"
expect_exit 2 "$NJ" models promote daily.yaml abc
assert_contains err.txt "must be at least 4 hex digits"
expect_exit 2 "$NJ" models promote daily.yaml
expect_exit 2 "$NJ" models promot daily.yaml
assert_contains err.txt "unknown command 'promot' (did you mean 'promote'?)"
assert_eq "$(sql $DB "SELECT version FROM model_aliases WHERE alias = 'champion'")" "$v4" \
    "failed promotions change nothing"
expect_exit 0 "$NJ" models promote daily.yaml abcd2
assert_contains err.txt "warning: the object of model abcd20000000 is not in the cache"
expect_exit 0 "$NJ" models rollback daily.yaml
ok "ambiguous, unknown and short prefixes are refused; a model without an object warns"

# The workspace lock, held here by flock(1) like a run holds it.
flock .nightjar/lock sleep 3 &
holder=$!
for _ in $(seq 50); do flock -n .nightjar/lock true 2>/dev/null || break; sleep 0.05; done
expect_exit 75 "$NJ" models promote daily.yaml "${v6:0:8}"
assert_contains err.txt "holds '$T/.nightjar/lock'"
expect_exit 75 "$NJ" models rollback daily.yaml --wait-lock 0.2
assert_eq "$(sql $DB "SELECT version FROM model_aliases WHERE alias = 'champion'")" "$v4"
expect_exit 0 "$NJ" models promote daily.yaml "${v6:0:8}" --wait-lock 30
wait $holder
expect_exit 2 "$NJ" models promote daily.yaml "${v6:0:8}" --wait-lock soon
ok "promote and rollback take the workspace lock: exit 75, or wait with --wait-lock"

# gc keeps the pinned champion's object after nothing else needs it. A new
# input to train's window gives 2001-01-06 a new model; with only the newest
# run kept, the old model and the old features are garbage but for the pin.
features5=$(out_hash features 2001-01-05)
echo "corrected" > landing/2001-01-05.txt
expect_exit 0 "$NJ" run daily.yaml --date 2001-01-06
[ "$(out_hash train 2001-01-06)" != "$v6" ] || fail "the new input should change the model"
expect_exit 0 "$NJ" gc daily.yaml --keep-runs 1 --min-age 0s
[ ! -e "$(obj "$features5")" ] || fail "gc should have removed the old features object"
[ -e "$(obj "$v6")" ] || fail "gc removed the pinned champion's object"
ok "gc keeps the object of a model promoted by hand"

# ---- metrics -----------------------------------------------------------------
CHECKS_PASS='{"passed":true,"has_champion":true,"checks":[{"rule":"auc >= 0.6","outcome":"pass","value":0.64,"threshold":0.6,"text":"auc >= 0.6: 0.64 >= 0.6 → PASS"}]}'
CHECKS_FAIL='{"passed":false,"has_champion":true,"checks":[{"rule":"auc >= 0.6","outcome":"fail","value":0.58,"threshold":0.6,"text":"auc >= 0.6: 0.58 >= 0.6 → FAIL"}]}'
sqlite3 $DB <<SQL
INSERT INTO stage_metrics VALUES
  ('daily', 'train', '2001-01-04', 1, '$(printf "$M" 0.61 0.52 0.2)', 'h4', 1),
  ('daily', 'train', '2001-01-05', 1, '$(printf "$M" 0.64 0.5 0.19)', 'h5', 2),
  ('daily', 'train', '2001-01-06', 1, '$(printf "$M" 0.58 0.55 0.21)', 'h6', 3),
  ('daily', 'features', '2001-01-06', 1, '{"rows": 120, "nested": {"x": 1}, "share": 0.25}', 'f6', 3);
INSERT INTO gate_decisions (pipeline, stage, ds, run_id, candidate, baseline, decision, passed,
                            checks, detail, decided_ms) VALUES
  ('daily', 'train', '2001-01-05', 1, '$v5', '$v4', 'promoted', 1, '$CHECKS_PASS', NULL, 5),
  ('daily', 'train', '2001-01-06', 1, '$v6', '$v5', 'held', 0, '$CHECKS_FAIL',
   'auc >= 0.6: 0.58 >= 0.6 → FAIL', 6);
SQL
expect_exit 0 "$NJ" metrics daily.yaml
assert_eq "$(sed -n 1p out.txt)" "features"
assert_eq "$(sed -n 2p out.txt | tr -s ' ')" "DATE RUN rows share"
assert_eq "$(sed -n 3p out.txt | tr -s ' ')" "2001-01-06 1 120 0.25"
assert_eq "$(sed -n 5p out.txt)" "train"
assert_eq "$(sed -n 6p out.txt | tr -s ' ')" "DATE RUN auc log_loss brier GATE"
assert_eq "$(sed -n 7p out.txt | tr -s ' ')" \
    "2001-01-06 1 0.58 0.55 0.21 held ${v6:0:12}: auc >= 0.6: 0.58 >= 0.6 → FAIL"
assert_eq "$(sed -n 8p out.txt | tr -s ' ')" "2001-01-05 1 0.64 0.5 0.19 promoted ${v5:0:12}"
assert_eq "$(sed -n 9p out.txt | tr -s ' ')" "2001-01-04 1 0.61 0.52 0.2 -"
expect_exit 0 "$NJ" metrics daily.yaml --stage train --last 2
assert_eq "$(wc -l < out.txt)" 4
assert_not_contains out.txt "2001-01-04"
assert_not_contains out.txt "features"
expect_exit 0 "$NJ" metrics daily.yaml --json
py_json "assert [(r['stage'], r['ds']) for r in d] == [('features', '2001-01-06'), \
('train', '2001-01-06'), ('train', '2001-01-05'), ('train', '2001-01-04')]; \
assert d[1]['gate']['decision'] == 'held' and d[1]['gate']['passed'] is False; \
assert d[1]['gate']['checks']['checks'][0]['outcome'] == 'fail'; \
assert d[1]['gate']['candidate'] == '$v6' and d[1]['gate']['baseline'] == '$v5'; \
assert d[1]['metrics']['calibration'][0]['n'] == 3 and d[3]['gate'] is None" < out.txt
expect_exit 2 "$NJ" metrics daily.yaml --stage trian
assert_contains err.txt "metrics: unknown stage 'trian' (did you mean 'train'?)"
expect_exit 1 "$NJ" metrics daily.yaml --stage ingest
assert_contains err.txt "stage 'ingest' declares no \`metrics:\` and none were recorded"
expect_exit 2 "$NJ" metrics daily.yaml --last 0
ok "metrics: a table per stage, newest dates first, with the gate's decision; --json whole"

# ---- lineage -----------------------------------------------------------------
# 2001-01-06 of table 'risk' was published by run 1 from features@2001-01-06
# scored with model v5; 2001-01-05 names a run and a model nobody recorded.
sqlite3 $DB <<SQL
INSERT INTO publications (pipeline, table_name, ds, run_id, model_version, rows, duration_ms,
    published_ms, serving_db, serving_id, stage, source_hash, source_key, source_components,
    spec_hash)
  SELECT 'daily', 'risk', ds, 1, '$v5', 42, 7, 978840000000, '$T/serving/daily.db', 3, stage,
         substr(outputs, 5, 64), key, components, 'spec1'
  FROM stage_keys WHERE stage = 'features' AND ds = '2001-01-06';
INSERT INTO publications (pipeline, table_name, ds, run_id, model_version, rows, duration_ms,
    published_ms, serving_db, serving_id, stage, source_hash, spec_hash)
  VALUES ('daily', 'risk', '2001-01-05', 99, 'dead$(printf '0%.0s' $(seq 60))', 40, 7,
          978750000000, '$T/serving/daily.db', 2, 'features', 'ff', 'spec1');
INSERT INTO snapshots VALUES ('daily', 'snap', '2001-01-04', 5, 'later', 1, 1);
SQL
features6=$(out_hash features 2001-01-06)
key6=$(sql $DB "SELECT key FROM stage_keys WHERE stage = 'features' AND ds = '2001-01-06'")
trainkey5=$(sql $DB "SELECT key FROM stage_keys WHERE stage = 'train' AND ds = '2001-01-05'")
before=$(sqlite3 $DB .dump | sha256sum)
expect_exit 0 "$NJ" lineage daily.yaml --table risk --ds 2001-01-06
assert_contains out.txt "lineage of table 'risk' for 2001-01-06 (pipeline 'daily')"
assert_contains out.txt "publication     #1 at 2001-01-07 04:00:00 UTC: 42 rows into $T/serving/daily.db"
assert_contains out.txt "from features@2001-01-06 output sha256 $features6"
assert_contains out.txt "key $key6"
assert_contains out.txt "run             1 (succeeded), started"
assert_contains out.txt "git unknown"
assert_contains out.txt "nightjar backfill daily.yaml --from 2001-01-04 --to 2001-01-06"
assert_contains out.txt 'source key      cmd echo "features 2001-01-06" >> runs.log'
assert_contains out.txt "dep out/ingest/2001-01-06.txt f $(out_hash ingest 2001-01-06)"
assert_contains out.txt "model           $v5"
assert_contains out.txt "trained by train@2001-01-05 in run 1"
assert_contains out.txt "metrics auc=0.64 log_loss=0.5 brier=0.19"
assert_contains out.txt "training        train@2001-01-05, key $trainkey5"
assert_contains out.txt 'training key    cmd echo "train 2001-01-05" >> runs.log'
assert_contains out.txt "training dates  2001-01-02..2001-01-04 (3)"
assert_contains out.txt "2001-01-02  no snapshot"
assert_contains out.txt "2001-01-04  snapshot sha256 $snap4 (stage snap, run 1,"
assert_not_contains out.txt "later"
assert_contains out.txt "gate            promoted by train@2001-01-05 in run 1"
assert_contains out.txt "over ${v4:0:12} (passed)"
assert_contains out.txt "auc >= 0.6: 0.64 >= 0.6 → PASS"
expect_exit 0 "$NJ" lineage daily.yaml --table risk --ds 2001-01-06 --json
py_json "assert d['publication']['rows'] == 42 and d['source']['hash'] == '$features6'; \
assert d['run']['id'] == 1 and d['run']['git_commit'] is None; \
assert d['model']['version'] == '$v5' and d['training']['key'] == '$trainkey5'; \
assert [t['ds'] for t in d['training_dates']] == ['2001-01-02', '2001-01-03', '2001-01-04']; \
assert d['training_dates'][0]['snapshot'] is None; \
assert d['training_dates'][2]['snapshot']['hash'] == '$snap4'; \
assert d['gate']['decision'] == 'promoted' and d['gate']['checks']['passed'] is True" < out.txt
ok "lineage: publication, run, source key, model, training key, snapshots, gate"

expect_exit 0 "$NJ" lineage daily.yaml --table risk --ds 2001-01-05
assert_contains out.txt "run             99: missing from the runs table"
assert_contains out.txt "source key      missing (no key text recorded)"
assert_contains out.txt "model           dead0000"
assert_contains out.txt ": missing from the registry"
assert_contains out.txt "training        missing"
assert_contains out.txt "training dates  missing"
assert_contains out.txt "gate            missing (no gate decision promoted it)"
expect_exit 0 "$NJ" lineage daily.yaml --table risk --ds 2001-01-05 --json
py_json "assert d['run'] is None and d['model'] is None and d['training'] is None; \
assert d['training_dates'] is None and d['gate'] is None" < out.txt
ok "lineage prints missing links as missing"

expect_exit 1 "$NJ" lineage daily.yaml --table risk --ds 2001-01-07
assert_contains err.txt "table 'risk' of 'daily' has no publication for 2001-01-07; published dates (newest first): 2001-01-06, 2001-01-05"
expect_exit 1 "$NJ" lineage daily.yaml --table rsik --ds 2001-01-06
assert_contains err.txt "table 'rsik' of 'daily' was never published (did you mean 'risk'?); published tables: risk"
expect_exit 2 "$NJ" lineage daily.yaml --table risk --ds 2001-13-01
expect_exit 2 "$NJ" lineage daily.yaml --table risk
expect_exit 0 "$NJ" models list daily.yaml
expect_exit 0 "$NJ" models events daily.yaml
expect_exit 0 "$NJ" metrics daily.yaml --json
assert_eq "$(sqlite3 $DB .dump | sha256sum)" "$before" "the looking verbs wrote to the state database"
ok "unknown dates and tables name what exists; looking writes nothing"

# ---- the same verbs on what real gated runs recorded ---------------------------
mkdir real && cd real
cp "$NJ_SRC/fixtures/release/gate.yaml" .
RDB=.nightjar/state.db
alias_of() { sql $RDB "SELECT version FROM model_aliases WHERE alias = '$1'"; }
expect_exit 0 "$NJ" run gate.yaml --date 2024-01-02
r1=$(alias_of champion)
expect_exit 5 "$NJ" run gate.yaml --date 2024-01-03 --param auc=0.50
r2=$(sql $RDB "SELECT candidate FROM gate_decisions WHERE ds = '2024-01-03'")
expect_exit 0 "$NJ" run gate.yaml --date 2024-01-04 --param auc=0.695
r3=$(alias_of champion)
[ "$r3" != "$r1" ] && [ ${#r2} = 64 ] || fail "the gated runs did not promote, hold, promote"

expect_exit 0 "$NJ" models list gate.yaml
assert_eq "$(sed -n 2p out.txt | awk '{print $1, $4, $6, $7, $8}')" \
    "${r3:0:12} train@2024-01-04 champion auc=0.695 rows=10"
assert_eq "$(sed -n 3p out.txt | awk '{print $1, $6}')" "${r2:0:12} -"
assert_eq "$(sed -n 4p out.txt | awk '{print $1, $6}')" "${r1:0:12} previous"
expect_exit 0 "$NJ" metrics gate.yaml
assert_eq "$(sed -n 1p out.txt)" "evaluate (metrics under 'model', judged by the gate)"
assert_eq "$(sed -n 2p out.txt | tr -s ' ')" "DATE RUN auc rows GATE"
assert_eq "$(sed -n 3p out.txt | tr -s ' ')" "2024-01-04 3 0.695 10 promoted ${r3:0:12}"
assert_eq "$(sed -n 4p out.txt | tr -s ' ')" "2024-01-03 2 0.5 10 held ${r2:0:12}: auc >= 0.6: 0.5 >= 0.6 → FAIL; auc >= champion.auc - 0.01: 0.5 >= 0.7 - 0.01 = 0.69 → FAIL"
expect_exit 0 "$NJ" metrics gate.yaml --json
py_json "assert [r['gate']['decision'] for r in d] == ['promoted', 'held', 'promoted']; \
assert d[1]['metrics']['champion']['auc'] == 0.7" < out.txt
expect_exit 0 "$NJ" lineage gate.yaml --table risk --ds 2024-01-04
assert_contains out.txt "publication     #3 at "
assert_contains out.txt "3 rows into $T/real/serving/gated.db"
assert_contains out.txt "nightjar run gate.yaml --date 2024-01-04 --param auc=0.695"
assert_contains out.txt "from score@2024-01-04 output sha256 $(sql $RDB "SELECT source_hash FROM publications WHERE ds = '2024-01-04'")"
assert_contains out.txt "param rows 3"
assert_contains out.txt "model           $r3 (champion)"
assert_contains out.txt "trained by train@2024-01-04 in run 3"
assert_contains out.txt "training key    cmd printf"
assert_contains out.txt "param auc 0.695"
assert_contains out.txt "gate            promoted by evaluate@2024-01-04 in run 3"
assert_contains out.txt "over ${r1:0:12} (passed)"
assert_contains out.txt "auc >= champion.auc - 0.01: 0.695 >= 0.7 - 0.01 = 0.69 → PASS"
ok "real gated runs: list, metrics under the gate's root with its decisions, lineage"

# Rolled back by hand, then a held candidate: the champion brought back
# scores 2024-01-05, and lineage traces it to the gate that promoted it.
expect_exit 0 "$NJ" models rollback gate.yaml
assert_eq "$(cat out.txt)" "champion of 'gated' is now ${r1:0:12} (was ${r3:0:12}); previous is now none"
expect_exit 5 "$NJ" run gate.yaml --date 2024-01-05 --param auc=0.50
assert_eq "$(alias_of champion)" "$r1"
expect_exit 0 "$NJ" lineage gate.yaml --table risk --ds 2024-01-05
assert_contains out.txt "model           $r1 (champion)"
assert_contains out.txt "gate            promoted by evaluate@2024-01-02 in run 1"
expect_exit 0 "$NJ" lineage gate.yaml --table risk --ds 2024-01-04
assert_eq "$(grep '^model ' out.txt)" "model           $r3" "rolled back from, it has no alias"
cd ..
ok "after a rollback the old champion scores and its lineage names the gate that promoted it"

expect_exit 0 "$NJ" --help
assert_contains out.txt "  models     "
assert_contains out.txt "  lineage    "
for v in "models" "metrics" "lineage"; do
    expect_exit 0 "$NJ" $v --help
    assert_contains out.txt "usage: nightjar $v"
done
ok "the verbs are in nightjar --help and have their own"
finish
