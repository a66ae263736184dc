# A stage that fails twice then succeeds: three attempts recorded with their
# exit codes, a backoff delay between them, and the downstream stage runs.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/runner/retry.yaml" .
DB=.nightjar/state.db

expect_exit 0 "$NJ" run retry.yaml
assert_eq "$(sql $DB "SELECT group_concat(status || ':' || exit_code, ' ') FROM
                      (SELECT * FROM attempts WHERE stage='flaky' ORDER BY attempt)")" \
          "failed:7 failed:7 succeeded:0"
assert_eq "$(sql $DB "SELECT status || ':' || attempts FROM stage_runs WHERE stage='flaky'")" "succeeded:3"
assert_eq "$(sql $DB "SELECT status FROM stage_runs WHERE stage='after'")" "succeeded"
assert_eq "$(cat out/copy.txt)" "ok"
assert_contains err.txt "flaky attempt 1 failed: exited with status 7"
assert_contains err.txt "retrying flaky in"
ok "fails twice, succeeds on the third attempt"

# retry_delay 100ms with equal jitter: at least 50ms between attempts 1 and 2,
# at least 100ms between 2 and 3 (the delay doubles).
gap1=$(sql $DB "SELECT b.started_ms - a.ended_ms FROM attempts a, attempts b
                WHERE a.stage='flaky' AND b.stage='flaky' AND a.attempt=1 AND b.attempt=2")
gap2=$(sql $DB "SELECT b.started_ms - a.ended_ms FROM attempts a, attempts b
                WHERE a.stage='flaky' AND b.stage='flaky' AND a.attempt=2 AND b.attempt=3")
[ "$gap1" -ge 45 ] || fail "first retry came after ${gap1}ms, expected >= 50ms"
[ "$gap2" -ge 95 ] || fail "second retry came after ${gap2}ms, expected >= 100ms"
ok "exponential backoff between attempts (${gap1}ms, ${gap2}ms)"

expect_exit 0 "$NJ" logs retry.yaml flaky --attempt 1
assert_contains out.txt "attempt 1"
assert_contains out.txt "not yet"
expect_exit 0 "$NJ" logs retry.yaml flaky
assert_contains out.txt "attempt 3"
ok "each attempt has its own log"
finish
