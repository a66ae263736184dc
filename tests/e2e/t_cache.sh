# The cache: unchanged stages never run again, deleted outputs come back
# without running, a param change reruns exactly the stages that use it and
# their downstream, switching back restores old results, early cutoff, forcing.
. "$(dirname "$0")/lib.sh"
cp -r "$NJ_SRC/fixtures/cache/." .
DB=.nightjar/state.db
count() { grep -c "^$1\$" runs.log || true; }

expect_exit 0 "$NJ" run cache.yaml
assert_eq "$(tr '\n' ' ' < runs.log)" "prepare features train report "
expect_exit 0 "$NJ" run cache.yaml
assert_eq "$(wc -l < runs.log | tr -d ' ')" 4 "a second run executes nothing"
assert_contains err.txt "4 up_to_date"
ok "a cached stage is not executed"

rm models/model.txt
expect_exit 0 "$NJ" run cache.yaml
assert_eq "$(count train)" 1
assert_eq "$(head -1 models/model.txt)" "l2=0.1"
assert_contains err.txt "cached train (output 'models/model.txt' missing)"
assert_eq "$(stat -c %a models/model.txt)" 444 "a restored output is read-only"
ok "a deleted output is restored without running the stage"

sed -i 's/l2: 0.1/l2: 0.2/' cache.yaml
expect_exit 0 "$NJ" run cache.yaml
assert_eq "$(count prepare):$(count features):$(count train):$(count report)" "1:1:2:2" \
    "train and report (which reads the model) rerun; prepare and features do not"
assert_eq "$(head -1 models/model.txt)" "l2=0.2"
assert_eq "$(sql $DB "SELECT reason FROM stage_runs WHERE stage='train' ORDER BY run_id DESC LIMIT 1")" \
          "param 'l2' changed 0.1 → 0.2"
ok "a param change reruns only the stage that uses it"

sed -i 's/l2: 0.2/l2: 0.1/' cache.yaml
expect_exit 0 "$NJ" run cache.yaml
assert_eq "$(count train)" 2 "switching the param back must not recompute"
assert_eq "$(head -1 models/model.txt)" "l2=0.1"
assert_contains err.txt "cached train (param 'l2' changed 0.2 → 0.1)"
ok "switching a param back restores the old output from the cache"

sed -i 's/rounding: 3/rounding: 4/' cache.yaml
expect_exit 0 "$NJ" run cache.yaml
assert_eq "$(count report):$(count train)" "3:2" "only report uses rounding"
ok "a param used through env reruns only its stage"

# Early cutoff: reordering the raw input reruns prepare, whose sorted output
# is byte-identical, so nothing downstream runs.
printf 'a,4\nc,3\na,1\nb,2\n' > input/raw.csv
expect_exit 0 "$NJ" run cache.yaml
assert_eq "$(count prepare):$(count features):$(count train):$(count report)" "2:1:2:3"
ok "early cutoff: identical upstream output leaves downstream alone"

expect_exit 0 "$NJ" run cache.yaml --force train
assert_eq "$(count train):$(count report)" "3:3" "--force reruns train only (its output is identical)"
expect_exit 0 "$NJ" run cache.yaml --force-downstream features
assert_eq "$(count features):$(count train):$(count report)" "2:4:4"
assert_eq "$(sql $DB "SELECT reason FROM stage_runs WHERE stage='report' ORDER BY run_id DESC LIMIT 1")" "forced"
ok "--force and --force-downstream"

expect_exit 0 "$NJ" run cache.yaml --no-cache --only report
assert_eq "$(count report)" 5
ok "--no-cache runs the stage"

# --only with a missing input: restored from the producer's cached output.
rm data/features.csv models/model.txt
expect_exit 0 "$NJ" run cache.yaml --only train --force train
assert_eq "$(count features)" 2 "features must not run"
[ -s data/features.csv ] || fail "the input of train was not restored"
rm -rf .nightjar/cache data/features.csv
expect_exit 1 "$NJ" run cache.yaml --only train
assert_contains err.txt "dep 'data/features.csv' does not exist and"
ok "--only restores a missing input from the cache, or says why it cannot"
finish
