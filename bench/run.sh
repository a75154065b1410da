#!/usr/bin/env bash
# run.sh - `make bench`: install the peers, build s3jobfs, start s3rver and PostgreSQL and run
# every workload of bench/bench.py (read its header for BENCH_* settings). The tables go into
# docs/BENCHMARKS.md between its bench markers and the chart into docs/benchmarks.png, unless
# BENCH_REPORT / BENCH_CHART say otherwise; raw numbers are in bench/out/results.json.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bench/deps.sh
make --no-print-directory s3jobfs >/dev/null
export BENCH_REPORT=${BENCH_REPORT-$top/docs/BENCHMARKS.md}
export BENCH_CHART=${BENCH_CHART-$top/docs/benchmarks.png}
if [ "${BENCH_QUICK:-}" = 1 ]; then
	# a quick run tries the harness: it must not overwrite the reported numbers
	BENCH_REPORT=
	BENCH_CHART=$top/bench/out/benchmarks.png
fi
exec tests/with-env.sh --no-swift -- /usr/bin/python3 bench/bench.py
