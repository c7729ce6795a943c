#!/usr/bin/env bash
# Store budget benchmark: a recorded sequence of pulls (16 images of 4 MiB of content
# each, reused with a skewed popularity, as a CI runner's jobs reuse their bases)
# replayed on a store whose budget is half of what the images need, and on one
# without a budget. Reports the bytes pulled again because of evictions and the
# peak store size (sampled every 20 ms) against the budget. Images are made with GNU
# tar and pushed to a loopback registry (docker-registry) once, outside the timings.
#
# usage: bench/budget.sh [PULLS]   (default 120; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
pulls=${1:-120}
source "$here/lib.sh"
ensure_packages docker-registry
build_layers
fresh_scratch budget
start_registry
trap 'kill $reg_pid 2>/dev/null || true; rm -rf "$scratch"' EXIT
reg="127.0.0.1:$port"

images=16
for i in $(seq "$images"); do
  mkdir -p "$scratch/root-$i"
  head -c $((2 << 20)) /dev/urandom >"$scratch/root-$i/data"
  tar -C "$scratch/root-$i" -cf "$scratch/img-$i.tar" .
  "$layers" --root "$scratch/seed" import -q "$scratch/img-$i.tar" "img-$i:1" >/dev/null
  "$layers" --root "$scratch/seed" push -q "img-$i:1" "$reg/bench/img-$i:1" >/dev/null
done
# The sequence: image i with weight 1/i (a few hot bases, a long tail), fixed seed.
python3 - "$images" "$pulls" >"$scratch/sequence" <<'PY'
import random, sys
n, k = int(sys.argv[1]), int(sys.argv[2])
random.seed(7)
w = [1 / (i + 1) for i in range(n)]
print("\n".join(str(random.choices(range(1, n + 1), w)[0]) for _ in range(k)))
PY

content() { { du -sb "$1/blobs" "$1/layers" 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}'; }
# Replays the sequence on STORE (with max-size BUDGET, or none); prints
# "PEAK_BYTES FETCHES": the largest sampled content size and the pulls that fetched
# their image (each image is one 2 MiB blob: a pull of a stored image fetches nothing).
replay() { # store budget
  local store=$1 budget=$2 fetches=0
  mkdir -p "$store"
  if [ -n "$budget" ]; then echo "max-size = \"$budget\"" >"$store/store.toml"; fi
  ( while :; do content "$store"; sleep 0.02; done ) >"$store.samples" &
  local sampler=$!
  while read -r i; do
    "$layers" --root "$store" pull "$reg/bench/img-$i:1" >"$store.out" 2>&1
    grep -q "image is up to date" "$store.out" || fetches=$((fetches + 1))
  done <"$scratch/sequence"
  kill $sampler 2>/dev/null || true; wait $sampler 2>/dev/null || true
  echo "$(sort -n "$store.samples" | tail -1) $fetches"
}
need=$((images * 4 << 20))
budget=$((need / 2))
t0=$EPOCHREALTIME
read -r peak_u fetch_u < <(replay "$scratch/unbounded" "")
t1=$EPOCHREALTIME
read -r peak_b fetch_b < <(replay "$scratch/budgeted" "$budget")
t2=$EPOCHREALTIME
echo "images: $images x 4 MiB of content; pulls: $pulls; budget: $((budget >> 20)) MiB (half of $((need >> 20)) MiB)"
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }
echo "unbounded store: peak $((peak_u >> 20)) MiB, $fetch_u pulls fetched ($((fetch_u * 2)) MiB), $(secs "$t0" "$t1") s"
echo "budgeted store:  peak $((peak_b >> 20)) MiB against a budget of $((budget >> 20)) MiB (+4 MiB: the image being pulled), $fetch_b pulls fetched ($((fetch_b * 2)) MiB), $(secs "$t1" "$t2") s"
echo "re-downloaded because of evictions: $(((fetch_b - fetch_u) * 2)) MiB ($((fetch_b - fetch_u)) pulls)"
