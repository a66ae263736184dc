# The command line: selection flags, dry runs, params that cannot inject shell,
# env, a missing declared output, history/logs/dag/validate, and exit codes.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/runner/chain.yaml" .
DB=.nightjar/state.db

expect_exit 1 "$NJ" run chain.yaml --date 2001-03-01
assert_contains err.txt "stage 'forgetful' did not write declared output 'out/never.txt'"
assert_eq "$(head -1 models/model.txt)" "l2=0.1 mode=fast label=x; echo INJECTED"
assert_eq "$(cat reports/report.txt | tr -d ' ')" "3"
assert_eq "$(sql $DB "SELECT ds FROM runs WHERE id=1")" "2001-03-01"
ok "a param is passed as one quoted word; env reaches the stage; missing output fails"

expect_exit 0 "$NJ" run chain.yaml --dry-run --from train
assert_eq "$(cat out.txt)" "$(printf 'would run 2 stages for %s:\n  train\n  report <- train' "$(date +%F)")"
expect_exit 0 "$NJ" run chain.yaml --dry-run --until train
assert_contains out.txt "  prepare"
assert_contains out.txt "  train <- prepare"
assert_not_contains out.txt "report"
ok "--from and --until select downstream and upstream"

rm models/model.txt
expect_exit 0 "$NJ" run chain.yaml --only train
assert_eq "$(sql $DB "SELECT group_concat(stage) FROM stage_runs WHERE run_id=2")" "train"
[ -s models/model.txt ] || fail "--only train did not run train"
rm data/table.csv
expect_exit 1 "$NJ" run chain.yaml --only report --only train
assert_contains err.txt "FAILED train: dep 'data/table.csv' does not exist" 
ok "--only runs just the named stages and fails clearly when an input is missing"

expect_exit 2 "$NJ" run chain.yaml --only trian
assert_contains err.txt "nightjar: error: run: unknown stage 'trian' (did you mean 'train'?)"
expect_exit 2 "$NJ" run chain.yaml --jobz 2
assert_contains err.txt "unknown option '--jobz' (did you mean '--jobs'?)"
expect_exit 2 "$NJ" run chain.yaml -j 0
expect_exit 2 "$NJ" run chain.yaml --date 2001-02-30
assert_contains err.txt "invalid date '2001-02-30'"
expect_exit 2 "$NJ" run
expect_exit 2 "$NJ" run missing.yaml
assert_contains err.txt "cannot read pipeline 'missing.yaml'"
expect_exit 2 "$NJ" rnu chain.yaml
assert_contains err.txt "unknown verb 'rnu' (did you mean 'run'?)"
ok "usage errors exit 2 with a suggestion"

expect_exit 0 "$NJ" history chain.yaml
assert_eq "$(grep -c '^ *[0-9]' out.txt)" 3
expect_exit 0 "$NJ" history chain.yaml --last 1 --json
assert_contains out.txt '"run_id": 3'
assert_not_contains out.txt '"run_id": 2'
expect_exit 0 "$NJ" logs chain.yaml train --run 1
expect_exit 1 "$NJ" logs chain.yaml report --run 2
assert_contains err.txt "stage 'report' did not run in run 2"
ok "history and logs"

expect_exit 0 "$NJ" dag chain.yaml
assert_eq "$(cat out.txt)" "$(printf 'prepare\ntrain <- prepare\nreport <- train\nforgetful <- prepare')"
expect_exit 0 "$NJ" dag chain.yaml --dot
assert_contains out.txt 'digraph'
expect_exit 0 "$NJ" validate chain.yaml
assert_contains out.txt "pipeline 'chain' is valid: 4 stages"
ok "dag and validate"

printf 'pipeline: bad\nstages:\n  a:\n    cmd: x\n    needs: [b]\n  b:\n    cmd: y\n    needs: [a]\n' > cycle.yaml
expect_exit 3 "$NJ" run cycle.yaml
assert_contains err.txt "cycle.yaml:3:3: dependency cycle: a -> b -> a"
[ ! -e .nightjar/state.db ] || [ "$(sql $DB "SELECT count(*) FROM runs WHERE pipeline='bad'")" = 0 ] \
    || fail "an invalid pipeline was recorded as a run"
ok "an invalid pipeline exits 3 and runs nothing"

expect_exit 0 "$NJ" --version
assert_contains out.txt "nightjar "
expect_exit 0 "$NJ" run --help
assert_contains out.txt "exit codes:"
finish
