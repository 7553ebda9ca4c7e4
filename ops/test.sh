#!/usr/bin/env bash
# The test command: installs dependencies, builds with AddressSanitizer and
# UBSan (-Wall -Wextra -Werror), starts the private Redis and PostgreSQL of
# ops/stack.sh, and runs every CTest test (unit, vectors, integration), then
# ops/valgrind.sh.
#   ops/test.sh            everything
#   ops/test.sh -L unit    extra arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."

ops/install-deps.sh
cmake -S . -B build -DANOMALYD_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

if [ -x ops/stack.sh ]; then
    ops/stack.sh up
    eval "$(ops/stack.sh env)"
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd build && ctest --output-on-failure --no-tests=error "$@")
# The same code without sanitizers, under valgrind memcheck (unit tests,
# vectors, a short service replay); skipped when ctest arguments select a
# subset.
if [ $# -eq 0 ]; then
    ops/valgrind.sh
fi
