#!/usr/bin/env bash
# Pull memory, side by side: REV's build (bench/regress.sh builds and caches it) and
# this tree's pull the bench images (python, python2x, python4x, small: bench/pull.sh
# builds them) from a loopback registry into fresh stores on tmpfs, interleaved;
# prints median wall time and peak RSS of each. Peak memory must stay flat from
# python to python4x (issue 30: <= 24 MiB).
#
# usage: bench/pull-memory.sh REV [ROUNDS]   (default 3; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rev=${1:?usage: bench/pull-memory.sh REV [ROUNDS]}
rounds=${2:-3}
source "$here/lib.sh"
ensure_packages docker-registry skopeo time
layout="$here/cache/pull-oci"
[ -e "$layout/.complete-python4x" ] || { echo "run bench/pull.sh once first: it builds the images"; exit 1; }
build_layers
sha=$(git -C "$repo" rev-parse --verify "$rev^{commit}")
base="$repo/target/regress/bin/layers-$sha"
[ -x "$base" ] || { echo "no build of $rev: bench/regress.sh $rev makes it"; exit 1; }
fresh_scratch pull-memory
start_registry
trap 'kill $reg_pid 2>/dev/null; rm -rf "$scratch"' EXIT
for img in python python2x python4x small; do
  skopeo copy --quiet --dest-tls-verify=false "oci:$layout:$img" "docker://127.0.0.1:$port/bench/$img:latest"
done
results="$scratch/results"; : >"$results"
for r in $(seq "$rounds"); do
  for img in python python2x python4x small; do
    for who in base current; do
      bin=$base; [ "$who" = current ] && bin=$layers
      rm -rf "$scratch/store"
      /usr/bin/time -f "%e %M" -o "$scratch/t" "$bin" --root "$scratch/store" pull -q --tls-verify=false \
        "127.0.0.1:$port/bench/$img:latest" >/dev/null
      echo "$img $who $(cat "$scratch/t")" >>"$results"
    done
  done
done
# The floor: a pull that moves no layer (the image is already there) still maps the
# binary's code, starts the runtime and the HTTP client and opens the store; what a
# pull holds beyond it is its layers in flight.
"$layers" --root "$scratch/store" pull -q --tls-verify=false "127.0.0.1:$port/bench/small:latest" >/dev/null
for r in $(seq "$rounds"); do
  /usr/bin/time -f "%M" -o "$scratch/t" "$layers" --root "$scratch/store" pull -q --tls-verify=false \
    "127.0.0.1:$port/bench/small:latest" >/dev/null
  echo "again current 0 $(cat "$scratch/t")" >>"$results"
done
echo "== pull, $rev (base) against this tree, medians of $rounds =="
awk "$MEDIAN_AWK"'
  { w[$1 " " $2] = w[$1 " " $2] " " $3; m[$1 " " $2] = m[$1 " " $2] " " $4 }
  END {
    printf "%-10s %12s %12s %14s %14s\n", "image", "base wall s", "cur wall s", "base RSS MiB", "cur RSS MiB"
    split("python python2x python4x small", imgs, " ")
    for (i = 1; i <= 4; i++) { k = imgs[i]
      printf "%-10s %12.2f %12.2f %14.1f %14.1f\n", k, median(w[k " base"]), median(w[k " current"]), median(m[k " base"]) / 1024, median(m[k " current"]) / 1024 }
    printf "floor: a pull that moves no layer peaks at %.1f MiB (this tree); target <= 24 MiB, flat\n", median(m["again current"]) / 1024
  }' "$results"
