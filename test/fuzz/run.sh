#!/usr/bin/env bash
# Build every test/fuzz/fuzz_*.c as a libFuzzer binary (clang, ASan+UBSan)
# and run each for FUZZ_SECONDS (default 30). Exits non-zero on the first
# build failure or crash. A target includes the .c files it fuzzes itself
# (h2o style); the project's pkg-config libraries are linked for those that
# need them. Seeds: test/fuzz/corpus/<name>/ if present; the working corpus
# and any crash files go to build/fuzz/.
set -euo pipefail

cd "$(dirname "$0")/../.."
secs="${FUZZ_SECONDS:-30}"
out=build/fuzz
mkdir -p "$out"
libs=$(pkg-config --libs openssl libconfig msgpack lmdb libpcre2-8 2>/dev/null || true)
cflags=$(pkg-config --cflags openssl libconfig msgpack lmdb libpcre2-8 2>/dev/null || true)

if ! command -v clang >/dev/null; then
	echo "fuzz: clang not found" >&2
	exit 1
fi

status=0
shopt -s nullglob
for src in test/fuzz/fuzz_*.c; do
	name=$(basename "$src" .c)
	bin="$out/$name"
	echo "== $name: build"
	# shellcheck disable=SC2086
	clang -std=gnu11 -g -O1 -D_GNU_SOURCE -I. $cflags \
	    -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o "$bin" "$src" $libs
	corpus="$out/corpus/$name"
	mkdir -p "$corpus"
	seeds=()
	[ -d "test/fuzz/corpus/$name" ] && seeds=("test/fuzz/corpus/$name")
	echo "== $name: run ${secs}s"
	if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix="$out/$name-" -print_final_stats=1 \
	    "$corpus" "${seeds[@]}" >"$out/$name.log" 2>&1; then
		echo "== $name: FAILED (see $out/$name.log)" >&2
		tail -n 40 "$out/$name.log" >&2
		status=1
		continue
	fi
	grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$out/$name.log" || true
done
exit $status
