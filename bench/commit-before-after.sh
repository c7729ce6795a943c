#!/usr/bin/env bash
# Before/after of `commit` (a layer's diff written as a tar: the hot path of commit and
# of every build step): a container given 20,000 small files, two hard links, a
# symlink and a 64 MiB file through its mount, then committed; only the commit is
# timed. This tree's release build against an older one, the order alternating each
# round, stores on tmpfs; prints medians and after/before.
#
# usage: LAYERS_BEFORE=/path/to/older/layers bench/commit-before-after.sh [ROUNDS]   (default 16; root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-16}
before=${LAYERS_BEFORE:?LAYERS_BEFORE=/path/to/an/older/layers binary}
source "$here/lib.sh"
build_layers
after=$layers
bash "$repo/fixtures/build.sh" >/dev/null
fresh_scratch commit-before-after
trap 'rm -rf "$scratch"' EXIT
export LAYERS_DEFAULT_NETWORK=none
src="$scratch/src"
mkdir -p "$src/many"
(cd "$src/many" && for i in $(seq 0 19999); do echo "file $i" >"f$i"; done && ln f1 hard1 && ln f2 hard2 && ln -s f3 sym3)
dd if=/dev/urandom of="$src/big" bs=1M count=64 2>/dev/null
for b in before after; do
  bin=$before; [ $b = after ] && bin=$after
  "$bin" --root "$scratch/$b" load -q -i "$repo/fixtures/cache/oci" >/dev/null
done
for i in $(seq "$rounds"); do
  order="before after"; [ $((i % 2)) = 0 ] && order="after before"
  for b in $order; do
    bin=$before; [ $b = after ] && bin=$after
    L=("$bin" --root "$scratch/$b")
    "${L[@]}" create --name "c$i" localhost/layered true >/dev/null
    cp -a "$src/." "$("${L[@]}" mount "c$i")/"
    s=$EPOCHREALTIME
    "${L[@]}" commit -q "c$i" "img$i" >/dev/null
    e=$EPOCHREALTIME
    echo "$b $(( ${e/./} - ${s/./} ))"
    "${L[@]}" rm -f "c$i" >/dev/null
    "${L[@]}" rmi "img$i" >/dev/null
  done
done >"$scratch/results"
printf "%-8s %12s %12s %8s\n" case "before (s)" "after (s)" ratio
awk "$MEDIAN_AWK"'
  { v[$1] = v[$1] " " $2 }
  END { b = median(v["before"]); a = median(v["after"]); printf "%-8s %12.3f %12.3f %8.3f\n", "commit", b / 1e6, a / 1e6, a / b }' "$scratch/results"
echo "medians of $rounds, alternating; stores on $scratch; before: $before"
