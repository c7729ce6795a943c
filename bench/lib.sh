# Sourced by the bench scripts.

# Installs the Debian packages named that are not installed yet (one apt-get update).
ensure_packages() {
  local need=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
  done
  if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

# Points podman at a containers.conf in DIR with the ulimits this sandbox allows
# (it lacks CAP_SYS_RESOURCE; see ANCHORS.md).
podman_conf() {
  cat >"$1/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
CONF
  export CONTAINERS_CONF="$1/containers.conf"
}

# Builds layers (release) and sets $layers to it; with LAYERS_BIN set, uses that
# binary instead (bench/compare.sh runs a script once with an older release).
build_layers() {
  if [ -n "${LAYERS_BIN:-}" ]; then layers=$LAYERS_BIN; return; fi
  (cd "$repo" && cargo build --release --locked -q)
  layers="$repo/target/release/layers"
}

# Runs the rest of the calling script in a network namespace of its own (lo up,
# forwarding on), so nothing is made in the machine's: the script starts again there,
# with the binary build_layers gave ($LAYERS_BIN) and its packages already installed.
enter_own_netns() { # the script's arguments
  if [ -z "${LAYERS_BENCH_IN_NETNS:-}" ]; then
    exec unshare --net env LAYERS_BENCH_IN_NETNS=1 LAYERS_BIN="$layers" bash "$0" "$@"
  fi
  ip link set lo up
  echo 1 >/proc/sys/net/ipv4/ip_forward
}

# Sets $scratch to an empty $BENCH_DIR (default /dev/shm/layers-NAME-bench: tmpfs, as the
# ratios want) with podman's containers.conf in it.
fresh_scratch() { # name
  scratch=${BENCH_DIR:-/dev/shm/layers-$1-bench}
  rm -rf "$scratch"; mkdir -p "$scratch"
  podman_conf "$scratch"
}

# awk function median(list): the median of a space-separated list of numbers.
# Usage: awk "$MEDIAN_AWK"' ...program... '
MEDIAN_AWK='
  function median(s,   a, n, i, j, x) { n = split(s, a, " "); for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] + 0 > x + 0; j--) a[j+1] = a[j]; a[j+1] = x }
    return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
'

# Times one run of CMD and appends "LABEL SECONDS" to $results; output goes nowhere,
# and a failing CMD stops the bench with its error. Uses the caller's $scratch and $results.
time_it() { # label cmd...
  local label=$1; shift
  local t0=$EPOCHREALTIME
  "$@" >/dev/null 2>"$scratch/err" || { echo "$label failed:"; cat "$scratch/err"; exit 1; }
  local t1=$EPOCHREALTIME
  echo "$label $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.5f", b - a }')" >>"$results"
}

# Makes the big build context at DIR: 5,000 small files in 50 dirs under src/ and one
# 100 MiB file, big.bin; the Dockerfile is the caller's.
make_big_context() { # dir
  mkdir -p "$1"
  python3 - "$1" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(5000):
    d = os.path.join(root, "src", "d%d" % (i % 50))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%d.txt" % i), "wb") as f:
        f.write(os.urandom(2000))
with open(os.path.join(root, "big.bin"), "wb") as f:
    for _ in range(100):
        f.write(os.urandom(1 << 20))
PY
}

# Makes bench/cache/debian-rootfs.tar.gz (a Debian 12 minbase, as `docker export`
# gives it: no downloaded packages) and debian-rootfs-x2.tar.gz (two copies of it)
# with debootstrap from the Debian mirror, unless they exist; sets $debian_rootfs.
ensure_debian_rootfs() {
  local cache=$here/cache
  debian_rootfs=$cache/debian-rootfs.tar.gz
  local double=$cache/debian-rootfs-x2.tar.gz
  if [ -s "$debian_rootfs" ] && [ -s "$double" ]; then return; fi
  ensure_packages debootstrap
  mkdir -p "$cache"
  local src
  src=$(mktemp -d /dev/shm/bench-rootfs.XXXXXX)
  debootstrap --variant=minbase bookworm "$src/rootfs" http://deb.debian.org/debian >/dev/null
  rm -f "$src/rootfs"/var/cache/apt/archives/*.deb
  tar --numeric-owner --xattrs -C "$src/rootfs" -czf "$debian_rootfs.tmp" . && mv "$debian_rootfs.tmp" "$debian_rootfs"
  cp -a "$src/rootfs" "$src/copy"
  tar --numeric-owner --xattrs -C "$src" -czf "$double.tmp" rootfs copy && mv "$double.tmp" "$double"
  rm -rf "$src"
}

# Makes DIR/app holding DIRS directories of 100 files of ~10 kB of random text each
# (what a commit bench copies into a container's upper dir).
make_commit_files() { # dir dirs
  python3 - "$1" "$2" <<'PY'
import base64, os, sys
for d in range(int(sys.argv[2])):
    os.makedirs(f"{sys.argv[1]}/app/{d}")
    for f in range(100):
        with open(f"{sys.argv[1]}/app/{d}/{f}.txt", "wb") as fh:
            fh.write(base64.b64encode(os.urandom(7500)))
PY
}

# Starts the CNCF registry (Debian's docker-registry) on a free loopback port with its
# storage under $scratch/registry; sets $port and $reg_pid (the caller's cleanup
# kills it) and returns once it answers.
start_registry() {
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s/registry}}\nhttp: {addr: "127.0.0.1:%s"}\n' "$scratch" "$port" >"$scratch/registry.yml"
  docker-registry serve "$scratch/registry.yml" >/dev/null 2>&1 &
  reg_pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
}
