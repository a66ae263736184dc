# A second run on the same workspace exits 75 naming the holder, or waits for
# it with --wait-lock.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/runner/slow.yaml" .

SLOW_SECONDS=3 "$NJ" run slow.yaml >/dev/null 2>&1 &
holder=$!
for _ in $(seq 100); do [ -s first.pid ] && break; sleep 0.1; done
[ -s first.pid ] || fail "the first run never started its stage"

expect_exit 75 "$NJ" run slow.yaml
assert_contains err.txt "another run (pid $holder, started"
assert_contains err.txt "holds '$T/.nightjar/lock'"
ok "second run exits 75 and names the holder"

SLOW_SECONDS=0 expect_exit 0 "$NJ" run slow.yaml --wait-lock 30
wait $holder
assert_eq "$(sqlite3 .nightjar/state.db "SELECT group_concat(status, ' ') FROM runs ORDER BY id")" \
          "succeeded succeeded"
ok "--wait-lock waits for the holder, then runs"
finish
