#!/usr/bin/env bash
# Network benchmark, in a network namespace of its own (nothing is made in the
# machine's): `layers run --rm IMAGE /bin/true` on the default bridge against
# `--network none`, and `podman run --rm` on its default bridge (whatever network
# backend Debian's podman has: CNI here) against its `--network none`; 20 `layers
# run -d` started at once on the bridge against one alone. Tools interleaved, store on
# tmpfs, medians of ROUNDS.
#
# usage: bench/network.sh [ROUNDS]   (default 30; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-30}
source "$here/lib.sh"
ensure_packages podman nftables skopeo
build_layers
bash "$repo/fixtures/build.sh" >/dev/null
if [ -z "${LAYERS_BENCH_IN_NETNS:-}" ]; then
  exec unshare --net env LAYERS_BENCH_IN_NETNS=1 bash "$0" "$@"
fi
ip link set lo up
echo 1 >/proc/sys/net/ipv4/ip_forward
fresh_scratch network
export LAYERS_NETWORK_STATE="$scratch/net"
P=(podman --root "$scratch/podman" --runroot /run/lrb-n --storage-driver overlay)
cleanup() { "${P[@]}" system reset -f >/dev/null 2>&1 || true; rm -rf "$scratch" /run/lrb-n; }
trap cleanup EXIT
L=("$layers" --root "$scratch/layers")
"${L[@]}" load -q -i "$repo/fixtures/cache/oci" >/dev/null
"${P[@]}" tag "$("${P[@]}" pull -q "oci:$repo/fixtures/cache/oci:layered")" localhost/layered:latest
# The bridges exist before the timed rounds (made by the first run of each).
"${L[@]}" run --rm localhost/layered /bin/true
"${P[@]}" run --rm localhost/layered:latest /bin/true >/dev/null 2>&1 || echo "podman's bridge does not work here: its rounds are left out"
podman_ok=$("${P[@]}" run --rm localhost/layered:latest /bin/true >/dev/null 2>&1 && echo 1 || echo)

results="$scratch/results"; : >"$results"
for r in $(seq "$rounds"); do
  time_it "layers:none" "${L[@]}" run --rm --network none localhost/layered /bin/true
  time_it "layers:bridge" "${L[@]}" run --rm localhost/layered /bin/true
  if [ -n "$podman_ok" ]; then
    time_it "podman:none" "${P[@]}" run --rm --network none localhost/layered:latest /bin/true
    time_it "podman:bridge" "${P[@]}" run --rm localhost/layered:latest /bin/true
  fi
done
# 20 at once: each `run -d` returns once its container runs, its address set.
for r in $(seq 5); do
  time_it "one" "${L[@]}" run -d --name solo localhost/layered sleep 30
  "${L[@]}" rm -f solo >/dev/null
  start=$(date +%s%N)
  for i in $(seq 20); do "${L[@]}" run -d --name "p$i" localhost/layered sleep 30 >/dev/null & done
  wait
  echo "twenty $(( ($(date +%s%N) - start) / 1000 ))e-6" >>"$results"
  "${L[@]}" rm -f $(seq -f 'p%g' 20) >/dev/null
done

awk "$MEDIAN_AWK"'
  { t[$1] = t[$1] " " $2 * 1000 }
  END {
    printf "== run --rm busybox /bin/true, medians of '"$rounds"' (ms) ==\n"
    none = median(t["layers:none"]); bridge = median(t["layers:bridge"])
    printf "layers --network none %.2f   layers bridge %.2f   bridge - none = %.2f ms (target <= 3)\n", none, bridge, bridge - none
    if ("podman:bridge" in t) {
      printf "podman --network none %.1f   podman bridge %.1f   layers/podman bridged = %.3fx (target <= 0.1)\n", median(t["podman:none"]), median(t["podman:bridge"]), bridge / median(t["podman:bridge"])
    }
    printf "\n== run -d on the bridge: 20 at once against one alone, medians of 5 ==\n"
    printf "one %.1f ms   twenty at once %.1f ms (all of them)   extra = %.1f ms (target <= 50)\n", median(t["one"]), median(t["twenty"]), median(t["twenty"]) - median(t["one"])
  }' "$results"
