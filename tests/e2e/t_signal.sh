# SIGTERM to the runner mid-run: the running stage's process group is
# stopped, the attempt is recorded `interrupted`, and nightjar exits 130.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/runner/slow.yaml" .
DB=.nightjar/state.db

"$NJ" run slow.yaml --grace 2s >out.txt 2>err.txt &
runner=$!
for _ in $(seq 100); do [ -s first.pid ] && break; sleep 0.1; done
[ -s first.pid ] || fail "the stage never started"
stage_pid=$(cat first.pid)
kill -TERM $runner
set +e; wait $runner; code=$?; set -e
assert_eq "$code" 130 "exit code after SIGTERM"
assert_eq "$(sql $DB "SELECT status FROM attempts WHERE stage='first'")" "interrupted"
assert_eq "$(sql $DB "SELECT status || ':' || exit_code FROM runs")" "interrupted:130"
assert_eq "$(sql $DB "SELECT count(*) FROM attempts WHERE stage='second'")" "0"
if alive "$stage_pid"; then fail "stage process $stage_pid survived"; fi
assert_contains err.txt "got signal 15"
ok "SIGTERM interrupts, records 'interrupted' and exits 130"

# The lock was released: a new run goes ahead at once.
SLOW_SECONDS=0 expect_exit 0 "$NJ" run slow.yaml
ok "the lock is free after an interrupted run"
finish
