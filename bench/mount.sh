#!/usr/bin/env bash
# Container benchmark, stores on tmpfs, tools interleaved, medians:
#  1. create + mount a container of the 5-layer python image (bench/pull.sh builds it)
#     and of a 100-layer image: `layers mount IMAGE` (one command: it creates the
#     container) against `podman create` + `podman mount`;
#  2. commit a container whose upper dir holds 10,000 new files (~100 MB of text):
#     `layers commit` against `podman commit` and `buildah commit`.
# Setup (loading images, filling upper dirs) is not timed.
#
# usage: bench/mount.sh [ROUNDS]   (default 15 for mounts, ROUNDS/3 for commits; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-15}
commit_rounds=$(( (rounds + 2) / 3 ))
source "$here/lib.sh"
ensure_packages podman buildah skopeo umoci python3 time
layout="$here/cache/pull-oci"
[ -e "$layout/.complete" ] || { echo "run bench/pull.sh once first: it builds the python image"; exit 1; }
build_layers
fresh_scratch mount
P=(podman --root "$scratch/podman" --runroot /run/lmb-p --storage-driver overlay)
B=(buildah --root "$scratch/podman" --runroot /run/lmb-p --storage-driver overlay)
L=("$layers" --root "$scratch/layers")
cleanup() {
  "${P[@]}" rm -af >/dev/null 2>&1 || true
  "${B[@]}" rm -a >/dev/null 2>&1 || true
  "${P[@]}" system reset -f >/dev/null 2>&1 || true
  for m in $(findmnt -rn -o TARGET | grep "^$scratch" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$scratch" /run/lmb-p
}
trap cleanup EXIT

# Images: the python image alone, and 100 small layers (Python's tarfile writes them).
skopeo copy --quiet "oci:$layout:python" "oci:$scratch/py:python"
python3 "$repo/tests/support/deep_image.py" "$scratch/deep" 100 deep
"${L[@]}" load -q -i "$scratch/py" >/dev/null
"${L[@]}" load -q -i "$scratch/deep" >/dev/null
"${P[@]}" tag "$("${P[@]}" pull -q "oci:$scratch/py:python")" localhost/python:latest
"${P[@]}" tag "$("${P[@]}" pull -q "oci:$scratch/deep:deep")" localhost/deep:latest

results="$scratch/results"; : >"$results"
now() { echo "$EPOCHREALTIME"; }
record() { echo "$1 $(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.5f", b - a }')" >>"$results"; }

for r in $(seq "$rounds"); do
  for img in python deep; do
    # The floor any layers command is held against: starting and ending the process
    # (bash's fork, exec, clap, exit), the same $(...) around it.
    if [ "$img" = python ]; then t0=$(now); v=$("$layers" --version); t1=$(now); record "floor:process" "$t0" "$t1"; fi
    t0=$(now); m=$("${L[@]}" mount "localhost/$img"); t1=$(now)
    [ -e "$m/top" ] || [ -e "$m/usr/bin/python3" ] || { echo "layers mount of $img looks empty"; exit 1; }
    record "$img:layers" "$t0" "$t1"
    "${L[@]}" rm -f "$img-working-container" >/dev/null
    t0=$(now); c=$("${P[@]}" create -q "localhost/$img" true); "${P[@]}" mount "$c" >/dev/null; t1=$(now)
    record "$img:podman" "$t0" "$t1"
    "${P[@]}" rm -f "$c" >/dev/null
  done
done

# 10,000 files of ~10 kB of text each, copied into each tool's container before its commit.
files="$scratch/files"
make_commit_files "$files" 100
for r in $(seq "$commit_rounds"); do
  c=commit-$r
  "${L[@]}" create --name "$c" localhost/python >/dev/null; m=$("${L[@]}" mount "$c")
  cp -a "$files/app" "$m/"; "${L[@]}" umount "$c" >/dev/null; sync
  t0=$(now); "${L[@]}" commit -q "$c" "bench:$r" >/dev/null; t1=$(now)
  record "commit:layers" "$t0" "$t1"
  "${L[@]}" rm -f "$c" >/dev/null; "${L[@]}" rmi "localhost/bench:$r" >/dev/null

  pc=$("${P[@]}" create -q localhost/python true); pm=$("${P[@]}" mount "$pc")
  cp -a "$files/app" "$pm/"; sync
  t0=$(now); "${P[@]}" commit -q "$pc" "localhost/pbench:$r" >/dev/null; t1=$(now)
  record "commit:podman" "$t0" "$t1"
  "${P[@]}" rm -f "$pc" >/dev/null; "${P[@]}" rmi -f "localhost/pbench:$r" >/dev/null

  bc=$("${B[@]}" from -q localhost/python); bm=$("${B[@]}" mount "$bc")
  cp -a "$files/app" "$bm/"; sync
  t0=$(now); "${B[@]}" commit -q "$bc" "localhost/bbench:$r" >/dev/null; t1=$(now)
  record "commit:buildah" "$t0" "$t1"
  "${B[@]}" rm "$bc" >/dev/null; "${P[@]}" rmi -f "localhost/bbench:$r" >/dev/null
done

awk "$MEDIAN_AWK"'
  { t[$1] = t[$1] " " $2 }
  END {
    printf "\n== create + mount (tmpfs), medians of '"$rounds"' rounds ==\n"
    for (k = 1; k <= 2; k++) {
      img = (k == 1) ? "python" : "deep"
      a = median(t[img ":layers"]); b = median(t[img ":podman"])
      printf "%-28s layers %7.1f ms   podman create+mount %7.1f ms   ratio %.3fx (target: layers <= 3 ms)\n", img (k == 1 ? " (5 layers)" : " (100 layers)"), a * 1000, b * 1000, a / b
    }
    printf "floor: layers --version in $(...), process start and exit alone: %.1f ms\n", median(t["floor:process"]) * 1000
    a = median(t["commit:layers"]); p = median(t["commit:podman"]); b = median(t["commit:buildah"])
    printf "\n== commit of 10,000 new files, ~100 MB (tmpfs), medians of '"$commit_rounds"' rounds ==\n"
    printf "layers %.3f s   podman commit %.3f s   buildah commit %.3f s\n", a, p, b
    printf "layers / buildah commit = %.2fx (target <= 0.5)   layers / podman commit = %.2fx\n", a / b, a / p
  }' "$results"
