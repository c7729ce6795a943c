#!/usr/bin/env bash
# Does parallel gzip decoding (the `lgz` crate, as the oci-image peer uses it) pay on
# this machine? It needs a stream with independent flush points (`pigz -i`); plain
# gzip cannot be split. Times the peer and `layers import` on both encodings of the
# same tar, interleaved, on tmpfs. Run bench/import.sh once first (it builds the input).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-7}
input="$here/cache/debian-rootfs.tar.gz"
indep=/dev/shm/layers-lgz-indep.tar.gz
gzip -dc "$input" | pigz -i -6 >"$indep"
layers="$here/../target/release/layers"
peer="$here/oci-image-peer/target/release/oci-image-peer"
out=$(mktemp)
for _ in $(seq "$rounds"); do
  for f in "$input" "$indep"; do
    n=$(basename "$f")
    rm -rf /dev/shm/layers-lgz && /usr/bin/time -f "oci-image(lgz) $n %e" -a -o "$out" "$peer" "$f" /dev/shm/layers-lgz/p
    rm -rf /dev/shm/layers-lgz && /usr/bin/time -f "layers $n %e" -a -o "$out" "$layers" --root /dev/shm/layers-lgz/s import -q "$f" x >/dev/null
  done
done
rm -rf /dev/shm/layers-lgz "$indep"
sort "$out" | awk '{k = $1 " " $2; v[k] = v[k] " " $3; n[k]++}
  END { for (k in v) { c = split(v[k], a, " "); asort(a); printf "%-52s median %.2f s\n", k, a[int((c + 1) / 2)] } }' | sort
rm -f "$out"
