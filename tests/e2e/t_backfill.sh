# Backfills: one graph for the range (a shared (stage, date) runs once),
# resume after SIGINT runs only the unfinished dates, the three reprocess
# policies, and per-date status.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/partition/daily.yaml" .
mkdir landing
for d in $(seq -w 1 20); do echo "day 2001-01-$d" > landing/2001-01-$d.txt; done
count() { grep -c "^$1\$" runs.log || true; }

expect_exit 0 "$NJ" backfill daily.yaml --from 2001-01-05 --to 2001-01-09 -j2
for d in 02 03 04 05 06 07 08 09; do assert_eq "$(count "ingest 2001-01-$d")" 1 "ingest 01-$d"; done
assert_eq "$(count lookup)" 1
assert_eq "$(grep -c '^train' runs.log)" 5
assert_contains err.txt "backfill 1 succeeded: 5 of 5 dates succeeded"
ok "each shared (stage, date) node runs exactly once"

ls .nightjar/logs/1/ > logs.txt
assert_contains logs.txt "snap@2001-01-05.1.log"
assert_contains logs.txt "snap@2001-01-09.1.log"
assert_not_contains logs.txt "train@" # quiet stages leave no log file
expect_exit 0 "$NJ" logs daily.yaml snap --date 2001-01-07
assert_contains err.txt "# snap 2001-01-07, run 1, attempt 1, succeeded"
assert_contains out.txt "snapshot out/snap/2001-01-07.tar.zst: 1 entries"
expect_exit 0 "$NJ" logs daily.yaml train --date 2001-01-07
assert_eq "$(wc -c < out.txt | tr -d ' ')" 0 "a stage that printed nothing has an empty log"
ok "every (stage, date) has its own log; quiet stages none"

expect_exit 0 "$NJ" status daily.yaml --backfill 1
assert_contains out.txt "5 succeeded, 0 failed, 0 missing, 0 skipped"
ok "status --backfill"

# Interrupt a slow backfill part way, then resume it with the same command.
rm -rf out runs.log .nightjar
SLOW=0.3 "$NJ" backfill daily.yaml --from 2001-01-01 --to 2001-01-12 -j1 >bf.out 2>bf.err &
bf=$!
trained() { local n; n=$(grep -c '^train' runs.log 2>/dev/null || true); echo "${n:-0}"; }
for _ in $(seq 300); do [ "$(trained)" -ge 3 ] && break; sleep 0.1; done
kill -INT $bf
set +e; wait $bf; code=$?; set -e
assert_eq "$code" 130 "an interrupted backfill exits 130"
done_before=$(grep -c '^train' runs.log)
[ "$done_before" -lt 12 ] || fail "the backfill finished before it could be interrupted"
expect_exit 0 "$NJ" backfill daily.yaml --from 2001-01-01 --to 2001-01-12 -j1
assert_contains err.txt "(resumed)"
assert_eq "$(grep -c '^train' runs.log)" 12 "every date trained exactly once over both runs"
for d in $(seq -w 1 12); do assert_eq "$(count "train 2001-01-$d")" 1 "train 01-$d"; done
ok "resume after SIGINT runs only the unfinished dates ($done_before were done)"

# Reprocess policies: date 14 has no landing file, so 14 and the dates whose
# windows need it fail.
rm landing/2001-01-14.txt
expect_exit 1 "$NJ" backfill daily.yaml --from 2001-01-13 --to 2001-01-16
assert_contains err.txt "1 of 4 dates succeeded, 3 failed"
expect_exit 0 "$NJ" backfill daily.yaml --from 2001-01-13 --to 2001-01-16
assert_contains err.txt "0 dates to run, 4 skipped (--reprocess missing)"
echo "day 2001-01-14" > landing/2001-01-14.txt
expect_exit 0 "$NJ" backfill daily.yaml --from 2001-01-13 --to 2001-01-16 --reprocess failed
assert_contains err.txt "3 dates to run, 1 skipped (--reprocess failed)"
assert_contains err.txt "3 of 3 dates succeeded"
before=$(wc -l < runs.log)
expect_exit 0 "$NJ" backfill daily.yaml --from 2001-01-13 --to 2001-01-16 --reprocess all
assert_contains err.txt "4 dates to run, 0 skipped (--reprocess all)"
assert_eq "$(wc -l < runs.log)" "$before" "--reprocess all still uses the cache"
ok "missing, failed and all"

expect_exit 0 "$NJ" backfill daily.yaml --from 2001-01-17 --to 2001-01-19 --backwards --max-active-dates 1 -j2
first=$(grep '^train' runs.log | tail -3 | head -1)
assert_eq "$first" "train 2001-01-19" "--backwards trains the newest date first"
ok "--backwards with --max-active-dates"
finish
