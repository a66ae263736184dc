# A failed stage: its downstream is upstream_failed and never runs, an
# independent branch still finishes, the failure report names the stage, the
# exit status, the command and the log's last lines; --fail-fast stops all.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/runner/failing.yaml" .
DB=.nightjar/state.db

expect_exit 1 "$NJ" run failing.yaml -j2
assert_eq "$(sql $DB "SELECT group_concat(stage || '=' || status, ' ') FROM
                      (SELECT * FROM stage_runs WHERE run_id=1 ORDER BY stage)")" \
          "after=upstream_failed after2=upstream_failed broken=failed side=succeeded side2=succeeded"
assert_eq "$(sql $DB "SELECT reason FROM stage_runs WHERE stage='after2'")" "upstream 'broken' failed"
assert_eq "$(sql $DB "SELECT count(*) FROM attempts WHERE stage IN ('after', 'after2')")" 0
assert_contains err.txt "FAILED broken after 1 attempt: exited with status 3"
assert_contains err.txt "command: echo \"reading input\"; echo \"error: the input is malformed\" >&2; exit 3"
assert_contains err.txt "| error: the input is malformed"
assert_contains err.txt "run 1 failed"
ok "downstream skipped, independent branch finished, failure explained"

expect_exit 0 "$NJ" status failing.yaml
assert_contains out.txt "broken"
grep -E '^after2 +upstream_failed' out.txt >/dev/null || fail "status does not show after2 upstream_failed"
expect_exit 0 "$NJ" status failing.yaml --json
assert_contains out.txt '"stage": "broken", "ds": '
assert_contains out.txt '"status": "failed"'
ok "status shows each stage's latest outcome"

rm -rf out
expect_exit 1 "$NJ" run failing.yaml -j2 --fail-fast --grace 1s --no-cache
assert_eq "$(sql $DB "SELECT status FROM stage_runs WHERE run_id=2 AND stage='broken'")" "failed"
assert_eq "$(sql $DB "SELECT status FROM attempts WHERE run_id=2 AND stage='side'")" "interrupted"
assert_eq "$(sql $DB "SELECT count(*) FROM attempts WHERE run_id=2 AND stage='side2'")" 0
[ ! -e out/side2.txt ] || fail "side2 ran despite --fail-fast"
ok "--fail-fast stops the independent branch too"
finish
