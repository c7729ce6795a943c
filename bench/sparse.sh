#!/usr/bin/env bash
# Sparse-file benchmark (issue 26): a 5 KB PAX-sparse tar holding a 60 GB file with
# 9 bytes of data, imported by `layers import` and extracted by GNU `tar -xf` (the
# anchor, and the floor: creating one file and seeking), then `layers fsck` over the
# store. Interleaved rounds on tmpfs; prints medians and the ratio. With
# LAYERS_BEFORE=/path/to/older/layers the older binary runs in the same rounds, for a
# side-by-side table against a previous commit (each of its rounds capped at 120 s).
#
# usage: bench/sparse.sh [ROUNDS]        (default 7; run as root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
rounds=${1:-7}
source "$here/lib.sh"
ensure_packages tar python3
build_layers
before=${LAYERS_BEFORE:-}
fresh_scratch sparse
results="$scratch/results"
: >"$results"

tarball="$scratch/sparse.tar"
python3 - "$tarball" <<'PY'
import io, sys, tarfile
size = 60_000_000_000
t = tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT)
# PAX sparse 0.1 as GNU tar writes it: the map in records, the data after the header.
info = tarfile.TarInfo("GNUSparseFile.0/big")
info.size = 9
info.pax_headers = {"GNU.sparse.name": "big", "GNU.sparse.size": str(size), "GNU.sparse.numblocks": "2",
                    "GNU.sparse.map": f"0,5,{size - 4},4"}
t.addfile(info, io.BytesIO(b"startend!"))
t.close()
PY
echo "input: $(stat -c %s "$tarball") bytes, one 60 GB sparse file"

for i in $(seq "$rounds"); do
  rm -rf "$scratch/store" "$scratch/tar-out"; mkdir -p "$scratch/tar-out"
  time_it "layers-import" "$layers" --root "$scratch/store" import -q "$tarball" sparse
  time_it "layers-fsck" "$layers" --root "$scratch/store" fsck
  time_it "gnu-tar-xf" tar -xf "$tarball" -C "$scratch/tar-out"
  if [ -n "$before" ]; then
    rm -rf "$scratch/store-before"
    time_it "before-import" timeout 120 "$before" --root "$scratch/store-before" import -q "$tarball" sparse
    time_it "before-fsck" timeout 120 "$before" --root "$scratch/store-before" fsck
  fi
done
rm -rf "$scratch/store" "$scratch/store-before" "$scratch/tar-out"

awk "$MEDIAN_AWK"'
  { t[$1] = t[$1] " " $2 }
  END {
    printf "%-16s %10s\n", "what", "median s"
    for (k in t) { m[k] = median(t[k]); printf "%-16s %10.4f\n", k, m[k] }
    printf "floor (GNU tar -xf: one file made, its holes seeked over): %.4f s\n", m["gnu-tar-xf"]
    printf "ratio layers import / tar -xf: %.2f\n", m["layers-import"] / m["gnu-tar-xf"]
    printf "layers import: %.1f ms (issue 30 target: <= 20 ms)\n", m["layers-import"] * 1000
    if ("before-import" in m) printf "ratio before / now: import %.1f, fsck %.1f\n", m["before-import"] / m["layers-import"], m["before-fsck"] / m["layers-fsck"]
  }' "$results"
