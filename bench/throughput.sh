#!/usr/bin/env bash
# Network throughput, in a network namespace of its own: a Python socket pump (the
# fixture's Python image in the container, the host's python3 outside) sends SIZE MiB
# over TCP and the receiver reports MB/s.
#  1. container on the bridge -> the bridge's host side (10.77.0.1), against the same
#     pump between two plain namespaces joined by a veth pair (no bridge, no NAT): the
#     floor the bridge is held against (target >= 0.9x);
#  2. rootless: container -> the host's loopback through pasta (`pasta:--map-gw`)
#     against slirp4netns (`allow_host_loopback=true`) (target: pasta >= 3x slirp4netns),
#     whole transfers and their streaming rate (the median 32 MiB piece), with stalls
#     counted apart.
# Medians of ROUNDS.
#
# usage: bench/throughput.sh [ROUNDS] [SIZE_MIB]   (default 5, 1024; root, Debian 12)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-5}
size=${2:-1024}
source "$here/lib.sh"
ensure_packages nftables passt slirp4netns uidmap
build_layers
bash "$repo/fixtures/build.sh" >/dev/null
enter_own_netns "$@"
# pasta copies the host's addresses and default route: give this namespace some.
ip link add vt0 type veth peer name vt1
ip addr add 192.0.2.2/24 dev vt0 && ip link set vt0 up && ip link set vt1 up
ip route add default via 192.0.2.1
fresh_scratch throughput
chmod 755 "$scratch"
export LAYERS_NETWORK_STATE="$scratch/net" LAYERS_NETWORK_CONFIG="$scratch/networks"
L=("$layers" --root "$scratch/layers")
"${L[@]}" load -q -i "$repo/fixtures/cache/python" >/dev/null

# The pump: `sink PORT` prints MB/s of what it received; `send HOST PORT MIB` sends.
cat >"$scratch/pump.py" <<'PY'
import socket, sys, time
if sys.argv[1] == "sink":
    # Prints the whole transfer's MB/s, the median MB/s of its 32 MiB pieces (the
    # streaming rate) and how many pieces went at under a tenth of that (stalls).
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(1)
    c, _ = s.accept(); n = 0; t0 = None; buf = bytearray(1 << 20); pieces = []; mark = 0
    while True:
        k = c.recv_into(buf)
        if not k: break
        if t0 is None: t0 = last = time.monotonic()
        n += k
        if n - mark >= 32 << 20:
            now = time.monotonic(); pieces.append((n - mark) / (now - last) / 1e6); last = now; mark = n
    whole = n / (time.monotonic() - t0) / 1e6
    stream = sorted(pieces)[len(pieces) // 2] if pieces else whole
    print(f"{whole:.1f} {stream:.1f} {sum(p < stream / 10 for p in pieces)}", flush=True)
else:
    host, port, mib = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for _ in range(100):
        try:
            c = socket.create_connection((host, port)); break
        except OSError:
            time.sleep(0.05)
    chunk = b"x" * (1 << 20)
    for _ in range(mib): c.sendall(chunk)
    c.close()
PY
cp "$scratch/pump.py" "$scratch/pump-shared.py"
results="$scratch/results"; : >"$results"
run_sink() { python3 "$scratch/pump.py" sink "$1" >"$scratch/rate" & sink_pid=$!; }
for r in $(seq "$rounds"); do
  # Bridge: container -> host side.
  run_sink 5201
  "${L[@]}" run --rm -v "$scratch/pump.py:/pump.py:ro" localhost/python python3 /pump.py send 10.77.0.1 5201 "$size"
  wait $sink_pid; echo "bridge $(cat "$scratch/rate")" >>"$results"
  # Floor: a plain namespace joined to this one by a veth pair.
  ip link add vb0 type veth peer name vb1
  ip addr add 10.250.0.1/30 dev vb0; ip link set vb0 up
  run_sink 5202
  unshare --net sh -c "sleep 30" & holder=$!
  sleep 0.2
  ip link set vb1 netns /proc/$holder/ns/net
  nsenter --net=/proc/$holder/ns/net sh -c "ip addr add 10.250.0.2/30 dev vb1; ip link set vb1 up; ip link set lo up; python3 $scratch/pump.py send 10.250.0.1 5202 $size"
  wait $sink_pid; echo "veth $(cat "$scratch/rate")" >>"$results"
  kill $holder; wait $holder 2>/dev/null || true
  ip link del vb0 2>/dev/null || true
done

# Rootless: pasta against slirp4netns, to the host's loopback.
user=layers-bench
id -u "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$user"
grep -q "^$user:" /etc/subuid || usermod --add-subuids 400000-465535 --add-subgids 400000-465535 "$user"
mine="$scratch/$user"; mkdir -p "$mine"; cp -a "$repo/fixtures/cache/python" "$mine/python"; cp "$scratch/pump.py" "$mine/pump.py"; chown -R "$user:" "$mine"
U() { setpriv --reuid="$user" --regid="$user" --init-groups --reset-env -- "$@"; }
U "$layers" --root "$mine/store" load -q -i "$mine/python" >/dev/null
for r in $(seq "$rounds"); do
  for net in "pasta:--map-gw" "slirp4netns:allow_host_loopback=true"; do
    run_sink 5203
    # A transfer the network tool broke (Debian 12's pasta resets one now and then) is counted, not timed.
    if U "$layers" --root "$mine/store" run --rm --network "$net" -v "$mine/pump.py:/pump.py:ro" localhost/python sh -c "python3 /pump.py send \$(ip route | awk '/default/ {print \$3}') 5203 $size"; then
      wait $sink_pid; echo "${net%%:*} $(cat "$scratch/rate")" >>"$results"
    else
      wait $sink_pid || true; echo "${net%%:*}-broken 1" >>"$results"
    fi
  done
done
pkill -u "$user" -f 'layers userns-pause' 2>/dev/null || true

awk "$MEDIAN_AWK"'
  { t[$1] = t[$1] " " $2; stream[$1] = stream[$1] " " $3; stalls[$1] += $4 }
  END {
    printf "== TCP throughput, Python pump, %d MiB, medians of '"$rounds"' (MB/s) ==\n", '"$size"'
    printf "container on the bridge -> host side %.0f   veth pair between namespaces (floor) %.0f   ratio %.2fx (target >= 0.9)\n", median(t["bridge"]), median(t["veth"]), median(t["bridge"]) / median(t["veth"])
    printf "rootless, whole transfers: pasta %.0f   slirp4netns %.0f   pasta/slirp4netns %.2fx (target >= 3)\n", median(t["pasta"]), median(t["slirp4netns"]), median(t["pasta"]) / median(t["slirp4netns"])
    printf "rootless, streaming (median 32 MiB piece): pasta %.0f   slirp4netns %.0f   %.2fx\n", median(stream["pasta"]), median(stream["slirp4netns"]), median(stream["pasta"]) / median(stream["slirp4netns"])
    printf "stalls (pieces under a tenth of the streaming rate): pasta %d, slirp4netns %d; transfers broken: pasta %d, slirp4netns %d\n", stalls["pasta"], stalls["slirp4netns"], split(t["pasta-broken"], b1, " "), split(t["slirp4netns-broken"], b2, " ")
    printf "(pasta here is Debian 12'"'"'s passt 0.0~git20230309: it stalls for seconds mid-transfer, whatever the MTU)\n"
  }' "$results"
