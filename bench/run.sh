#!/usr/bin/env bash
# Run benchmark: `layers run --rm IMAGE /bin/true` on the busybox fixture image and the
# python bench image (bench/pull.sh builds it), against `crun run` and `runc run` on an
# OCI bundle made by `umoci unpack`, `bwrap --unshare-all` and `unshare -fpmiu
# --mount-proc` + chroot over the unpacked rootfs, and `podman run --rm --network=none`.
# `layers` runs twice: with Docker's default network (a bridge, a veth pair per
# container) and with `--network none` (what bwrap --unshare-all has: a namespace
# with only lo), the one held to bwrap (issue 30: <= 1.0x). Tools interleaved (each
# round starting at the next tool), stores on tmpfs, medians of ROUNDS runs each.
# Then where layers' time goes: 21 runs each way with LAYERS_PHASES set, each phase's
# median (from the mark before it; "main" is bash's fork and exec of layers up to
# its main(), "end" its exit until bash sees it).
#
# usage: bench/run.sh [ROUNDS]   (default 30; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-30}
source "$here/lib.sh"
ensure_packages podman crun runc bubblewrap umoci skopeo python3
build_layers
# The default bridge, its veths and its nftables table live and die in a network
# namespace of the bench's own, never in the machine's.
enter_own_netns "$@"
bash "$repo/fixtures/build.sh" >/dev/null
fresh_scratch run
P=(podman --root "$scratch/podman" --runroot /run/lrb-p --storage-driver overlay)
# crun refuses this hybrid cgroup layout without a v1 hugetlb hierarchy (ANCHORS.md).
hugetlb_mounted=
if ! mountpoint -q /sys/fs/cgroup/hugetlb; then
  mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb none /sys/fs/cgroup/hugetlb && hugetlb_mounted=1
fi
cleanup() {
  "${P[@]}" system reset -f >/dev/null 2>&1 || true
  [ -n "$hugetlb_mounted" ] && umount /sys/fs/cgroup/hugetlb 2>/dev/null || true
  rm -rf "$scratch" /run/lrb-p
}
trap cleanup EXIT

declare -A layout=([busybox]="$repo/fixtures/cache/oci:layered")
if [ -e "$here/cache/pull-oci/.complete" ]; then layout[python]="$here/cache/pull-oci:python"; fi
for img in "${!layout[@]}"; do
  skopeo copy --quiet "oci:${layout[$img]}" "oci:$scratch/oci-$img:$img"
  "$layers" --root "$scratch/layers" load -q -i "$scratch/oci-$img" >/dev/null
  "${P[@]}" tag "$("${P[@]}" pull -q "oci:$scratch/oci-$img:$img")" "localhost/$img:latest"
  umoci unpack --image "$scratch/oci-$img:$img" "$scratch/bundle-$img" >/dev/null
  # The command, and no terminal: the bundle runs /bin/true like the others.
  python3 - "$scratch/bundle-$img/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]; c["process"]["terminal"] = False
json.dump(c, open(p, "w"))
PY
done

results="$scratch/results"; : >"$results"
# Each round starts at a different tool: whoever runs right after a cgroup write gets
# the kernel's cgroup lock cheaply (its RCU grace period already passed), so a fixed
# order would favour the tool behind a fixed neighbour.
tools=(layers layers-none crun runc bwrap unshare podman)
run_tool() { # tool img round
  local b="$scratch/bundle-$2"
  case $1 in
    layers) time_it "$2:layers" "$layers" --root "$scratch/layers" run --rm "localhost/$2" /bin/true ;;
    layers-none) time_it "$2:layers-none" "$layers" --root "$scratch/layers" run --rm --network none "localhost/$2" /bin/true ;;
    crun) time_it "$2:crun" crun run -b "$b" "lrb-$3" ;;
    runc) time_it "$2:runc" runc run -b "$b" "lrb-$3" ;;
    bwrap) time_it "$2:bwrap" bwrap --bind "$b/rootfs" / --proc /proc --dev /dev --unshare-all /bin/true ;;
    unshare) time_it "$2:unshare" unshare -fpmiu --mount-proc="$b/rootfs/proc" chroot "$b/rootfs" /bin/true ;;
    podman) # podman is slow: a third of the rounds
      if [ $(($3 % 3)) -eq 1 ]; then
        time_it "$2:podman" "${P[@]}" run --rm --network=none --runtime crun "localhost/$2" /bin/true
      fi ;;
  esac
}
for r in $(seq "$rounds"); do
  for img in "${!layout[@]}"; do
    for i in "${!tools[@]}"; do
      run_tool "${tools[$(((i + r) % ${#tools[@]}))]}" "$img" "$r"
    done
  done
done

awk "$MEDIAN_AWK"'
  { t[$1] = t[$1] " " $2 }
  END {
    split("busybox python", imgs, " ")
    for (k = 1; k <= 2; k++) {
      img = imgs[k]; if (!((img ":layers") in t)) continue
      printf "\n== run --rm %s /bin/true (tmpfs), medians ==\n", img
      split("layers layers-none crun runc bwrap unshare podman", tools, " ")
      for (i = 1; i <= 7; i++) printf "%-12s %8.1f ms\n", tools[i], median(t[img ":" tools[i]]) * 1000
      printf "layers / crun run   = %.2fx (target <= 2)\n", median(t[img ":layers"]) / median(t[img ":crun"])
      printf "layers / podman run = %.3fx (target <= 0.1)\n", median(t[img ":layers"]) / median(t[img ":podman"])
      printf "layers --network none / bwrap --unshare-all = %.2fx (target <= 1.0)\n", median(t[img ":layers-none"]) / median(t[img ":bwrap"])
      printf "layers (bridge) / bwrap --unshare-all       = %.2fx (a veth pair and a lease more than bwrap does)\n", median(t[img ":layers"]) / median(t[img ":bwrap"])
    }
  }' "$results"

for net in bridge none; do
  phases="$scratch/phases-$net"; : >"$phases"
  for _ in $(seq 21); do
    echo "begin $EPOCHREALTIME" >>"$phases"
    LAYERS_PHASES="$phases" "$layers" --root "$scratch/layers" run --rm --network "$net" localhost/busybox /bin/true
    echo "end $EPOCHREALTIME" >>"$phases"
  done
  printf "\n== where layers run --rm --network %s busybox /bin/true spends its time (medians of 21) ==\n" "$net"
  awk -f <(echo "$MEDIAN_AWK") -f "$here/phases.awk" "$phases"
done
