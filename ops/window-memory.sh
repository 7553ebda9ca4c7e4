#!/usr/bin/env bash
# Measures what anomalyd keeps in memory per mature metric (tests/window_memory.c:
# the real sample windows and state cache, filled for 10,000 metrics of 8,640
# processed samples each, as the service fills them), in a build without
# sanitizers (build-mem/), at the default sample_window_bytes, at a small one and
# with room for every window. Prints one line per setting; docs/performance.md
# quotes them. Extra arguments go to every run, e.g. ops/window-memory.sh --metrics 2000
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-mem -DANOMALYD_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-mem -j2 --target window_memory >/dev/null
for bytes in 0 $((16 << 20)) $((256 << 20)) $((4 << 30)); do
    build-mem/tests/window_memory --window-bytes "$bytes" "$@"
done
