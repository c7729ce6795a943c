#!/usr/bin/env bash
# Runs one bench script twice in a row, first with an older layers binary
# (LAYERS_BEFORE) and then with this tree's release build, and prints both reports,
# one after the other. The anchor tools run in both, so their rows show how far the machine
# drifted between the two runs: compare layers' ratios to them, not only its times.
# (import.sh, sparse.sh and before-after.sh interleave an older binary in the same
# rounds, which is finer; this is for the scripts that do not.)
#
# usage: LAYERS_BEFORE=/path/to/old/layers [LAYERS_AFTER=/path/to/new/layers] bench/compare.sh SCRIPT [ARGS...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ -n "${LAYERS_BEFORE:-}" ] && [ -x "$LAYERS_BEFORE" ] || { echo "set LAYERS_BEFORE to an older layers binary"; exit 2; }
script=$1; shift
[ -f "$here/$script" ] || { echo "no bench script $script in $here"; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The "after" binary: LAYERS_AFTER if given (a build of a commit, so that editing the
# tree while a long comparison runs changes nothing), else this tree's release build.
after=${LAYERS_AFTER:-}
if [ -z "$after" ]; then
  (cd "$here/.." && cargo build --release --locked -q)
  after="$here/../target/release/layers"
fi
# A script's status is shown, not acted on: a report may be whole though a cleanup
# at its exit failed.
LAYERS_BIN=$LAYERS_BEFORE bash "$here/$script" "$@" >"$out/before" 2>&1 && before_rc=0 || before_rc=$?
LAYERS_BIN=$after bash "$here/$script" "$@" >"$out/after" 2>&1 && after_rc=0 || after_rc=$?
echo "######## $script $*, before: $LAYERS_BEFORE (exit $before_rc)"
cat "$out/before"
echo
echo "######## $script $*, after: $after (exit $after_rc)"
cat "$out/after"
[ "$before_rc" = 0 ] && [ "$after_rc" = 0 ]
