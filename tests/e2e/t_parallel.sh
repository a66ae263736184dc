# Independent stages run at the same time under -j2, and one at a time under -j1;
# a stage that needs both starts only after both ended. Checked from the start
# and end times recorded in the state database, not from a stopwatch.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/runner/parallel.yaml" .
DB=.nightjar/state.db

expect_exit 0 "$NJ" run parallel.yaml -j2
overlap() {
    sql $DB "SELECT (SELECT started_ms FROM attempts WHERE stage='left' AND run_id=$1)
                  < (SELECT ended_ms FROM attempts WHERE stage='right' AND run_id=$1)
             AND (SELECT started_ms FROM attempts WHERE stage='right' AND run_id=$1)
                  < (SELECT ended_ms FROM attempts WHERE stage='left' AND run_id=$1)"
}
assert_eq "$(overlap 1)" 1 "left and right overlap with -j2"
ordered=$(sql $DB "SELECT (SELECT started_ms FROM attempts WHERE stage='join' AND run_id=1)
                        >= (SELECT max(ended_ms) FROM attempts WHERE stage IN ('left','right') AND run_id=1)")
assert_eq "$ordered" 1 "join starts after both inputs ended"
assert_eq "$(cat out/both.txt | tr '\n' ' ')" "left right "
ok "-j2 runs independent stages in parallel"

expect_exit 0 "$NJ" run parallel.yaml -j1 --no-cache
assert_eq "$(overlap 2)" 0 "no overlap with -j1"
ok "-j1 runs one stage at a time"
finish
