#!/usr/bin/env bash
# Shared build cache benchmark: machine A builds python-app and a big context and
# exports the cache to a loopback registry (docker-registry); machine B, a fresh
# store on tmpfs each round, builds them with --cache-from. Side by side, interleaved:
# layers B with the cache, layers B cold (--no-cache on a fresh store), and
# `buildah bud --layers --cache-from` on fresh storage (A exported with --cache-to).
# Then: a 200-step Dockerfile all cached on a fresh store (the import and every
# lookup, before and between steps), and B's export after one changed step.
#
# usage: bench/ci-cache.sh [ROUNDS]   (default 5; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-5}
source "$here/lib.sh"
ensure_packages buildah skopeo umoci docker-registry time
build_layers
bash "$repo/fixtures/build.sh" >/dev/null
fresh_scratch ci-cache
start_registry
B=(buildah --runroot /run/lcc-b --storage-driver overlay)
cleanup() { kill $reg_pid 2>/dev/null || true; for d in "$scratch"/buildah-*; do [ -d "$d" ] && "${B[@]}" --root "$d" rm -a >/dev/null 2>&1; done; rm -rf "$scratch" /run/lcc-b; }
trap cleanup EXIT
reg="127.0.0.1:$port"

# The bases, as machine images a runner starts with (not timed).
skopeo copy --quiet "oci:$repo/fixtures/cache/oci:layered" "oci:$scratch/base:busybox"
layers_store() { # dir: a fresh store with the bases
  "$layers" --root "$1" load -q -i "$scratch/base" >/dev/null
  "$layers" --root "$1" load -q -i "$repo/fixtures/cache/python" >/dev/null
  "$layers" --root "$1" tag localhost/python python:3.11
}
buildah_store() { # dir
  "${B[@]}" --root "$1" pull -q "oci:$scratch/base:busybox" >/dev/null
  "${B[@]}" --root "$1" tag "$("${B[@]}" --root "$1" images -q | head -1)" localhost/busybox:latest
  "${B[@]}" --root "$1" tag "$("${B[@]}" --root "$1" pull -q "oci:$repo/fixtures/cache/python:python")" localhost/python:3.11
}

big="$scratch/big-context"
make_big_context "$big"
printf 'FROM busybox\nCOPY src/ /src/\nRUN find /src -type f | wc -l > /count\nCOPY big.bin /big.bin\nRUN sha256sum /big.bin > /sum\nCMD ["cat", "/count"]\n' >"$big/Dockerfile"
steps="$scratch/steps-200"
mkdir -p "$steps"
python3 - "$steps/Dockerfile" <<'PY'
import sys
lines = ["FROM busybox"]
for i in range(199):
    lines.append("RUN echo %d > /f%d" % (i, i) if i % 10 == 0 else "ENV V%d=%d" % (i, i))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY

declare -A ctx=([python-app]="$repo/Dockerfile-examples/python-app" [big-context]="$big" [steps-200]="$steps")
# Machine A: builds and exports (layers to /cache/EX:main, buildah to /bcache/EX).
layers_store "$scratch/a"
buildah_store "$scratch/buildah-a"
for ex in python-app big-context steps-200; do
  "$layers" --root "$scratch/a" build -q -t "a-$ex" --cache-to "type=registry,ref=$reg/cache/$ex:main,mode=max" "${ctx[$ex]}" >/dev/null
done
for ex in python-app big-context; do
  "${B[@]}" --root "$scratch/buildah-a" bud --isolation chroot --layers -q --tls-verify=false \
    --cache-to "$reg/bcache/$ex" -t "a-$ex" "${ctx[$ex]}" >/dev/null
done

results="$scratch/results"; : >"$results"
for r in $(seq "$rounds"); do
  for ex in python-app big-context; do
    if [ $((r % 2)) -eq 0 ]; then order=(cached cold buildah); else order=(buildah cold cached); fi
    for who in "${order[@]}"; do
      d="$scratch/b-$who-$r-$ex"
      case $who in
        cached) layers_store "$d"; time_it "$ex:cached" "$layers" --root "$d" build -q -t b --cache-from "$reg/cache/$ex:main" "${ctx[$ex]}" ;;
        cold) layers_store "$d"; time_it "$ex:cold" "$layers" --root "$d" build -q --no-cache -t b "${ctx[$ex]}" ;;
        buildah)
          d="$scratch/buildah-b-$r-$ex"; buildah_store "$d"
          time_it "$ex:buildah" "${B[@]}" --root "$d" bud --isolation chroot --layers -q --tls-verify=false \
            --cache-from "$reg/bcache/$ex" -t b "${ctx[$ex]}"
          "${B[@]}" --root "$d" rm -a >/dev/null 2>&1 || true ;;
      esac
      rm -rf "$d"
    done
  done
  d="$scratch/b-steps-$r"; layers_store "$d"
  time_it "steps-200:cached" "$layers" --root "$d" build -q --cache-from "$reg/cache/steps-200:main" "$steps"
  # One changed step (the last), then the export: only its layer and the cache's config go.
  sed -i "s/^ENV V198=198$/ENV V198=changed-$r/" "$steps/Dockerfile"
  time_it "steps-200:change" "$layers" --root "$d" build -q --cache-from "$reg/cache/steps-200:main" "$steps"
  sed -i "s/^ENV V198=changed-$r$/ENV V198=again-$r/" "$steps/Dockerfile"
  time_it "steps-200:change+export" "$layers" --root "$d" build -q --cache-from "$reg/cache/steps-200:main" \
    --cache-to "type=registry,ref=$reg/cache/steps-200:b$r,mode=max" "$steps"
  sed -i "s/^ENV V198=again-$r$/ENV V198=198/" "$steps/Dockerfile"
  rm -rf "$d"
done

# Where B's time goes: the CPU time layers and the registry spend on cached builds
# (3 each, averaged). They share the cores, so (layers + registry) / cores bounds the
# wall time from below, however the work is scheduled.
reg_ticks() { awk '{ print $14 + $15 }' "/proc/$reg_pid/stat"; }
for ex in python-app big-context; do
  for _ in 1 2 3; do
    d="$scratch/b-cpu-$ex"; layers_store "$d"
    r0=$(reg_ticks)
    /usr/bin/time -f "%U %S" -o "$scratch/cpu" "$layers" --root "$d" build -q -t b --cache-from "$reg/cache/$ex:main" "${ctx[$ex]}" >/dev/null 2>&1
    r1=$(reg_ticks)
    read -r u s <"$scratch/cpu"
    echo "cpu:$ex $u $s $(( r1 - r0 ))" >>"$results"
    rm -rf "$d"
  done
done

awk -v cores="$(nproc)" -v hz="$(getconf CLK_TCK)" "$MEDIAN_AWK"'
  /^cpu:/ { sub("cpu:", "", $1); lu[$1] += ($2 + $3) * 1000 / 3; rg[$1] += $4 * 1000 / hz / 3; next }
  { split($1, k, ":"); t[$1] = t[$1] " " $2 * 1000 }
  END {
    printf "%-12s %14s %14s %14s %12s %12s\n", "example", "layers B cache", "layers B cold", "buildah B", "vs cold", "vs buildah"
    for (i = 1; i <= 2; i++) {
      ex = (i == 1) ? "python-app" : "big-context"
      c = median(t[ex ":cached"]); o = median(t[ex ":cold"]); b = median(t[ex ":buildah"])
      printf "%-12s %11.1f ms %11.1f ms %11.1f ms %11.3fx %11.3fx\n", ex, c, o, b, c / o, c / b
    }
    printf "200 steps all cached on a fresh store: %.1f ms (target: import <= 1000 ms)\n", median(t["steps-200:cached"])
    ch = median(t["steps-200:change"]); ce = median(t["steps-200:change+export"])
    printf "one step changed: build %.1f ms, build + export %.1f ms (export %.1f ms; target <= 1000 ms + upload)\n", ch, ce, ce - ch
    for (i = 1; i <= 2; i++) {
      ex = (i == 1) ? "python-app" : "big-context"
      printf "%s B cached CPU: layers %.0f ms, registry %.0f ms: on %d cores no schedule beats %.0f ms (0.1x cold is %.0f ms)\n", ex, lu[ex], rg[ex], cores, (lu[ex] + rg[ex]) / cores, median(t[ex ":cold"]) / 10
    }
    print "targets: cached <= 0.1x cold; <= 0.2x buildah"
  }' "$results"
