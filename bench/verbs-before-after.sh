#!/usr/bin/env bash
# Before/after of a container's verbs one by one: `create`, `start -a`, `rm` (each its
# own process, timed alone), with this tree's release build and an older one, rounds
# interleaved, stores on tmpfs, `--network none`; prints medians and after/before.
# bench/before-after.sh times them through bash together with pull and build.
#
# usage: LAYERS_BEFORE=/path/to/older/layers bench/verbs-before-after.sh [ROUNDS]   (default 40; root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-40}
before=${LAYERS_BEFORE:?LAYERS_BEFORE=/path/to/an/older/layers binary}
source "$here/lib.sh"
build_layers
after=$layers
bash "$repo/fixtures/build.sh" >/dev/null
fresh_scratch verbs-before-after
trap 'rm -rf "$scratch"' EXIT
export LAYERS_DEFAULT_NETWORK=none
for b in before after; do
  bin=$before; [ $b = after ] && bin=$after
  "$bin" --root "$scratch/$b" load -q -i "$repo/fixtures/cache/oci" >/dev/null
done
us() { local s=$EPOCHREALTIME; "$@" >/dev/null; local e=$EPOCHREALTIME; echo $(( (${e/./} - ${s/./}) )); }
for i in $(seq "$rounds"); do
  for b in before after; do
    bin=$before; [ $b = after ] && bin=$after
    echo "$b create $(us "$bin" --root "$scratch/$b" create --name "c$i" localhost/layered true)"
    echo "$b start $(us "$bin" --root "$scratch/$b" start -a "c$i")"
    echo "$b rm $(us "$bin" --root "$scratch/$b" rm "c$i")"
  done
done >"$scratch/results"
printf "%-8s %12s %12s %8s\n" verb "before (ms)" "after (ms)" ratio
awk "$MEDIAN_AWK"'
  { v[$1, $2] = v[$1, $2] " " $3; verbs[$2] = 1 }
  END { for (w in verbs) { b = median(v["before", w]); a = median(v["after", w]); printf "%-8s %12.2f %12.2f %8.3f\n", w, b / 1000, a / 1000, a / b } }' "$scratch/results" | sort
echo "medians of $rounds, interleaved; stores on $scratch; before: $before"
