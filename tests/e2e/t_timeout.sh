# A timeout kills the attempt's whole process group, including a grandchild
# that ignores SIGTERM; the attempt is recorded `timeout` and retried.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/runner/timeout.yaml" .
DB=.nightjar/state.db

start=$(date +%s)
expect_exit 1 "$NJ" run timeout.yaml --grace 1s
elapsed=$(( $(date +%s) - start ))
assert_eq "$(sql $DB "SELECT group_concat(status, ' ') FROM (SELECT status FROM attempts ORDER BY attempt)")" \
          "timeout timeout"
assert_contains err.txt "timed out after 1.0s"
[ -s grandchild.pid ] || fail "the grandchild never started"
sleep 0.2
for f in grandchild.pid child.pid; do
    pid=$(cat $f)
    if alive "$pid"; then
        fail "process $pid ($f) survived the timeout"
    fi
done
ok "timeout killed child and SIGTERM-ignoring grandchild (run took ${elapsed}s)"
[ "$elapsed" -lt 20 ] || fail "the run took ${elapsed}s: the grace period was not honoured"
finish
