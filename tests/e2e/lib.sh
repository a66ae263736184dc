# lib.sh - helpers for end-to-end tests. Source it first; every test runs in
# a fresh temp directory (removed on exit) and fails on the first error.
#   NJ      the nightjar binary under test
#   NJ_SRC  the source tree (fixtures live in $NJ_SRC/fixtures)
set -euo pipefail
: "${NJ:?set NJ to the nightjar binary}"
: "${NJ_SRC:?set NJ_SRC to the source tree}"
T=$(mktemp -d "${TMPDIR:-/tmp}/nj-e2e-XXXXXX")
trap 'rc=$?; kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"; exit $rc' EXIT
cd "$T"
PASSED=0

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }

# expect_exit CODE CMD...: runs CMD, saving stdout/stderr to out.txt/err.txt.
expect_exit() {
    local want=$1; shift
    set +e
    "$@" >out.txt 2>err.txt
    local got=$?
    set -e
    if [ "$got" != "$want" ]; then
        echo "--- stdout"; cat out.txt; echo "--- stderr"; cat err.txt
        fail "expected exit $want, got $got: $*"
    fi
}
assert_contains() { # FILE TEXT
    grep -qF -- "$2" "$1" || { echo "--- $1:"; cat "$1"; fail "'$1' does not contain '$2'"; }
}
assert_not_contains() {
    if grep -qF -- "$2" "$1"; then echo "--- $1:"; cat "$1"; fail "'$1' contains '$2'"; fi
}
assert_eq() { [ "$1" = "$2" ] || fail "expected '$2', got '$1'${3:+ ($3)}"; }
# sql DB QUERY: prints the result of a query on a state database.
sql() { sqlite3 -batch -noheader "$1" "$2"; }
# alive PID: true if the process exists and is not a zombie. (A killed orphan
# stays a zombie where PID 1 does not reap, as in some containers.)
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case "$state" in Z*) return 1 ;; *) return 0 ;; esac
}
finish() { echo "$PASSED passed, 0 failed"; }
