#!/usr/bin/env bash
# A CI job's last step on a fresh runner: rebuild an unchanged commit whose steps all
# hit a registry cache, and push the image. Machine A builds a Dockerfile whose final
# image holds SIZE_MB of incompressible data and exports the cache (mode=max) to a
# loopback registry (docker-registry, access log on). Then, each round on fresh stores
# on tmpfs, interleaved:
#   layers build --push            (one command)
#   layers build, then layers push (two)
#   buildah bud --layers --cache-from, then buildah push
# For each: wall time and the bytes that crossed the wire, from the registry's access
# log (blobs fetched, blobs uploaded, manifests). Each round pushes to repositories
# new to the registry, as a job's image is. Issue 31's target: <= 1 s and <= 100 KB
# moved, whatever the image's size.
#
# usage: bench/build-push.sh [ROUNDS] (default 3; SIZE_MB=500; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-3}
size_mb=${SIZE_MB:-500}
source "$here/lib.sh"
ensure_packages buildah skopeo docker-registry time python3
build_layers
bash "$repo/fixtures/build.sh" >/dev/null
fresh_scratch build-push
# The registry with its access log (one line per request, on stdout).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog: {level: info}\nstorage: {filesystem: {rootdirectory: %s/registry}}\nhttp: {addr: "127.0.0.1:%s"}\n' \
  "$scratch" "$port" >"$scratch/registry.yml"
docker-registry serve "$scratch/registry.yml" >"$scratch/access.log" 2>/dev/null &
reg_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
reg="127.0.0.1:$port"
B=(buildah --runroot /run/lbp-b --storage-driver overlay)
cleanup() { kill $reg_pid 2>/dev/null || true; for d in "$scratch"/buildah-*; do [ -d "$d" ] && "${B[@]}" --root "$d" rm -a >/dev/null 2>&1; done; rm -rf "$scratch" /run/lbp-b; }
trap cleanup EXIT

skopeo copy --quiet "oci:$repo/fixtures/cache/oci:layered" "oci:$scratch/base:busybox"
ctx="$scratch/ctx"
mkdir -p "$ctx"
printf 'FROM busybox\nRUN dd if=/dev/urandom of=/big bs=1048576 count=%s 2>/dev/null && echo made > /made\nCMD ["cat", "/made"]\n' "$size_mb" >"$ctx/Dockerfile"
layers_store() { "$layers" --root "$1" load -q -i "$scratch/base" >/dev/null; }
buildah_store() {
  "${B[@]}" --root "$1" pull -q "oci:$scratch/base:busybox" >/dev/null
  "${B[@]}" --root "$1" tag "$("${B[@]}" --root "$1" images -q | head -1)" localhost/busybox:latest
}
# Machine A exports both tools' caches (not timed).
layers_store "$scratch/a"
"$layers" --root "$scratch/a" build -q --cache-to "type=registry,ref=$reg/cache/app:main,mode=max" "$ctx" >/dev/null
buildah_store "$scratch/buildah-a"
"${B[@]}" --root "$scratch/buildah-a" bud --isolation chroot --layers -q --tls-verify=false \
  --cache-to "$reg/bcache/app" -t a-app "$ctx" >/dev/null

# Bytes a stretch of the access log moved: each blob fetched (200) or uploaded (the
# PUT that names its digest) counted at its stored size, manifests at their size.
moved() { # from-line to-line
  python3 - "$scratch/access.log" "$1" "$scratch/registry" "$2" <<'PY'
import os, re, sys
log, start, root, end = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def size(d):
    p = os.path.join(root, "docker/registry/v2/blobs/sha256", d[:2], d, "data")
    return os.path.getsize(p) if os.path.exists(p) else 0
total = 0
for line in open(log).read().splitlines()[start:end]:
    m = re.search(r'"(GET|PUT|HEAD|POST|PATCH) (\S+) HTTP/[\d.]+" (\d+) (\d+)', line)
    if not m:
        continue
    method, path, status, sent = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    if method == "GET" and status == 200:
        total += sent
    elif method == "PUT" and "/blobs/uploads/" in path:
        d = re.search(r"digest=sha256%3A([0-9a-f]{64})", path)
        total += size(d.group(1)) if d else 0
    elif method == "PUT" and "/manifests/" in path:
        total += 2048  # a manifest's size is not logged; a few KB at most
print(total)
PY
}
lines() { wc -l <"$scratch/access.log"; }

results="$scratch/results"; : >"$results"
for r in $(seq "$rounds"); do
  for who in layers-push layers-build+push buildah; do
    rm -rf "$scratch/b"; mkdir -p "$scratch/b"
    case $who in
      layers-push|layers-build+push) layers_store "$scratch/b" ;;
      buildah) "${B[@]}" --root "$scratch/buildah-b" rm -a >/dev/null 2>&1 || true; rm -rf "$scratch/buildah-b"; buildah_store "$scratch/buildah-b" ;;
    esac
    from=$(lines); t0=$EPOCHREALTIME
    case $who in
      layers-push)
        "$layers" --root "$scratch/b" build -q --push -t "$reg/p$r/app:ci" --cache-from "$reg/cache/app:main" "$ctx" >/dev/null ;;
      layers-build+push)
        "$layers" --root "$scratch/b" build -q -t "$reg/s$r/app:ci" --cache-from "$reg/cache/app:main" "$ctx" >/dev/null
        "$layers" --root "$scratch/b" push -q "$reg/s$r/app:ci" >/dev/null ;;
      buildah)
        "${B[@]}" --root "$scratch/buildah-b" bud --isolation chroot --layers -q --tls-verify=false \
          --cache-from "$reg/bcache/app" -t "$reg/bh$r/app:ci" "$ctx" >/dev/null
        "${B[@]}" --root "$scratch/buildah-b" push -q --tls-verify=false "$reg/bh$r/app:ci" >/dev/null ;;
    esac
    t1=$EPOCHREALTIME
    sleep 0.2 # the access log's last lines
    echo "$who $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $(moved "$from" "$(lines)")" >>"$results"
    # Not timed: the pushed image is whole in the registry (manifest, config, every layer).
    case $who in layers-push) ref="p$r/app" ;; layers-build+push) ref="s$r/app" ;; buildah) ref="bh$r/app" ;; esac
    python3 - "$reg" "$ref" <<'PY'
import json, sys, urllib.request
reg, repo = sys.argv[1], sys.argv[2]
accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
req = urllib.request.Request(f"http://{reg}/v2/{repo}/manifests/ci", headers={"Accept": accept})
m = json.load(urllib.request.urlopen(req))
for d in [m["config"]] + m["layers"]:
    urllib.request.urlopen(urllib.request.Request(f"http://{reg}/v2/{repo}/blobs/{d['digest']}", method="HEAD"))
PY
  done
done
echo "== fresh runner, all steps hit, then push: ${size_mb} MB image, medians of $rounds =="
awk "$MEDIAN_AWK"'
  { w[$1] = w[$1] " " $2; b[$1] = b[$1] " " $3 }
  END {
    printf "%-20s %10s %14s\n", "tool", "wall s", "moved MB"
    split("layers-push layers-build+push buildah", t, " ")
    for (i = 1; i <= 3; i++) printf "%-20s %10.2f %14.2f\n", t[i], median(w[t[i]]), median(b[t[i]]) / 1e6
    printf "layers --push / buildah  = %.2fx wall\n", median(w["layers-push"]) / median(w["buildah"])
    printf "target: <= 1 s and <= 100 KB moved (layers-push: %.2f s, %.1f KB)\n", median(w["layers-push"]), median(b["layers-push"]) / 1e3
    printf "floor: the cache manifest read, the config uploaded, the manifest put (a few KB); --push leaves the image known-remote, its layers mounted from the cache\n"
  }' "$results"
