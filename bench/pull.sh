#!/usr/bin/env bash
# Pull benchmark. Builds (once, cached) a real 5-layer image with umoci:
#   1 debootstrap --variant=minbase bookworm   2 python3 installed (debootstrap --include)
#   3 files deleted (docs, man pages)           4 a directory replaced (/etc/apt)
#   5 a small application
# a 10-layer "python2x" (the same five layers again under /dup: twice the size), a 20-layer
# "python4x", and a 50,000-small-file single-layer image; pushes them to a local registry
# (docker-registry on loopback) with skopeo, then times, interleaved, each into a
# fresh store on tmpfs: `layers pull`, `podman pull`, `skopeo copy` + `umoci unpack`,
# `ctr image pull` (containerd, fresh root) and `docker pull` (dockerd, fresh data
# root); the daemons are started before and stopped after each round, untimed.
# Prints medians, peak RSS (for ctr/docker only the client's: the work is done in
# the daemon) and ratios, the time of a second, already-present `layers pull`, and the
# floor each image is held against (its largest layer's gunzip alone, or its files'
# creation spread over both cores, whichever is larger), and the floor of the work a
# pull must do (every layer inflated, both digests of every layer verified, every file
# made) spread over both cores. IMAGES="python small" limits
# the images timed.
#
# usage: bench/pull.sh [ROUNDS]   (default 5; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-5}
cache="$here/cache"
mkdir -p "$cache"
source "$here/lib.sh"
ensure_packages debootstrap podman skopeo umoci docker-registry time containerd docker.io pigz
build_layers

layout="$cache/pull-oci"
if [ ! -e "$layout/.complete" ]; then
  rm -rf "$layout"; work=$(mktemp -d /dev/shm/pull-bench-build.XXXXXX)
  debootstrap --variant=minbase bookworm "$work/base" http://deb.debian.org/debian >/dev/null
  debootstrap --variant=minbase --include=python3 bookworm "$work/py" http://deb.debian.org/debian >/dev/null
  rm -f "$work"/{base,py}/var/cache/apt/archives/*.deb
  umoci init --layout "$layout" && umoci new --image "$layout:python"
  step() { # name, then a command run in the unpacked rootfs
    local b="$work/bundle-$1"; shift
    umoci unpack --image "$layout:python" "$b" >/dev/null
    (cd "$b/rootfs" && eval "$@")
    umoci repack --image "$layout:python" "$b" >/dev/null; rm -rf "$b"
  }
  step 1 'cp -a "$work/base/." .'
  step 2 'cp -a "$work/py/." .'
  step 3 'rm -rf usr/share/doc usr/share/man usr/share/locale'
  step 4 'rm -rf etc/apt && mkdir -p etc/apt/sources.list.d && echo "deb http://deb.debian.org/debian bookworm main" > etc/apt/sources.list'
  step 5 'mkdir -p app && for i in $(seq 200); do echo "print($i)" > app/m$i.py; done'
  umoci new --image "$layout:small"
  b="$work/bundle-small"; umoci unpack --image "$layout:small" "$b" >/dev/null
  for d in $(seq 500); do mkdir -p "$b/rootfs/d$d"; for f in $(seq 100); do echo "file $d/$f" > "$b/rootfs/d$d/f$f"; done; done
  umoci repack --image "$layout:small" "$b" >/dev/null
  umoci gc --layout "$layout"; rm -rf "$work"; touch "$layout/.complete"
fi
# python2x: the python image plus its five layers again, re-rooted under /dup by GNU tar
# (new diffIDs, same sizes): twice the bytes and files, to check that memory stays flat;
# python4x: four copies (/dup, /dup2, /dup3), to see where it levels off.
grow() { # tag, then the directories to re-root copies of the five layers under
  local tag=$1; shift
  [ -e "$layout/.complete-$tag" ] && return
  local work; work=$(mktemp -d /dev/shm/pull-bench-grow.XXXXXX)
  umoci tag --image "$layout:python" "$tag"
  local manifest
  manifest=$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1]+"/index.json")); print(next(m["digest"][7:] for m in i["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"]=="python"))' "$layout")
  for dir in "$@"; do
    for blob in $(python3 -c 'import json,sys; print(" ".join(l["digest"][7:] for l in json.load(open(sys.argv[1]))["layers"]))' "$layout/blobs/sha256/$manifest"); do
      rm -rf "$work/x" && mkdir -p "$work/x"
      tar --numeric-owner -xpzf "$layout/blobs/sha256/$blob" -C "$work/x"
      tar --numeric-owner --format=posix -C "$work/x" --transform "s,^\./,$dir/," -cf "$work/layer.tar" .
      umoci raw add-layer --image "$layout:$tag" "$work/layer.tar"
    done
  done
  rm -rf "$work"; touch "$layout/.complete-$tag"
}
grow python2x dup
grow python4x dup dup2 dup3

scratch=${BENCH_DIR:-/dev/shm/layers-pull-bench}
rm -rf "$scratch"; mkdir -p "$scratch"
start_registry
c_pid=; d_pid=
trap 'set +e; kill $reg_pid $c_pid $d_pid 2>/dev/null; sleep 0.5; umount -R "$scratch"/run-*/docker "$scratch"/run-*/containerd 2>/dev/null; rm -rf "$scratch"' EXIT
for img in python python2x python4x small; do skopeo copy --quiet --dest-tls-verify=false "oci:$layout:$img" "docker://127.0.0.1:$port/bench/$img:latest"; done
podman_conf "$scratch"

# The daemons for one round, each on fresh state under $1 (short runtime paths: socket length limits).
start_daemons() { # dir round
  local d=$1 r=$2
  csock="/run/lpb-c$r/c.sock"; dsock="/run/lpb-d$r.sock"
  mkdir -p "$d/containerd" "/run/lpb-c$r"
  printf 'version = 2\nroot = "%s"\nstate = "/run/lpb-c%s"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s"\n' \
    "$d/containerd" "$r" "$csock" >"$d/containerd.toml"
  containerd --config "$d/containerd.toml" >"$d/containerd.log" 2>&1 & c_pid=$!
  for _ in $(seq 100); do [ -S "$csock" ] && break; sleep 0.1; done
  dockerd --data-root "$d/docker" --exec-root "/run/lpb-dx$r" -H "unix://$dsock" --containerd "$csock" \
    --pidfile "/run/lpb-d$r.pid" --iptables=false --ip-masq=false --bridge=none --storage-driver overlay2 >"$d/dockerd.log" 2>&1 & d_pid=$!
  for _ in $(seq 200); do /usr/bin/docker -H "unix://$dsock" version >/dev/null 2>&1 && break; sleep 0.1; done
}
stop_daemons() { # round
  kill "$d_pid" 2>/dev/null; wait "$d_pid" 2>/dev/null || true
  kill "$c_pid" 2>/dev/null; wait "$c_pid" 2>/dev/null || true
  umount -R "$d/docker" "$d/containerd" 2>/dev/null || true
  rm -rf "/run/lpb-c$1" "/run/lpb-dx$1" "/run/lpb-d$1.sock" "/run/lpb-d$1.pid"
}

results="$scratch/results"; : >"$results"
# The floor each image is held against: its largest layer's gunzip alone on one core
# (gunzip-floor: layers' own inflater, zlib-rs, from memory to nothing; gzip cannot be
# split, and pigz -dc is 2.5x slower here), or all its files' creation on tmpfs spread
# over both cores (GNU tar -xf of its layers' tars, already inflated, halved),
# whichever is larger.
(cd "$here/gunzip-floor" && cargo build --release -q)
gunzip_floor="$here/gunzip-floor/target/release/gunzip-floor"
floors() { # image
  local img=$1 f="$scratch/floor" manifest blobs largest t0 t1 best_gz=999 best_x=999
  manifest=$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1]+"/index.json")); print(next(m["digest"][7:] for m in i["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"]==sys.argv[2]))' "$layout" "$img")
  blobs=$(python3 -c 'import json,sys; print(" ".join(l["digest"][7:] for l in json.load(open(sys.argv[1]))["layers"]))' "$layout/blobs/sha256/$manifest")
  largest=$(for b in $blobs; do echo "$(stat -c %s "$layout/blobs/sha256/$b") $b"; done | sort -n | tail -1 | cut -d' ' -f2)
  rm -rf "$f"; mkdir -p "$f/tars"
  for b in $blobs; do pigz -dc "$layout/blobs/sha256/$b" >"$f/tars/$b.tar"; done
  # Every layer must be inflated and both its digests verified: all of that spread
  # over both cores is a floor too (and with the files' creation, the work's floor).
  local all=0 sha=0 out
  for b in $blobs; do
    out=$("$gunzip_floor" "$layout/blobs/sha256/$b")
    all=$(awk -v a="$all" -v b="$(echo "$out" | cut -d' ' -f1)" 'BEGIN { print a + b }')
    sha=$(awk -v a="$sha" -v b="$(echo "$out" | cut -d' ' -f3)" 'BEGIN { print a + b }')
  done
  echo "$img:floor-inflate-all $(awk -v a="$all" 'BEGIN { print a / 2 }') 0" >>"$results"
  echo "$img:floor-sha256-all $(awk -v a="$sha" 'BEGIN { print a / 2 }') 0" >>"$results"
  for _ in 1 2 3; do
    best_gz=$("$gunzip_floor" "$layout/blobs/sha256/$largest" | awk -v m="$best_gz" '{ print ($1 < m ? $1 : m) }')
    rm -rf "$f/x"; mkdir -p "$f/x"
    t0=$EPOCHREALTIME; for b in $blobs; do tar --numeric-owner -xpf "$f/tars/$b.tar" -C "$f/x" 2>/dev/null || true; done; t1=$EPOCHREALTIME
    best_x=$(awk -v a="$t0" -v b="$t1" -v m="$best_x" 'BEGIN { d = (b - a) / 2; print (d < m ? d : m) }')
  done
  rm -rf "$f"
  echo "$img:floor-gunzip $best_gz 0" >>"$results"
  echo "$img:floor-create $best_x 0" >>"$results"
}
for img in ${IMAGES:-python python2x python4x small}; do floors "$img"; done
measure() { # label cmd...
  local label=$1; shift; sync
  # Wall time from bash's microsecond clock (time's %e has 10 ms steps), peak RSS from time.
  local t0=$EPOCHREALTIME
  /usr/bin/time -f "%M" -o "$scratch/t" "$@" >/dev/null 2>"$scratch/err" || { echo "$label failed:"; cat "$scratch/err"; exit 1; }
  local t1=$EPOCHREALTIME
  echo "$label $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }') $(cat "$scratch/t")" >>"$results"
}
for img in ${IMAGES:-python python2x python4x small}; do
  ref="127.0.0.1:$port/bench/$img:latest"
  for r in $(seq "$rounds"); do
    d="$scratch/run-$r"; mkdir -p "$d"
    measure "$img:layers" "$layers" --root "$d/layers" pull -q "$ref"
    measure "$img:layers-again" "$layers" --root "$d/layers" pull -q "$ref"
    measure "$img:podman" podman --root "$d/podman" --runroot "/run/lpb-$r" --storage-driver overlay pull -q --tls-verify=false "$ref"
    measure "$img:skopeo+umoci" sh -c 'mkdir -p "$2" && skopeo copy --quiet --src-tls-verify=false "docker://$1" "oci:$2/oci:x" && umoci unpack --image "$2/oci:x" "$2/bundle"' - "$ref" "$d/su"
    start_daemons "$d" "$r"
    measure "$img:ctr" ctr -a "$csock" -n bench images pull --plain-http "$ref"
    measure "$img:docker" /usr/bin/docker -H "unix://$dsock" pull -q "$ref"
    stop_daemons "$r"
    podman --root "$d/podman" --runroot "/run/lpb-$r" --storage-driver overlay system reset -f >/dev/null 2>&1 || true
    rm -rf "$d" "/run/lpb-$r"
  done
done
awk "$MEDIAN_AWK"'
  { t[$1] = t[$1] " " $2; m[$1] = m[$1] " " $3 }
  END {
    split("python python2x python4x small", names, " ")
    for (img = 1; img <= 4; img++) {
      name = names[img]
      if (!((name ":layers") in t)) continue
      printf "\n== pull of the %s image (tmpfs), medians of '"$rounds"' rounds ==\n%-22s %8s %14s\n", name, "tool", "wall s", "peak RSS MiB"
      split("layers layers-again podman skopeo+umoci ctr docker", order, " ")
      for (k = 1; k <= 6; k++) { key = name ":" order[k]; wt[key] = median(t[key]); printf "%-22s %8.3f %14.1f\n", order[k], wt[key], median(m[key]) / 1024 }
      docker_target = (name == "small") ? "<= 0.10" : "-"
      printf "layers / podman pull        = %.2fx  (target <= 0.15)\n", wt[name ":layers"] / wt[name ":podman"]
      printf "layers / skopeo+umoci       = %.2fx\n", wt[name ":layers"] / wt[name ":skopeo+umoci"]
      printf "layers / ctr image pull     = %.2fx  (target <= 0.15)\n", wt[name ":layers"] / wt[name ":ctr"]
      printf "layers / docker pull        = %.2fx  (target %s)\n", wt[name ":layers"] / wt[name ":docker"], docker_target
      printf "second layers pull          = %.1f ms (target <= 100)\n", wt[name ":layers-again"] * 1000
      printf "peak RSS                    = %.1f MiB (target <= 24, flat across python, python2x, python4x)\n", median(m[name ":layers"]) / 1024
      gz = median(t[name ":floor-gunzip"]); cr = median(t[name ":floor-create"]); fl = (gz > cr ? gz : cr)
      printf "floor: largest layer gunzip %.3f s, file creation over 2 cores %.3f s -> %.3f s; layers = %.2fx the floor\n", gz, cr, fl, wt[name ":layers"] / fl
      printf "       (the floor allows at best %.2fx ctr, %.2fx podman, %.2fx docker)\n", fl / wt[name ":ctr"], fl / wt[name ":podman"], fl / wt[name ":docker"]
      ia = median(t[name ":floor-inflate-all"]); sh = median(t[name ":floor-sha256-all"]); w = ia + sh + cr
      printf "       the work itself over 2 cores: inflate all %.3f + sha256 of every byte %.3f + file creation %.3f = %.3f s\n", ia, sh, cr, w
      printf "       (%.2fx ctr, %.2fx podman, %.2fx docker at best; layers = %.2fx this floor)\n", w / wt[name ":ctr"], w / wt[name ":podman"], w / wt[name ":docker"], wt[name ":layers"] / w
    }
  }' "$results"
