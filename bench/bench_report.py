"""Bench the report: build time and file size for 10k and 100k synthetic judged exchanges,
beside a baseline (only stream-parsing the same JSONL with orjson).

    .venv/bin/python bench/bench_report.py [--sizes 10000,100000] [--keep DIR]

Goal: 100k exchanges in under 10 s, the HTML file under 5 MB.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from report_data import scenario, write_jsonl  # noqa: E402

from harness.report import ReportBuilder, write_report  # noqa: E402
from harness.report.sources import iter_sources  # noqa: E402

GOAL_SECONDS = 10.0
GOAL_BYTES = 5 * 1024 * 1024
DRIFTS = ("fee-rounding", "amount-precision", "token-lifetime")


def baseline(path: Path) -> float:
    """Seconds to stream-parse every line with orjson and nothing else."""
    start = time.perf_counter()
    with open(path, "rb") as handle:
        for line in handle:
            orjson.loads(line)
    return time.perf_counter() - start


def build(path: Path, out: Path) -> tuple[float, float, float, int]:
    """(aggregate seconds incl. parsing, render+write seconds, total, HTML bytes)."""
    start = time.perf_counter()
    builder = ReportBuilder()
    for record in iter_sources([path]):
        builder.add_record(record)
    counted = time.perf_counter()
    write_report(builder, out, json_out=out.with_suffix(".json"))
    done = time.perf_counter()
    return counted - start, done - counted, done - start, out.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--keep", metavar="DIR", help="keep the data and reports in DIR")
    args = parser.parse_args()
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-report-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"{'n':>8} {'jsonl MB':>9} {'parse s':>8} {'read+count s':>13} {'render s':>9} "
        f"{'total s':>8} {'x parse':>7} {'µs/exch':>8} {'html KB':>8}  goal"
    )
    failed = False
    for n in (int(s) for s in args.sizes.split(",")):
        data = workdir / f"exchanges-{n}.jsonl"
        if not data.exists():
            write_jsonl(
                data,
                scenario(
                    n, drifts=DRIFTS, hostile=True, untestable=("mcp",), candidate_errors=0.002
                ),
            )
        gc.collect()
        parse_s = min(baseline(data) for _ in range(2))
        gc.collect()
        count_s, render_s, total_s, size = build(data, workdir / f"report-{n}.html")
        ok = total_s < GOAL_SECONDS * n / 100_000 + 1 and size < GOAL_BYTES
        failed |= not ok
        print(
            f"{n:>8} {data.stat().st_size / 1e6:>9.1f} {parse_s:>8.2f} {count_s:>13.2f} "
            f"{render_s:>9.2f} {total_s:>8.2f} {total_s / parse_s:>7.2f} "
            f"{total_s / n * 1e6:>8.1f} {size / 1024:>8.0f}  {'ok' if ok else 'MISSED'}"
        )
    print(f"data and reports in {workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
