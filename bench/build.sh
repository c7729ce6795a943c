#!/usr/bin/env bash
# Build benchmark: `layers build` against `buildah bud --isolation chroot --layers` on
# the Dockerfile examples, cold (base image stored, no cache: --no-cache) and warm
# (everything cached), interleaved, stores on tmpfs, medians of ROUNDS runs each.
#
# usage: bench/build.sh [ROUNDS]   (default 10; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-10}
source "$here/lib.sh"
ensure_packages buildah skopeo umoci
build_layers
bash "$repo/fixtures/build.sh" >/dev/null
fresh_scratch build
B=(buildah --root "$scratch/buildah" --runroot /run/lbb-b --storage-driver overlay)
export TMPDIR="$scratch"   # buildah's RUN --mount=type=cache dirs live under it
cleanup() { "${B[@]}" rm -a >/dev/null 2>&1 || true; rm -rf "$scratch" /run/lbb-b; }
trap cleanup EXIT

# The same busybox base in both stores, named `busybox` (the layout tag names it).
skopeo copy --quiet "oci:$repo/fixtures/cache/oci:layered" "oci:$scratch/base:busybox"
"$layers" --root "$scratch/layers" load -q -i "$scratch/base" >/dev/null
"${B[@]}" pull -q "oci:$scratch/base:busybox" >/dev/null
"${B[@]}" tag "$("${B[@]}" images -q | head -1)" localhost/busybox:latest
# And python:3.11 (busybox + Debian's python3) for the python example.
"$layers" --root "$scratch/layers" load -q -i "$repo/fixtures/cache/python" >/dev/null
"$layers" --root "$scratch/layers" tag localhost/python python:3.11
"${B[@]}" tag "$("${B[@]}" pull -q "oci:$repo/fixtures/cache/python:python")" localhost/python:3.11

# A big context: 5,000 small files in 50 dirs and one 100 MiB file, COPY'd whole, where
# a warm build's cost is telling whether the context changed.
big="$scratch/big-context"
make_big_context "$big"
printf 'FROM busybox\nCOPY . /app/\nCMD ["ls", "/app"]\n' >"$big/Dockerfile"
sleep 2.5   # files younger than 2 s are re-hashed each build (they could still change unseen)

# args-env-heredoc is left out: Debian 12's buildah (1.28) has no here-documents in COPY.
examples=(python-app multistage whiteouts cache-mount big-context)
results="$scratch/results"; : >"$results"
for r in $(seq "$rounds"); do
  for ex in "${examples[@]}"; do
    ctx="$repo/Dockerfile-examples/$ex"
    [ "$ex" = big-context ] && ctx="$big"
    # Alternate who goes first.
    if [ $((r % 2)) -eq 0 ]; then order=(layers buildah); else order=(buildah layers); fi
    for tool in "${order[@]}"; do
      case $tool in
        layers)
          time_it "$ex:layers:cold" "$layers" --root "$scratch/layers" build --no-cache -q -t "bench-$ex" "$ctx"
          time_it "$ex:layers:warm" "$layers" --root "$scratch/layers" build -q -t "bench-$ex" "$ctx" ;;
        buildah)
          time_it "$ex:buildah:cold" "${B[@]}" bud --isolation chroot --layers --no-cache -q -t "bench-$ex" "$ctx"
          time_it "$ex:buildah:warm" "${B[@]}" bud --isolation chroot --layers -q -t "bench-$ex" "$ctx" ;;
      esac
    done
  done
done

awk "$MEDIAN_AWK"'
  { t[$1] = t[$1] " " $2 }
  END {
    n = split("python-app multistage whiteouts cache-mount big-context", ex, " ")
    printf "%-18s %12s %12s %12s %12s %10s %10s\n", "example", "layers cold", "buildah cold", "layers warm", "buildah warm", "cold ratio", "warm ratio"
    for (k = 1; k <= n; k++) {
      e = ex[k]
      lc = median(t[e ":layers:cold"]); bc = median(t[e ":buildah:cold"])
      lw = median(t[e ":layers:warm"]); bw = median(t[e ":buildah:warm"])
      printf "%-18s %9.1f ms %9.1f ms %9.1f ms %9.1f ms %9.2fx %9.2fx\n", e, lc*1000, bc*1000, lw*1000, bw*1000, lc/bc, lw/bw
    }
    print "targets: cold <= 0.5x buildah; warm <= 50 ms"
  }' "$results"
