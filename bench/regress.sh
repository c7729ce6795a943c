#!/usr/bin/env bash
# The guard against the next regression: REV's release build against this tree's, side
# by side in one run. Cases:
#   pull     the fixtures' python image (5 layers) from a loopback registry, fresh store
#   import   bench/cache/debian-rootfs.tar.gz (a Debian 12 minbase, 59 MB), fresh store
#   mount    `mount` of the python image (creates its container), then `rm -f`
#   run      `run --rm --network none busybox /bin/true`
#   build    Dockerfile-examples/multistage, cold (`--no-cache`) and warm
#   commit   a busybox container whose upper dir holds 5,000 new files (~50 MB of
#            text), filled untimed; the commit alone is timed
# A third binary, a second copy of this tree's, is timed as if it were another tool: how far
# its medians are from this tree's is the noise of this run (A against A). Labels run in
# an order that rotates each round, stores on tmpfs, medians of ROUNDS. Exits 1 when this
# tree is more than 10% slower than REV on a case beyond that noise.
#
# usage: bench/regress.sh REV [ROUNDS]   (default 9; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rev=${1:?usage: bench/regress.sh REV [ROUNDS]}
rounds=${2:-9}
source "$here/lib.sh"
ensure_packages docker-registry skopeo python3
ensure_debian_rootfs
build_layers
current=$layers
bash "$repo/fixtures/build.sh" >/dev/null

# REV's build, in a target dir of its own (shared by every REV, so a second one is quick).
sha=$(git -C "$repo" rev-parse --verify "$rev^{commit}")
base="$repo/target/regress/bin/layers-$sha"
if [ ! -x "$base" ]; then
  src=$(mktemp -d /tmp/layers-regress-src.XXXXXX)
  git -C "$repo" archive "$sha" | tar -x -C "$src"
  CARGO_TARGET_DIR="$repo/target/regress/target" cargo build --release --locked -q --manifest-path "$src/Cargo.toml"
  mkdir -p "$(dirname "$base")"
  cp "$repo/target/regress/target/release/layers" "$base.tmp" && mv "$base.tmp" "$base"
  rm -rf "$src"
fi

fresh_scratch regress
# All three run from tmpfs: where a binary lies changes how fast it starts (a build
# on this machine's disk started 0.3 ms slower than the same bytes on tmpfs).
cp "$base" "$scratch/layers-base"; base="$scratch/layers-base"
cp "$current" "$scratch/layers-current"; current="$scratch/layers-current"
again="$scratch/layers-again"
cp "$current" "$again"
results="$scratch/results"; : >"$results"
start_registry
cleanup() {
  kill "$reg_pid" 2>/dev/null || true
  for m in $(findmnt -rn -o TARGET | grep "^$scratch" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT
skopeo copy --quiet --dest-tls-verify=false "oci:$repo/fixtures/cache/python:python" "docker://127.0.0.1:$port/python:1"

declare -A bin=([base]=$base [current]=$current [again]=$again)
for b in base current again; do
  "${bin[$b]}" --root "$scratch/$b-store" load -q -i "$repo/fixtures/cache/oci" >/dev/null
  "${bin[$b]}" --root "$scratch/$b-store" load -q -i "$repo/fixtures/cache/python" >/dev/null
  "${bin[$b]}" --root "$scratch/$b-store" tag localhost/layered busybox
done
ctx="$repo/Dockerfile-examples/multistage"
files="$scratch/files"
make_commit_files "$files" 50

round() { # label
  local b=$1 l="${bin[$1]}" s="$scratch/$1-store"
  rm -rf "$scratch/$b-fresh"
  time_it "$b pull" "$l" --root "$scratch/$b-fresh" pull -q "127.0.0.1:$port/python:1"
  rm -rf "$scratch/$b-fresh"
  time_it "$b import" "$l" --root "$scratch/$b-fresh" import -q "$debian_rootfs" localhost/deb:1
  rm -rf "$scratch/$b-fresh"
  time_it "$b mount" "$l" --root "$s" mount localhost/python
  "$l" --root "$s" rm -f python-working-container >/dev/null
  time_it "$b run" "$l" --root "$s" run --rm --network none busybox /bin/true
  time_it "$b build-cold" "$l" --root "$s" build -q --no-cache -t ms "$ctx"
  time_it "$b build-warm" "$l" --root "$s" build -q -t ms "$ctx"
  "$l" --root "$s" create --name commit-me busybox >/dev/null
  cp -a "$files/app" "$("$l" --root "$s" mount commit-me)/"
  "$l" --root "$s" umount commit-me >/dev/null
  time_it "$b commit" "$l" --root "$s" commit -q commit-me committed:1
  "$l" --root "$s" rm -f commit-me >/dev/null
  "$l" --root "$s" rmi localhost/committed:1 >/dev/null
}
orders=("base current again" "current again base" "again base current")
for r in $(seq "$rounds"); do
  for b in ${orders[$((r % 3))]}; do round "$b"; done
done

echo "== $(git -C "$repo" log -1 --format='%h %s' "$sha" | cut -c1-60) (base) against this tree, medians of $rounds (ms) =="
awk "$MEDIAN_AWK"'
  { split($0, f, " "); t = f[length(f)]; who = $1; c = $2; v[who, c] = v[who, c] " " t; cases[c] = 1 }
  END {
    printf "%-11s %9s %9s %9s %8s %7s  %s\n", "case", "base", "current", "again", "cur/base", "noise", "verdict"
    bad = 0
    n = split("pull import mount run build-cold build-warm commit", order, " ")
    for (i = 1; i <= n; i++) {
      c = order[i]; b = median(v["base", c]); a = median(v["current", c]); g = median(v["again", c])
      noise = (g > a ? g / a : a / g) - 1
      verdict = "ok"
      if (a / b > 1.10 + noise) { verdict = "SLOWER"; bad = 1 }
      printf "%-11s %9.1f %9.1f %9.1f %8.2f %6.1f%%  %s\n", c, b * 1000, a * 1000, g * 1000, a / b, noise * 100, verdict
    }
    exit bad
  }' "$results"
