#!/usr/bin/env bash
# Before/after: the verbs a refactor touches, timed with this tree's release build and
# an older build side by side — `run --rm` attached, `run -d` through its monitor then
# `wait`, `create` + `start -a`, a fresh-store `pull` of a one-layer Debian image from a
# loopback registry, and `build` of Dockerfile-examples/multistage cold (`--no-cache`,
# base stored) and warm. Interleaved (the order alternates each round), stores on tmpfs,
# medians of ROUNDS; prints after/before for each.
#
# usage: LAYERS_BEFORE=/path/to/older/layers bench/before-after.sh [ROUNDS]   (default 9; root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-9}
before=${LAYERS_BEFORE:?LAYERS_BEFORE=/path/to/an/older/layers binary}
source "$here/lib.sh"
ensure_packages docker-registry skopeo python3
build_layers
# The Debian rootfs is made with the network, before the namespace that has none.
ensure_debian_rootfs
# `run` takes the default bridge: in a network namespace of the bench's own.
enter_own_netns "$@"
after=$layers
bash "$repo/fixtures/build.sh" >/dev/null
fresh_scratch before-after
results="$scratch/results"
: >"$results"
start_registry
cleanup() {
  kill "$reg_pid" 2>/dev/null || true
  for b in before after; do
    for d in "$scratch/$b"-*; do umount -R "$d/containers/"*/merged 2>/dev/null || true; done
  done
  rm -rf "$scratch"
}
trap cleanup EXIT

# The Debian image, made by `layers import` and sent with skopeo.
deb=$debian_rootfs
"$after" --root "$scratch/seed" import -q "$deb" localhost/deb:1 >/dev/null
"$after" --root "$scratch/seed" save --format oci -o "$scratch/deb-oci/" localhost/deb:1
skopeo copy --quiet --dest-tls-verify=false "oci:$scratch/deb-oci:1" "docker://127.0.0.1:$port/deb:1"

for b in before after; do
  bin=$before; [ $b = after ] && bin=$after
  "$bin" --root "$scratch/$b-store" load -q -i "$repo/fixtures/cache/oci" >/dev/null
  "$bin" --root "$scratch/$b-store" tag localhost/layered busybox
done
ctx="$repo/Dockerfile-examples/multistage"

round() { # label binary
  local b=$1 bin=$2 s="$scratch/$1-store"
  time_it "$b run" "$bin" --root "$s" run --rm busybox /bin/true
  time_it "$b run-d+wait" bash -c "id=\$('$bin' --root '$s' run -d busybox /bin/true) && '$bin' --root '$s' wait \$id && '$bin' --root '$s' rm \$id"
  time_it "$b create+start" bash -c "id=\$('$bin' --root '$s' create busybox /bin/true) && '$bin' --root '$s' start -a \$id && '$bin' --root '$s' rm \$id"
  rm -rf "$scratch/$b-pull"
  time_it "$b pull" "$bin" --root "$scratch/$b-pull" pull -q "127.0.0.1:$port/deb:1"
  time_it "$b build-cold" "$bin" --root "$s" build -q --no-cache -t ms "$ctx"
  time_it "$b build-warm" "$bin" --root "$s" build -q -t ms "$ctx"
}
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then round before "$before"; round after "$after"; else round after "$after"; round before "$before"; fi
done
printf "%-14s %12s %12s %8s\n" case "before (ms)" "after (ms)" ratio
awk "$MEDIAN_AWK"'
  { split($0, f, " "); t = f[length(f)]; k = $1; sub(/^[a-z]+ /, "", $0); sub(/ [0-9.]+$/, "", $0); v[k, $0] = v[k, $0] " " t; cases[$0] = 1 }
  END {
    for (c in cases) { b = median(v["before", c]); a = median(v["after", c]); printf "%-14s %12.1f %12.1f %8.2f\n", c, b * 1000, a * 1000, a / b }
  }' "$results" | sort
echo "medians of $rounds, interleaved; stores on $scratch; before: $before"
