#!/usr/bin/env bash
# The README's first command: on a fresh Debian 12 machine, install what is
# needed, build, start the private Redis and PostgreSQL (ops/stack.sh),
# create the schema, replay a bundled NAB sample as an HTM model runner
# would (catch-up batches of 1440 rows, then live 1-row batches), run the
# service until it has scored everything, show what arrived, the alerts the
# reference consumer raises, and write a chart and an HTML report.
#
#   ops/demo.sh [CSV]        default: numenta_art_daily_jumpsup (4032 rows)
#
# Afterwards the stack keeps running: `eval "$(ops/stack.sh env)"` and use
# build/anomalyd, build/anomalyctl tail|status; `ops/stack.sh down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

CSV=${1:-tests/data/likelihood/htmengine/numenta_art_daily_jumpsup.inputs.csv}

ops/install-deps.sh
cmake -S . -B build -DANOMALYD_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
ops/stack.sh up
eval "$(ops/stack.sh env)"

build/anomalyctl db init
name="demo-$(date +%H%M%S)"
build/anomalyctl replay --csv "$CSV" --metric "$name" --batch-size 1440 --live-after 2880
echo "== running anomalyd until the input is drained (Ctrl-C stops it cleanly)"
build/anomalyd --exit-when-idle 2000
echo "== anomalyctl status"
build/anomalyctl status
echo "== the last 2 output messages (anomalyctl tail --count 2)"
build/anomalyctl tail --count 2 | cut -c1-600
echo
echo "== alerts (anomalyctl alerts; --max-age 0 because the sample's rows are from 2014)"
build/anomalyctl alerts --max-age 0 --exit-when-idle 1000 2>/dev/null
plot="$PWD/build/demo-plot.svg"
build/anomalyctl plot --metric "$name" --out "$plot" >/dev/null
build/anomalyctl report --out "$PWD/build/report" >/dev/null
echo "== plot: $plot"
echo "== report: $PWD/build/report/index.html"
echo
echo "The stack is still up. Next: eval \"\$(ops/stack.sh env)\"; build/anomalyd"
echo "and, in another shell, build/anomalyctl tail --follow or build/anomalyctl alerts"
