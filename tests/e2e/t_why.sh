# `nightjar why` and `run --dry-run --explain`: every reason with its exact text.
. "$(dirname "$0")/lib.sh"
cp -r "$NJ_SRC/fixtures/cache/." .
why() { "$NJ" why cache.yaml "$@" > out.txt 2> err.txt || fail "why failed: $(cat err.txt)"; }
line() { grep -E "^[a-z-]+ +$1 " out.txt | sed -E 's/ +/ /g'; }

why
assert_eq "$(line prepare)" "run prepare never run"
assert_eq "$(line report)" "run report upstream 'train' will run"
ok "never run"

expect_exit 0 "$NJ" run cache.yaml
why
assert_eq "$(line train)" "up-to-date train unchanged"
why train
assert_eq "$(wc -l < out.txt | tr -d ' ')" 1 "why STAGE prints only that stage"
ok "up-to-date"

sed -i 's/l2: 0.1/l2: 0.2/' cache.yaml
why train report
assert_eq "$(line train)" "run train param 'l2' changed 0.1 → 0.2"
assert_eq "$(line report)" "run report upstream 'train' will run"
sed -i 's/l2: 0.2/l2: 0.1/' cache.yaml
why train --param l2=0.3
assert_eq "$(line train)" "run train param 'l2' changed 0.1 → 0.3"

old=$(sha256sum input/raw.csv | cut -c1-6)
echo "d,5" >> input/raw.csv
new=$(sha256sum input/raw.csv | cut -c1-6)
why prepare
assert_eq "$(line prepare)" "run prepare dep 'input/raw.csv' changed (sha256 $old… → $new…)"
printf 'b,2\na,1\nc,3\na,4\n' > input/raw.csv

echo "# tuned" >> bin/train.sh
why train
assert_eq "$(line train)" "run train code 'bin/train.sh' changed"
sed -i '$d' bin/train.sh

sed -i 's/MODE: fast/MODE: slow/' cache.yaml
why report
assert_eq "$(line report)" "run report env 'MODE' changed"
sed -i 's/MODE: slow/MODE: fast/' cache.yaml

sed -i 's/cut -d, -f1/cut -d, -f1,1/' cache.yaml
why features
assert_eq "$(line features)" "run features cmd changed"
sed -i 's/cut -d, -f1,1/cut -d, -f1/' cache.yaml

rm models/model.txt
why train
assert_eq "$(line train)" "cached train output 'models/model.txt' missing"
[ ! -e models/model.txt ] || fail "why must not restore anything"

expect_exit 0 "$NJ" run cache.yaml --dry-run --explain --force train
sed -E 's/ +/ /g' out.txt > explained.txt
assert_contains explained.txt "run train forced"
assert_contains explained.txt "run report upstream 'train' will run"
assert_contains explained.txt "up-to-date prepare unchanged"
ok "every why reason"
finish
