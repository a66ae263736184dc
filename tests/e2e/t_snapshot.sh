# Snapshots: a built-in stage writes one deterministic archive per date,
# stored like any output; identical inputs with other mtimes give the same
# bytes; list and restore; restore refuses a non-empty target.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/fixtures/partition/daily.yaml" .
mkdir landing
for d in $(seq -w 01 09); do echo "day 2001-01-$d" > landing/2001-01-$d.txt; done

expect_exit 0 "$NJ" run daily.yaml --date 2001-01-05 --until snap
[ -s out/snap/2001-01-05.tar.zst ] || fail "no archive written"
first=$(sha256sum out/snap/2001-01-05.tar.zst | cut -d' ' -f1)
ok "the snapshot stage writes an archive"

touch -d '2020-02-02 02:02' out/ingest/2001-01-05.txt
expect_exit 0 "$NJ" run daily.yaml --date 2001-01-05 --until snap --force snap
again=$(sha256sum out/snap/2001-01-05.tar.zst | cut -d' ' -f1)
assert_eq "$again" "$first" "same inputs, other mtime: byte-identical archive"
ok "snapshots are deterministic"

expect_exit 0 "$NJ" snapshot list daily.yaml
assert_contains out.txt "2001-01-05"
assert_contains out.txt "sha256 $first"
expect_exit 0 "$NJ" snapshot list daily.yaml
assert_eq "$(grep -c '^2001-01-05' out.txt)" 2 "both runs that snapshotted 01-05 are listed"
expect_exit 0 "$NJ" snapshot restore daily.yaml --date 2001-01-05 restored
assert_eq "$(cat restored/out/ingest/2001-01-05.txt)" "day 2001-01-05"
expect_exit 1 "$NJ" snapshot restore daily.yaml --date 2001-01-05 restored
expect_exit 1 "$NJ" snapshot restore daily.yaml --date 2001-01-06 other
assert_contains err.txt "stage 'snap' has no snapshot for 2001-01-06"
ok "snapshot list and restore"

# Rebuilding an old date from its snapshot: the landing data changed since,
# but restoring the date's frozen inputs gives byte-identical results.
expect_exit 0 "$NJ" backfill daily.yaml --from 2001-01-03 --to 2001-01-05
features_before=$(sha256sum out/features/2001-01-05.txt | cut -d' ' -f1)
for d in 03 04 05; do echo "corrected 2001-01-$d" > landing/2001-01-$d.txt; done
expect_exit 0 "$NJ" run daily.yaml --date 2001-01-05
[ "$(sha256sum out/features/2001-01-05.txt | cut -d' ' -f1)" != "$features_before" ] \
    || fail "new landing data should change the features"
bf_run=$(sqlite3 .nightjar/state.db "SELECT max(id) FROM runs WHERE args LIKE 'nightjar backfill%'")
for d in 03 04 05; do
    expect_exit 0 "$NJ" snapshot restore daily.yaml --date 2001-01-$d --run "$bf_run" --in-place
done
assert_contains err.txt "restored the 2001-01-05 snapshot of 'snap' (run $bf_run) in place: 1 file"
assert_eq "$(cat out/ingest/2001-01-05.txt)" "day 2001-01-05"
expect_exit 0 "$NJ" run daily.yaml --date 2001-01-05 --from features
assert_eq "$(sha256sum out/features/2001-01-05.txt | cut -d' ' -f1)" "$features_before" \
    "rebuilt from the snapshots: byte-identical"
ok "an old date rebuilt from its snapshots is byte-identical"
finish
