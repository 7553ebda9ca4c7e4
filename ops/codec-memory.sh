#!/usr/bin/env bash
# Measures the peak memory of decoding worst-case input entries at the codec
# limits (tests/codec_memory.c), in a build without sanitizers (build-mem/),
# and prints the table docs/operations.md quotes. Extra arguments go to the
# tool, e.g. ops/codec-memory.sh --max-json-nodes 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-mem -DANOMALYD_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-mem -j2 --target codec_memory >/dev/null
exec build-mem/tests/codec_memory "$@"
