#!/usr/bin/env bash
# Rootless benchmark, stores on tmpfs, tools interleaved, medians of ROUNDS:
#  1. pull of the python image (bench/pull.sh builds it) from a loopback registry into
#     a fresh store: `layers pull` as root, `layers pull` rootless, and rootless
#     `podman pull` as the same user;
#  2. `run --rm IMAGE /bin/true` on the busybox fixture: layers as root, layers
#     rootless, rootless `podman run --network=none`;
#  3. import of the anchors' Debian rootfs (bench/import.sh makes it, 49 MB) and an
#     uncached build of Dockerfile-examples/whiteouts (three RUN steps, one deleting
#     files, one replacing a dir) on the busybox fixture: layers as root against
#     layers rootless;
#  4. what the user namespace costs a command: `layers images` rootless with the pause
#     process alive (two setns) and cold (pause process killed first: it is started
#     and newuidmap/newgidmap run), against `layers images` as root.
# The user (layers-bench, with a subordinate range) is made if missing.
#
# usage: bench/rootless.sh [ROUNDS]   (default 9; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-9}
source "$here/lib.sh"
ensure_packages podman crun uidmap skopeo docker-registry
layout="$here/cache/pull-oci"
[ -e "$layout/.complete" ] || { echo "run bench/pull.sh once first: it builds the python image"; exit 1; }
rootfs_gz="$here/cache/debian-rootfs.tar.gz"
[ -s "$rootfs_gz" ] || { echo "run bench/import.sh once first: it makes the Debian rootfs"; exit 1; }
build_layers
bash "$repo/fixtures/build.sh" >/dev/null

user=layers-bench
if ! id -u "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$user"
fi
grep -q "^$user:" /etc/subuid || usermod --add-subuids 400000-465535 --add-subgids 400000-465535 "$user"
uid=$(id -u "$user")

fresh_scratch rootless
chmod 755 "$scratch"
mine="$scratch/$user"; mkdir -p "$mine"; chown "$user:" "$mine"
cp "$CONTAINERS_CONF" "$mine/containers.conf"; chown "$user:" "$mine/containers.conf"
# As the user, with its own environment (and podman's config for this sandbox).
U() { setpriv --reuid="$user" --regid="$user" --init-groups --reset-env -- env CONTAINERS_CONF="$mine/containers.conf" "$@"; }
# A short runroot: podman refuses one over 50 characters.
P() { U podman --root "$mine/podman-$1" --runroot "/tmp/lrb-$uid-$1" --storage-driver overlay --cgroup-manager cgroupfs "${@:2}"; }

start_registry
cleanup() {
  kill $reg_pid 2>/dev/null || true
  pkill -u "$user" -f 'layers userns-pause' 2>/dev/null || true
  for d in "$mine"/podman-*; do [ -d "$d" ] && P "${d##*podman-}" system reset -f >/dev/null 2>&1; done
  rm -rf "$scratch" /tmp/lrb-"$uid"-*
}
trap cleanup EXIT
ref="127.0.0.1:$port/bench/python:latest"
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:python" "docker://$ref"

# The busybox fixture in each store that runs it (loading is not timed).
cp -a "$repo/fixtures/cache/oci" "$mine/oci"; chown -R "$user:" "$mine/oci"
"$layers" --root "$scratch/root-run" load -q -i "$repo/fixtures/cache/oci" >/dev/null
U "$layers" --root "$mine/run" load -q -i "$mine/oci" >/dev/null
P run tag "$(P run pull -q "oci:$mine/oci:layered")" localhost/layered:latest
"$layers" --root "$scratch/root-run" tag localhost/layered busybox
U "$layers" --root "$mine/run" tag localhost/layered busybox
cp "$rootfs_gz" "$mine/rootfs.tar.gz"; chown "$user:" "$mine/rootfs.tar.gz"
cp -a "$repo/Dockerfile-examples/whiteouts" "$mine/ctx"; chown -R "$user:" "$mine/ctx"

results="$scratch/results"; : >"$results"
for r in $(seq "$rounds"); do
  # Each round starts at another tool.
  tools=(root rootless podman)
  for i in 0 1 2; do
    case ${tools[$(((i + r) % 3))]} in
      root) time_it "pull:root" "$layers" --root "$scratch/root-$r" pull -q "$ref"
            time_it "run:root" "$layers" --root "$scratch/root-run" run --rm localhost/layered /bin/true ;;
      rootless) time_it "pull:rootless" U "$layers" --root "$mine/store-$r" pull -q "$ref"
                time_it "run:rootless" U "$layers" --root "$mine/run" run --rm localhost/layered /bin/true ;;
      podman) time_it "pull:podman" P "$r" pull -q --tls-verify=false "$ref"
              time_it "run:podman" P run run --rm --network=none --cgroups=disabled --runtime crun localhost/layered:latest /bin/true ;;
    esac
  done
  # Import and build, root and rootless in turn (each round starts at the other).
  for who in $( ((r % 2)) && echo "root rootless" || echo "rootless root"); do
    if [ "$who" = root ]; then
      time_it "import:root" "$layers" --root "$scratch/imp-root-$r" import -q "$mine/rootfs.tar.gz" deb
      time_it "build:root" "$layers" --root "$scratch/root-run" build -q --no-cache -t wo "$mine/ctx"
    else
      time_it "import:rootless" U "$layers" --root "$mine/imp-$r" import -q "$mine/rootfs.tar.gz" deb
      time_it "build:rootless" U "$layers" --root "$mine/run" build -q --no-cache -t wo "$mine/ctx"
    fi
  done
  rm -rf "$scratch/imp-root-$r" "$mine/imp-$r"
  time_it "images:root" "$layers" --root "$scratch/root-run" images
  time_it "images:warm" U "$layers" --root "$mine/run" images
  pkill -u "$user" -f 'layers userns-pause' || true
  while pgrep -u "$user" -f 'layers userns-pause' >/dev/null; do sleep 0.01; done
  time_it "images:cold" U "$layers" --root "$mine/run" images
  time_it "setpriv" U true
  rm -rf "$scratch/root-$r" "$mine/store-$r"
  P "$r" system reset -f >/dev/null 2>&1 || true
done

awk "$MEDIAN_AWK"'
  { t[$1] = t[$1] " " $2 * 1000 }
  END {
    s = median(t["setpriv"])
    printf "setpriv alone (in every rootless figure below, subtracted in the ratios): %.1f ms\n", s
    printf "\n== pull of the python image (tmpfs), medians of '"$rounds"' rounds ==\n"
    printf "layers as root %.1f ms   layers rootless %.1f ms   podman rootless %.1f ms\n", median(t["pull:root"]), median(t["pull:rootless"]), median(t["pull:podman"])
    printf "rootless / root layers pull = %.2fx (target <= 1.05)\n", (median(t["pull:rootless"]) - s) / median(t["pull:root"])
    printf "layers / podman rootless pull = %.3fx (target <= 0.2)\n", median(t["pull:rootless"]) / median(t["pull:podman"])
    printf "\n== run --rm busybox /bin/true (tmpfs) ==\n"
    printf "layers as root %.1f ms   layers rootless %.1f ms   podman rootless %.1f ms\n", median(t["run:root"]), median(t["run:rootless"]), median(t["run:podman"])
    printf "rootless / root layers run = %.2fx (target <= 1.3)\n", (median(t["run:rootless"]) - s) / median(t["run:root"])
    printf "layers / podman rootless run = %.3fx\n", median(t["run:rootless"]) / median(t["run:podman"])
    printf "\n== import of debian-rootfs.tar.gz, build --no-cache of Dockerfile-examples/whiteouts (tmpfs) ==\n"
    printf "import: layers as root %.1f ms   layers rootless %.1f ms\n", median(t["import:root"]), median(t["import:rootless"])
    printf "rootless / root layers import = %.2fx (target <= 1.05)\n", (median(t["import:rootless"]) - s) / median(t["import:root"])
    printf "build: layers as root %.1f ms   layers rootless %.1f ms\n", median(t["build:root"]), median(t["build:rootless"])
    printf "rootless / root layers build = %.2fx (target <= 1.05)\n", (median(t["build:rootless"]) - s) / median(t["build:root"])
    printf "\n== the user namespace, per command (layers images) ==\n"
    printf "root %.1f ms   rootless, pause process alive %.1f ms   rootless, cold (pause started, newuidmap+newgidmap) %.1f ms\n", median(t["images:root"]), median(t["images:warm"]) - s, median(t["images:cold"]) - s
  }' "$results"
