#!/usr/bin/env bash
# An A/B of two node binaries on a shared, drifting machine: run.sh's scenarios for each in
# turn, ROUNDS times, the order alternating (A B, B A, ...) so a drift in the machine's
# speed does not favour one side; then loadtest/ab.py sets the rounds side by side
# (means, change, rounds won, change against each run's own nginx) in
# loadtest/results/DATE-ab.md.
#
#   cp target/release/outpost /tmp/outpost-a     # build, copy, change, build, copy again
#   bash loadtest/ab.sh /tmp/outpost-a /tmp/outpost-b            # hello cache-1k pass, 4 rounds
#   ROUNDS=6 DURATION=8s bash loadtest/ab.sh /tmp/outpost-a /tmp/outpost-b pass
#
# Both binaries run against the guests and configuration of the current checkout.
set -euo pipefail
if [ $# -lt 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
    echo "usage: bash loadtest/ab.sh BINARY_A BINARY_B [SCENARIO...] (both executable node binaries)" >&2
    exit 2
fi
a=$(realpath "$1"); b=$(realpath "$2"); shift 2
cd "$(dirname "$0")/.."
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(hello cache-1k pass)
ROUNDS=${ROUNDS:-4}

# One run of BINARY; prints the path of its report.
run() {
    local out report
    out=$(BENCH=0 OUTPOST_BIN=$1 bash loadtest/run.sh "${scenarios[@]}") || { echo "$out" >&2; return 1; }
    report=$(sed -n 's/^report: \(.*\.md\), plot: .*/\1/p' <<<"$out")
    [ -n "$report" ] || { echo "$out" >&2; echo "ab: run.sh named no report" >&2; return 1; }
    echo "$report"
}

reports=()
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        ra=$(run "$a"); rb=$(run "$b")
    else
        rb=$(run "$b"); ra=$(run "$a")
    fi
    echo "ab: round $round of $ROUNDS: A $ra, B $rb" >&2
    reports+=("$ra" "$rb")
done
summary="loadtest/results/$(date -u +%Y-%m-%d-%H%M%S)-ab.md"
{ echo "# A/B: ${scenarios[*]}, $ROUNDS rounds, run order alternating (A B, then B A)"; echo
  python3 loadtest/ab.py "$a" "$b" "${reports[@]}"
} > "$summary"
cat "$summary"
echo "ab: summary in $summary" >&2
