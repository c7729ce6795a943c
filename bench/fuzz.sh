#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo fuzz, libFuzzer) for
# SECONDS each, two at a time (FUZZ_JOBS), starting from seeds made here by
# independent tools (GNU tar in each format, Python's tarfile via the hostile-layer
# generator, the golden Dockerfiles, the fixture images' JSON) plus the corpus files
# kept in fuzz/corpus/TARGET/. A crash is saved by libFuzzer under
# fuzz/artifacts/TARGET/ and copied into fuzz/corpus/TARGET/, which `cargo test`
# replays on stable (tests/fuzz_corpus.rs): commit it with its fix.
#
# usage: bench/fuzz.sh [SECONDS] [TARGET...]   (default 60 s, every target; needs
# the nightly toolchain: without it, says so and exits 0). FUZZ_JOBS=N targets at
# once (default 2, one per core).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
secs=${1:-60}
shift || true
all=(tar_reader unpack tar_roundtrip dockerfile reference oci_json seccomp_profile tar_differential template)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "bench/fuzz.sh: no nightly toolchain here: nothing fuzzed (rustup toolchain install nightly)"
  exit 0
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked -q
source "$here/lib.sh"
ensure_packages tar python3
work=${FUZZ_WORK:-/dev/shm/layers-fuzz}
# The corpora grown by earlier runs are kept (FUZZ_WORK on tmpfs: until reboot).
rm -rf "$work/seeds" "$work/tmp" "$work/hostile" "$work/victim"; mkdir -p "$work/seeds"
export FUZZ_TMP="$work/tmp"; mkdir -p "$FUZZ_TMP"

# Seeds, by the kind of input.
s="$work/seeds"; mkdir -p "$s/tar" "$s/dockerfile" "$s/reference" "$s/oci_json" "$s/seccomp_profile" "$s/src"
src="$s/src"; mkdir -p "$src/d/e"; echo hello >"$src/d/f"; ln -s f "$src/d/l"; ln "$src/d/f" "$src/d/h"
mkfifo "$src/d/p"; setfattr -n user.k -v v "$src/d/f" 2>/dev/null || true
truncate -s 1M "$src/d/sparse"; echo x | dd of="$src/d/sparse" bs=1 seek=500000 conv=notrunc status=none
long="$src/$(printf 'n%.0s' $(seq 120))"; mkdir -p "$long"; echo long >"$long/$(printf 'm%.0s' $(seq 120))"
for f in ustar gnu pax v7 oldgnu; do tar --format=$f -cf "$s/tar/$f.tar" -C "$src" d 2>/dev/null || true; done
tar --format=posix --xattrs -cf "$s/tar/xattrs.tar" -C "$src" d
tar --format=gnu -S -cf "$s/tar/sparse-old.tar" -C "$src" d/sparse
for v in 0.0 0.1 1.0; do tar --format=posix --sparse-version=$v -S -cf "$s/tar/sparse-$v.tar" -C "$src" d/sparse; done
tar --format=gnu -cf "$s/tar/longnames.tar" -C "$src" "$(basename "$long")"
tar --format=posix -cf "$s/tar/longnames-pax.tar" -C "$src" "$(basename "$long")"
mkdir -p "$work/victim"
python3 "$repo/fixtures/hostile/generate.py" "$work/hostile" "$work/victim" >/dev/null
for f in "$work/hostile"/*.tar; do [ "$(stat -c %s "$f")" -lt 1048576 ] && cp "$f" "$s/tar/"; done
for f in "$repo"/fixtures/dockerfile/*/Dockerfile "$repo"/Dockerfile-examples/*/Dockerfile; do
  cp "$f" "$s/dockerfile/$(basename "$(dirname "$f")")"
done
i=0; for r in busybox docker.io/library/busybox:1.36 localhost:5000/a/b:c@sha256:$(printf 'a%.0s' $(seq 64)) \
  127.0.0.1:8080/x FOO/bar ghcr.io/o/r:t_1.2-x; do printf '%s' "$r" >"$s/reference/$i"; i=$((i + 1)); done
bash "$repo/fixtures/build.sh" >/dev/null
cp "$repo/fixtures/cache/oci/index.json" "$s/oci_json/index.json"
for b in "$repo"/fixtures/cache/oci/blobs/sha256/*; do
  [ "$(stat -c %s "$b")" -lt 65536 ] && head -c 1 "$b" | grep -q '{' && cp "$b" "$s/oci_json/"
done
printf '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},{"names":["clone"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}' >"$s/seccomp_profile/profile.json"

# The kind of input a target takes: its seeds, and its directory under fuzz/corpus/.
seeds_of() { case $1 in tar_reader | unpack | tar_differential | tar_roundtrip) echo tar ;; *) echo "$1" ;; esac; }

# No sanitizer by default: layers-store is #![forbid(unsafe_code)] and the binary's
# parsers compiled into the targets have no unsafe block, so AddressSanitizer finds
# nothing there a panic would not, and costs 2-5x the executions. FUZZ_SANITIZER=address
# turns it back on (for the C decoders underneath, say).
san=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-2}
# Unpacking writes files: past 64 KiB an input mostly costs write and hash time.
max_len_of() { case $1 in unpack) echo 65536 ;; *) echo 262144 ;; esac; }
(cd "$repo/fuzz" && cargo +nightly fuzz build -O -s "$san" >/dev/null 2>&1) || { echo "cargo fuzz build failed"; exit 1; }
run_one() { # target
  local t=$1 c="$work/corpus/$1"
  local kept="$repo/fuzz/corpus/$(seeds_of "$t")"
  mkdir -p "$c" "$repo/fuzz/artifacts/$t" "$kept"
  cp "$s/$(seeds_of "$t")"/* "$c/" 2>/dev/null || true
  cp "$kept"/* "$c/" 2>/dev/null || true
  (cd "$repo/fuzz" && cargo +nightly fuzz run -O -s "$san" "$t" "$c" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len_of "$t")" -print_final_stats=1 -artifact_prefix="$repo/fuzz/artifacts/$t/") >"$work/$t.log" 2>&1 || true
  for a in "$repo/fuzz/artifacts/$t"/*; do if [ -f "$a" ]; then cp "$a" "$kept/$t-$(basename "$a")"; fi; done
  return 0
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ $running -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait

printf '%-18s %14s %10s %8s\n' target executions "exec/s" crashes
for t in "${targets[@]}"; do
  n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' | tail -1 || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' | tail -1 || true)
  crashes=$(find "$repo/fuzz/artifacts/$t" -type f 2>/dev/null | wc -l)
  printf '%-18s %14s %10s %8s\n' "$t" "${n:-?}" "${rate:-?}" "$crashes"
done
echo "logs: $work/*.log"
