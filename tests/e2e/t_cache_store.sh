# The object store under stress: a corrupted object is detected and the stage
# recomputed; two pipelines share one cache directory at the same time; gc
# keeps what the latest run needs and removes an orphan; verify --repair.
. "$(dirname "$0")/lib.sh"
cp -r "$NJ_SRC/fixtures/cache/." .
count() { grep -c "^$1\$" runs.log || true; }
CACHE=.nightjar/cache
object_of() { local h; h=$(sha256sum "$1" | cut -d' ' -f1); echo "$CACHE/objects/sha256/${h:0:2}/${h:2}"; }

expect_exit 0 "$NJ" run cache.yaml
obj=$(object_of models/model.txt)
[ -f "$obj" ] || fail "the model is not in the object store at $obj"
chmod u+w "$obj"; echo "tampered" > "$obj"
rm models/model.txt
expect_exit 0 "$NJ" run cache.yaml
assert_eq "$(count train)" 2 "a corrupt cached model must be recomputed"
assert_eq "$(head -1 models/model.txt)" "l2=0.1"
assert_contains err.txt "is corrupt"
ok "a corrupted object is refused and the stage recomputed"

expect_exit 0 "$NJ" verify cache.yaml
assert_contains out.txt "0 corrupt, 0 entries broken"
ok "verify passes on a sound cache"

# gc: an orphan object, made to look two hours old, goes; the latest run's stay.
echo "orphan" > orphan.txt
orphan=$(object_of orphan.txt)
mkdir -p "$(dirname "$orphan")"; cp orphan.txt "$orphan"; touch -d '2 hours ago' "$orphan"
expect_exit 0 "$NJ" gc cache.yaml --keep-runs 1 --dry-run
assert_contains out.txt "would remove 1 object"
[ -f "$orphan" ] || fail "--dry-run removed something"
expect_exit 0 "$NJ" gc cache.yaml --keep-runs 1
assert_contains out.txt "removed 1 object"
[ ! -e "$orphan" ] || fail "gc kept the orphan"
rm -rf data models reports
expect_exit 0 "$NJ" run cache.yaml
assert_eq "$(wc -l < runs.log | tr -d ' ')" 5 "after gc every output of the latest run is restorable"
ok "gc removes the orphan and keeps the latest run's objects"

# verify --repair: a missing object breaks its entry, which is then dropped.
rm -f "$(object_of models/model.txt)"
expect_exit 1 "$NJ" verify cache.yaml
assert_contains out.txt "entries broken (run with --repair)"
expect_exit 0 "$NJ" verify cache.yaml --repair
assert_contains out.txt "removed 1 broken cache entries"
ok "verify finds and repairs a missing object"

# Two pipelines in two workspaces share one cache directory, concurrently.
mkdir -p one two shared
for d in one two; do
    cp -r "$NJ_SRC/fixtures/cache/." $d/
    sed -i "s/pipeline: cachetest/pipeline: $d/" $d/cache.yaml
    for i in $(seq 200); do echo "$i,$d$i"; done >> $d/input/raw.csv
done
NIGHTJAR_CACHE=$T/shared "$NJ" run one/cache.yaml >one.log 2>&1 & a=$!
NIGHTJAR_CACHE=$T/shared "$NJ" run two/cache.yaml >two.log 2>&1 & b=$!
wait $a || { cat one.log; fail "pipeline one failed"; }
wait $b || { cat two.log; fail "pipeline two failed"; }
for d in one two; do
    assert_eq "$(cat $d/data/table.csv)" "$(sort $d/input/raw.csv)" "$d's table"
    assert_eq "$(head -1 $d/models/model.txt)" "l2=0.1"
done
[ -d shared/objects/sha256 ] || fail "the shared cache was not used"
[ ! -d one/.nightjar/cache ] || fail "NIGHTJAR_CACHE was ignored"
ok "two pipelines share one cache directory at the same time"
finish
