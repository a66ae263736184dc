# kill -9 of the runner mid-run: the next run marks the dead run's attempt
# `crashed`, stops the stage process it left behind, and completes.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/runner/slow.yaml" .
DB=.nightjar/state.db

"$NJ" run slow.yaml >/dev/null 2>&1 &
runner=$!
for _ in $(seq 100); do [ -s first.pid ] && break; sleep 0.1; done
[ -s first.pid ] || fail "the stage never started"
orphan=$(cat first.pid)
kill -KILL $runner
wait $runner 2>/dev/null || true
alive "$orphan" || fail "expected the stage to outlive its killed runner"
rm first.pid

SLOW_SECONDS=0 expect_exit 0 "$NJ" run slow.yaml
assert_contains err.txt "1 attempt of an earlier run that died was marked crashed"
assert_eq "$(sql $DB "SELECT status FROM attempts WHERE run_id=1")" "crashed"
assert_eq "$(sql $DB "SELECT status FROM runs WHERE id=1")" "crashed"
assert_eq "$(sql $DB "SELECT status FROM runs WHERE id=2")" "succeeded"
assert_eq "$(cat out/second.txt)" "done"
sleep 0.2
if alive "$orphan"; then fail "the crashed run's stage $orphan is still running"; fi
ok "crashed attempt recovered, orphan stopped, new run completed"
finish
