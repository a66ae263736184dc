# The reference pipeline, pipelines/flights.yaml, end to end on the committed
# fixture of real flights: predictions with plausible probabilities, a model
# that beats the base rate, a snapshot per date, and a second run that
# recomputes nothing; the gate judges each date's model against the champion
# that the day before promoted, and the predictions are published.
. "$(dirname "$0")/lib.sh"
cp "$NJ_SRC/pipelines/flights.yaml" .
P=(--param "landing=$NJ_SRC/fixtures/flights" --param "bin=$NJ_BUILD/stages")

expect_exit 0 "$NJ" run flights.yaml --date 2001-02-09 -j2 "${P[@]}"
champion=$(sql .nightjar/state.db "SELECT version FROM model_aliases WHERE alias = 'champion'")
[ -n "$champion" ] || fail "the first date's model should pass the absolute rules"
expect_exit 0 "$NJ" run flights.yaml --date 2001-02-10 -j2 "${P[@]}"
pred=out/predictions/2001-02-10.csv
assert_eq "$(head -1 $pred)" "flight_id,dep_time,origin,destination,p_delay,model_version"
rows=$(($(wc -l < $pred) - 1))
[ "$rows" -gt 900 ] || fail "only $rows predictions for 2001-02-11"
bad=$(awk -F, 'NR > 1 && !($5 > 0 && $5 < 1)' $pred | wc -l)
assert_eq "$bad" 0 "every probability lies in (0, 1)"
assert_eq "$(cut -d, -f1 $pred | sed 1d | sort | uniq -d | wc -l)" 0 "one prediction per flight"
auc=$(grep -o '"auc": *[0-9.]*' out/metrics/2001-02-10.json | head -1 | grep -o '[0-9.]*$')
awk -v a="$auc" 'BEGIN { exit !(a > 0.5) }' || fail "model AUC $auc is not above the base rate's 0.5"
grep -q "\"champion\": {\"path\": \"[^\"]*/cache/objects/sha256/${champion:0:2}/${champion:2}\"" \
    out/metrics/2001-02-10.json || fail "the champion was not what the gate judged against"
assert_contains err.txt "gate evaluate@2001-02-10: candidate"
published=$(sql serving/flights.db "SELECT rows FROM nightjar_publications WHERE ds = '2001-02-10'")
assert_eq "$published" "$(($(wc -l < $pred) - 1))" "every prediction is published"
assert_eq "$(sql serving/flights.db "SELECT count(*) FROM flight_delay_risk_latest")" "$published"
[ -s out/snapshots/2001-02-10.tar.zst ] || fail "no snapshot of the date"
ok "flights.yaml predicts 2001-02-11 ($rows flights, AUC $auc)"

expect_exit 0 "$NJ" run flights.yaml --date 2001-02-10 -j2 "${P[@]}"
assert_contains err.txt "74 up_to_date"
ok "a second run recomputes nothing"

expect_exit 2 "$NJ" run flights.yaml --param l3=0.5
assert_contains err.txt "--param: pipeline 'flights' has no param 'l3' (did you mean 'l2'?)"
ok "--param names an existing param"
finish
