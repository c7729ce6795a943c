#!/usr/bin/env bash
# Import benchmark: a Debian rootfs tarball (debootstrap --variant=minbase bookworm,
# tar + gzip) imported by `layers import`, `podman import`, GNU `tar -xzf` (the
# floor) and the `oci-image` crate's `apply_layer_file` (the Rust peer; unpack only).
# Tools run interleaved (A B C D, A B C D, ...), each into a fresh directory, with
# stores and scratch on tmpfs for stable ratios (DISK=1 adds a run on disk).
# Prints wall-time medians, peak RSS medians and the ratios; also layers' peak RSS
# on an input twice as large (it must stay flat).
#
# With LAYERS_BEFORE=/path/to/older/layers that binary runs in the same rounds too
# (a hot-path change side by side with the commit before it).
#
# usage: bench/import.sh [ROUNDS]        (default 7; run as root on Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-7}
cache="$here/cache"
mkdir -p "$cache"

source "$here/lib.sh"
ensure_packages podman time pigz

ensure_debian_rootfs
input=$debian_rootfs
double="$cache/debian-rootfs-x2.tar.gz"

build_layers
(cd "$here/oci-image-peer" && cargo build --release -q)
peer="$here/oci-image-peer/target/release/oci-image-peer"

run_suite() { # $1 = scratch dir
  local scratch=$1 results="$1/results"
  rm -rf "$scratch" && mkdir -p "$scratch"
  : >"$results"
  measure() { # tool cmd...
    local tool=$1; shift
    sync
    /usr/bin/time -f "%e %M" -o "$scratch/t" "$@" >/dev/null 2>"$scratch/err" || { echo "$tool failed:"; cat "$scratch/err"; exit 1; }
    echo "$tool $(cat "$scratch/t")" >>"$results"
  }
  for r in $(seq "$rounds"); do
    # The older binary next to this one, first in every other round (its place in the
    # round moved its time by 2x when it ran last, after the 2x input).
    if [ -n "${LAYERS_BEFORE:-}" ] && [ $((r % 2)) = 1 ]; then measure before "$LAYERS_BEFORE" --root "$scratch/before-$r" import -q "$input" bench; fi
    measure layers "$layers" --root "$scratch/layers-$r" import -q "$input" bench
    if [ -n "${LAYERS_BEFORE:-}" ] && [ $((r % 2)) = 0 ]; then measure before "$LAYERS_BEFORE" --root "$scratch/before-$r" import -q "$input" bench; fi
    measure podman podman --root "$scratch/podman-$r" --runroot "/run/lbench-$r" --storage-driver overlay import -q "$input" bench
    mkdir "$scratch/tar-$r" && measure tar tar -xzf "$input" -C "$scratch/tar-$r"
    # layers syncs what it stores (one syncfs); this row is tar held to the same durability.
    mkdir "$scratch/tarsync-$r" && measure tar+sync sh -c 'tar -xzf "$1" -C "$2" && sync -f "$2"' - "$input" "$scratch/tarsync-$r"
    measure oci-image "$peer" "$input" "$scratch/peer-$r"
    measure layers-x2 "$layers" --root "$scratch/layers2-$r" import -q "$double" bench2
    podman --root "$scratch/podman-$r" --runroot "/run/lbench-$r" --storage-driver overlay system reset -f >/dev/null 2>&1 || true
    rm -rf "$scratch"/*-"$r" "/run/lbench-$r"
  done
  awk -v where="$2" '
    { t[$1] = t[$1] " " $2; m[$1] = m[$1] " " $3 }
    function median(s,   a, n, i, j, x) { n = split(s, a, " "); for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] + 0 > x + 0; j--) a[j+1] = a[j]; a[j+1] = x }
      return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
    END {
      printf "\n== import of debian-rootfs.tar.gz (%s), medians of %d rounds ==\n", where, '"$rounds"'
      printf "%-12s %10s %14s\n", "tool", "wall s", "peak RSS MiB"
      split("layers podman tar tar+sync oci-image layers-x2", order, " ")
      for (k = 1; k <= 6; k++) { n = order[k]; wt[n] = median(t[n]); rss[n] = median(m[n]) / 1024; printf "%-12s %10.3f %14.1f\n", n, wt[n], rss[n] }
      printf "\nlayers / tar -xzf      = %.2fx   (target <= 0.35)\n", wt["layers"] / wt["tar"]
      printf "layers / tar -xzf+sync = %.2fx\n", wt["layers"] / wt["tar+sync"]
      printf "layers / podman import = %.2fx   (target <= 0.10)\n", wt["layers"] / wt["podman"]
      printf "layers / oci-image     = %.2fx   (target <= 0.8)\n", wt["layers"] / wt["oci-image"]
      printf "layers / floor         = %.2fx   (floor %.3f s: one-thread inflate + creation over both cores; tar -xzf x 0.35 = %.3f s)\n", wt["layers"] / ENVIRON["IMPORT_FLOOR"], ENVIRON["IMPORT_FLOOR"], wt["tar"] * 0.35
      printf "layers peak RSS: %.1f MiB, on the 2x input: %.1f MiB (target <= 32, flat)\n", rss["layers"], rss["layers-x2"]
      if ("before" in t) printf "layers / before         = %.2fx   (the older binary: %.3f s, %.1f MiB)\n", wt["layers"] / median(t["before"]), median(t["before"]), median(m["before"]) / 1024
    }' "$results"
  rm -rf "$scratch"
}

echo "input: $(du -h "$input" | cut -f1) compressed, $(gzip -dc "$input" | wc -c | numfmt --to=iec) uncompressed, $(tar -tzf "$input" | wc -l) entries"
# The floor (issue 30): the input inflated on one thread from memory to nothing
# (bench/gunzip-floor, layers' own inflater) plus its files' creation on tmpfs spread
# over both cores (GNU tar -xf of the inflated tar, halved); best of 3 each. A gzip
# stream of one member cannot be split: only several members (pigz -i does not make
# them; concatenated gzip files do) could be inflated side by side, which layers does
# not do (it inflates members one after another).
(cd "$here/gunzip-floor" && cargo build --release -q)
members=$(python3 -c 'import sys, zlib
data = open(sys.argv[1], "rb").read(); n = 0
while data:
    d = zlib.decompressobj(31); d.decompress(data); n += 1; data = d.unused_data
print(n)' "$input")
floor_dir=$(mktemp -d /dev/shm/import-floor.XXXXXX)
gzip -dc "$input" >"$floor_dir/in.tar"
gz=999; mk=999
for _ in 1 2 3; do
  gz=$("$here/gunzip-floor/target/release/gunzip-floor" "$input" | awk -v m="$gz" '{ print ($1 < m ? $1 : m) }')
  rm -rf "$floor_dir/x"; mkdir "$floor_dir/x"
  t0=$EPOCHREALTIME; tar --numeric-owner -xpf "$floor_dir/in.tar" -C "$floor_dir/x"; t1=$EPOCHREALTIME
  mk=$(awk -v a="$t0" -v b="$t1" -v m="$mk" 'BEGIN { d = (b - a) / 2; print (d < m ? d : m) }')
done
rm -rf "$floor_dir"
IMPORT_FLOOR=$(awk -v a="$gz" -v b="$mk" 'BEGIN { print a + b }')
export IMPORT_FLOOR
echo "gzip members: $members; floor: inflate $gz s + creation over both cores $mk s = $IMPORT_FLOOR s"
run_suite "${BENCH_DIR:-/dev/shm/layers-bench}" tmpfs
if [ "${DISK:-0}" = 1 ]; then run_suite "$repo/bench/cache/scratch" disk; fi
