# Partitions and windows: a window at the start of the range sees only the
# dates that exist; in the middle it sees all; the planner adds the window's
# upstream dates; an unpartitioned stage runs once; --no-upstream refuses an
# incomplete window and names the missing dates.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/partition/daily.yaml" .
mkdir landing
for d in $(seq -w 1 20); do echo "day 2001-01-$d" > landing/2001-01-$d.txt; done
count() { grep -c "^$1\$" runs.log || true; }

expect_exit 0 "$NJ" run daily.yaml --date 2001-01-02
assert_contains err.txt "stage 'features' on 2001-01-02: 1 of the 3 dates of its window on 'ingest' are before the partition start; it sees the other 2"
assert_eq "$(cat out/features/2001-01-02.txt | tr '\n' '|')" "day 2001-01-01|day 2001-01-02|"
assert_eq "$(cat out/model/2001-01-02.txt | tr '\n' '|')" "airports|day 2001-01-01|" \
    "train on 01-02 sees only features of 01-01 (12-30 and 12-31 do not exist)"
assert_eq "$(count 'features 2001-01-01')" 1 "the planner added the window's upstream date"
ok "a window at the start of the partition sees only the dates that exist"

expect_exit 0 "$NJ" run daily.yaml --date 2001-01-10
assert_eq "$(cat out/features/2001-01-10.txt | tr '\n' '|')" "day 2001-01-08|day 2001-01-09|day 2001-01-10|"
assert_eq "$(head -1 out/model/2001-01-10.txt)" "airports"
assert_eq "$(wc -l < out/model/2001-01-10.txt | tr -d ' ')" 10 "lookup + 3 days x 3 lines"
for d in 05 06 07 08 09 10; do assert_eq "$(count "ingest 2001-01-$d")" 1 "ingest 01-$d"; done
assert_eq "$(count lookup)" 1 "an unpartitioned stage runs once for all dates"
ok "a window in the middle sees every date, each upstream date computed once"

expect_exit 0 "$NJ" run daily.yaml --date 2001-01-10 --dry-run
assert_contains out.txt "  train <- lookup, features@2001-01-07, features@2001-01-08, features@2001-01-09"
ok "dry run shows (stage, date) nodes"

mkdir fresh && cp daily.yaml fresh/ && cp -r landing fresh/
(cd fresh && expect_exit 2 "$NJ" run daily.yaml --date 2001-01-10 --no-upstream)
assert_contains fresh/err.txt "--no-upstream: windows are incomplete, these outputs are missing: "
assert_contains fresh/err.txt "features@2001-01-07"
ok "--no-upstream refuses an incomplete window and names the missing dates"

cat > bad.yaml <<'YAML'
pipeline: bad
partition: {start: 2001-01-01}
stages:
  daily:
    cmd: echo x > {{outs.o}}
    outs: {o: "out/{{ds}}/x.txt"}
  summary:
    partitioned: false
    cmd: cat out/*/x.txt > {{outs.o}}
    deps: [out]
    outs: {o: summary.txt}
YAML
expect_exit 3 "$NJ" validate bad.yaml
assert_contains err.txt "bad.yaml:7:3: stage 'summary' (partitioned: false) cannot read partitioned stage 'daily'"
ok "an unpartitioned stage cannot read a partitioned one through a path"
finish
