"""`parity replay --metrics-file PATH.prom`: the nightly replay's per-group results in the
node_exporter textfile-collector format (the convention for batch jobs), written atomically (a
temporary file beside it, then a rename) so the collector never reads half a file."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness import metrics as m
from harness.judge.gate import FAILING, GateResult, Tally

if TYPE_CHECKING:  # prometheus_client is imported when metrics are asked for
    from prometheus_client.core import GaugeMetricFamily, Metric


def check_metrics_file(path: str) -> None:
    """ValueError (one line) unless `path` can be a textfile-collector file: ends in .prom (the
    collector reads nothing else) in an existing directory."""
    if not path.endswith(".prom"):
        raise ValueError(f"--metrics-file {path!r}: must end in .prom (the textfile collector "
                         "reads only those)")
    parent = Path(path).parent
    if not parent.is_dir():
        raise ValueError(f"--metrics-file {path!r}: no such directory {str(parent)!r}")


class _ReplayCollector:
    def __init__(self, results: Mapping[str, tuple[GateResult, Tally]], finished: float) -> None:
        self.results = results
        self.finished = finished

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        def family(spec: m.MetricSpec) -> GaugeMetricFamily:
            return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)

        exchanges, critical = family(m.REPLAY_EXCHANGES), family(m.REPLAY_CRITICAL)
        ready, failure = family(m.REPLAY_READY), family(m.REPLAY_FAILURE_RATIO)
        for group, (result, tally) in sorted(self.results.items()):
            # Failing verdicts always present (as 0), so an alert on them sees every group.
            counts = {**dict.fromkeys(FAILING, 0), **tally.verdicts}
            for verdict, count in sorted(counts.items()):
                exchanges.add_metric([group, verdict], count)
            critical.add_metric([group], tally.critical)
            ready.add_metric([group], 1 if result.passed else 0)
            failure.add_metric([group], tally.failure_rate)
        finished = family(m.REPLAY_FINISHED)
        finished.add_metric([], self.finished)
        yield from (exchanges, critical, ready, failure, finished)


def write_replay_metrics(path: str | os.PathLike[str],
                         results: Mapping[str, tuple[GateResult, Tally]],
                         finished: float | None = None) -> None:
    """Write the per-group `results` (see `harness.judge.gate.gate_groups`) to `path`
    atomically. Raises OSError when it cannot be written."""
    from prometheus_client import CollectorRegistry, write_to_textfile

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReplayCollector(results, time.time() if finished is None else finished))
    write_to_textfile(str(path), registry)
