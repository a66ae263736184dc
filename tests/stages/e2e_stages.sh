#!/usr/bin/env bash
# e2e_stages.sh STAGES_DIR FIXTURE_DIR - run ingest -> features -> train ->
# evaluate -> score by hand on the committed 6-week fixture and check that
# the results are plausible, plus the stages' refusals (bad rows, a missing
# day, label leakage).
set -euo pipefail
S=$1
F=$2
T=$(mktemp -d /tmp/nj-e2e-stages.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
day() { date -u -d "$1 $2 day" +%F; }
window() { for ((i = $3; i >= 1; i--)); do echo "$1/$(day "$2" -$i).csv"; done; }
mkdir -p "$T/norm" "$T/features"

# ingest every day; the real fixture has no malformed rows
for f in "$F"/actuals/*.csv; do
  d=$(basename "$f" .csv)
  "$S/nj-ingest" --in "$f" --out "$T/norm/$d.csv" --quarantine "$T/norm/$d.bad.csv" \
    --date "$d" 2>>"$T/ingest.log"
  [[ $(wc -l <"$T/norm/$d.csv") -eq $(wc -l <"$f") ]] || fail "ingest lost rows of $d"
  [[ $(wc -l <"$T/norm/$d.bad.csv") -eq 1 ]] || fail "ingest quarantined real rows of $d"
done

# a malformed row is quarantined with its line number and reason, not dropped
bad=$T/bad.csv
{ head -50 "$F/actuals/2001-01-02.csv"; echo "x1,2001-01-02 10:00,ATL,SFO,2139,abc"; } >"$bad"
"$S/nj-ingest" --in "$bad" --out "$T/b.csv" --quarantine "$T/b.bad.csv" --max-bad-fraction 0.05 2>/dev/null
grep -qx "51,delay 'abc' is not an integer,x1,2001-01-02 10:00,ATL,SFO,2139,abc" "$T/b.bad.csv" ||
  fail "quarantine line: $(cat "$T/b.bad.csv")"
[[ $(wc -l <"$T/b.csv") -eq 50 ]] || fail "valid rows of the bad file"
# ... but too many of them fail the day, and --out is not written
if "$S/nj-ingest" --in "$bad" --out "$T/c.csv" --quarantine "$T/c.bad.csv" 2>"$T/err"; then
  fail "ingest accepted 2% bad rows with --max-bad-fraction 0.01"
fi
grep -q "1 of 50 rows (2.00%) are malformed" "$T/err" || fail "too-many-bad message: $(cat "$T/err")"
[[ ! -e $T/c.csv ]] || fail "ingest wrote --out for a failed day"
# a missing day names the file
if "$S/nj-ingest" --in "$F/actuals/2001-09-09.csv" --out "$T/m.csv" --quarantine "$T/m.bad" 2>"$T/err"; then
  fail "ingest accepted a missing day"
fi
grep -q "cannot open '$F/actuals/2001-09-09.csv'" "$T/err" || fail "missing-day message: $(cat "$T/err")"

# features for 2001-01-29 .. 2001-02-10 from 28 (or fewer, early on) earlier days
for ((k = 0; k <= 12; k++)); do
  d=$(day 2001-01-29 +$k)
  hist=$(for ((i = 28; i >= 1; i--)); do p=$T/norm/$(day "$d" -$i).csv; [[ -f $p ]] && echo "$p"; done)
  "$S/nj-features" --date "$d" --day "$T/norm/$d.csv" --history $hist \
    --out "$T/features/$d.csv" 2>>"$T/features.log"
done
# label leakage: a history file of the feature date itself is refused
if "$S/nj-features" --date 2001-02-05 --day "$T/norm/2001-02-05.csv" \
  --history "$T/norm/2001-02-04.csv" "$T/norm/2001-02-05.csv" --out "$T/leak.csv" 2>"$T/err"; then
  fail "features accepted a history file of the same date"
fi
grep -q "(label leakage)" "$T/err" || fail "leakage message: $(cat "$T/err")"

# train on 2001-01-29..2001-02-08, champion one day earlier; deterministic
"$S/nj-train" --features $(window "$T/features" 2001-02-09 11) --out "$T/model.bin" 2>/dev/null
"$S/nj-train" --features $(window "$T/features" 2001-02-09 11) --out "$T/again.bin" 2>/dev/null
cmp -s "$T/model.bin" "$T/again.bin" || fail "two fits of the same data differ"
"$S/nj-train" --features $(window "$T/features" 2001-02-08 10) --out "$T/champion.bin" 2>/dev/null
grep -q "^train_date 2001-02-08$" "$T/model.bin" || fail "model lacks its training dates"
[[ $(grep -c "^input [0-9a-f]\{64\} " "$T/model.bin") -eq 11 ]] || fail "model lacks input hashes"

# evaluate on the next day: better than the base rate
"$S/nj-evaluate" --model "$T/model.bin" --champion "$T/champion.bin" \
  --features "$T/features/2001-02-09.csv" --reference $(window "$T/features" 2001-02-09 11) \
  --out "$T/metrics.json" 2>/dev/null
python3 - "$T/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
o = m["overall"]
auc, base = o["model"]["auc"], o["base_rate"]["auc"]
print(f"e2e: AUC model {auc:.4f}, base rate {base:.4f}, champion {o['champion']['auc']:.4f}")
assert auc > 0.5 and auc > base, (auc, base)
assert o["model"]["log_loss"] < o["base_rate"]["log_loss"] + 0.01
assert len(m["by_origin"]) == 10 and m["by_origin"][0]["rows"] >= m["by_origin"][9]["rows"]
assert len(m["drift"]["features"]) == 15
assert sum(b["n"] for b in o["model"]["calibration"]) == m["rows"]
PY

# score the next day's schedule
"$S/nj-score" --model "$T/model.bin" --schedule "$F/schedule/2001-02-11.csv" \
  --history $(window "$T/norm" 2001-02-11 28) --out "$T/pred.csv" 2>/dev/null
version=$(sha256sum "$T/model.bin" | cut -c1-12)
awk -F, -v v="$version" 'NR == 1 { next }
  !($5 > 0 && $5 < 1) { print "p_delay out of (0,1): " $0; bad = 1 }
  $6 != v { print "wrong model_version: " $0; bad = 1 }
  { n++; sum += $5 }
  END { if (n < 500 || sum / n < 0.05 || sum / n > 0.5) { print "implausible mean " sum / n; bad = 1 }
        exit bad }' "$T/pred.csv" || fail "predictions"
[[ $(wc -l <"$T/pred.csv") -eq $(wc -l <"$F/schedule/2001-02-11.csv") ]] || fail "not every flight scored"
# scoring with a history that reaches the scored day is leakage too
if "$S/nj-score" --model "$T/model.bin" --schedule "$F/schedule/2001-02-11.csv" \
  --history "$T/norm/2001-02-11.csv" --out "$T/p2.csv" 2>/dev/null; then
  fail "score accepted history of the scored day"
fi
echo "e2e_stages: ok"
