#!/usr/bin/env bash
# Nightly shadow replay: replays the previous UTC day's recording segments against the native
# candidate, keeps a dated HTML report and JSON summary, and exits with the gate's verdict
# (0 every group ready, 1 a gate failed, 2 usage/config error).
#
# Settings come from the environment (see parity.env.example):
#   PARITY_RECORDINGS  directory of segments      PARITY_REPORTS  where dated reports are kept
#   PARITY_CANDIDATE   native base URL            PARITY_PRIMARY  live primary (optional)
#   PARITY_CONFIG      parity.toml (optional)     PARITY_DAY      YYYYMMDD to replay (default: yesterday, UTC)
#   PARITY_BIN         the parity executable (default: parity on PATH)
set -euo pipefail

: "${PARITY_RECORDINGS:?set PARITY_RECORDINGS to the recordings directory}"
: "${PARITY_REPORTS:?set PARITY_REPORTS to the reports directory}"
: "${PARITY_CANDIDATE:?set PARITY_CANDIDATE to the native base URL}"
day="${PARITY_DAY:-$(date -u -d yesterday +%Y%m%d)}"
parity="${PARITY_BIN:-parity}"

shopt -s nullglob
segments=("$PARITY_RECORDINGS"/*-"$day"T*.jsonl "$PARITY_RECORDINGS"/*-"$day"T*.jsonl.gz)
if [ "${#segments[@]}" -eq 0 ]; then
    echo "nightly-replay: no segments for $day in $PARITY_RECORDINGS: nothing to gate on" >&2
    exit 2
fi

mkdir -p "$PARITY_REPORTS"
args=(replay "${segments[@]}" --candidate "$PARITY_CANDIDATE" --no-progress
      --report "$PARITY_REPORTS/replay-$day.html" --json "$PARITY_REPORTS/replay-$day.json")
[ -n "${PARITY_PRIMARY:-}" ] && args+=(--primary "$PARITY_PRIMARY")
[ -n "${PARITY_CONFIG:-}" ] && args+=(--config "$PARITY_CONFIG")
# Per-group results for node_exporter's textfile collector (a path ending in .prom).
[ -n "${PARITY_METRICS_FILE:-}" ] && args+=(--metrics-file "$PARITY_METRICS_FILE")
exec "$parity" "${args[@]}"
