"""Prometheus metrics of the shadow proxy and the nightly replay.

Every metric name the harness exports is declared here, once: the workers and the proxy build
their metrics from this catalogue, the README documents it and a test checks that the Grafana
dashboard asks only for these names (or for the recording rules built on them).

Labels are limited to the migration group, the route template, the verdict, the side and a
reason, each from a small fixed set: never a user, an id or a path with ids in it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric family: its full name (as scraped, with its suffix), type, labels."""

    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str

    @property
    def base(self) -> str:
        """The name prometheus_client is given (counters lose `_total`)."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name


# Seconds; the reference services answer in a few ms on loopback, real ones in tens of ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Written by the mirror workers (prometheus_client multiprocess mode).
EXCHANGES = MetricSpec("parity_shadow_exchanges_total", "counter", ("group", "route", "verdict"),
                       "Mirrored exchanges judged, by migration group, route template and "
                       "verdict")
CRITICAL = MetricSpec("parity_shadow_critical_findings_total", "counter", ("group",),
                      "Critical differences that are not noise (a gate fails on any)")
LATENCY = MetricSpec("parity_shadow_latency_seconds", "histogram", ("group", "side"),
                     "Answer time of the primary and the candidate for mirrored exchanges")
ERRORS = MetricSpec("parity_shadow_errors_total", "counter", ("group", "side", "reason"),
                    "Mirrored exchanges a side answered with a 5xx (server-error) or did not "
                    "answer (no-answer)")
QUEUE_DEPTH = MetricSpec("parity_shadow_queue_depth", "gauge", (),
                         "Exchanges the workers hold (read from the proxy, not finished)")
RECORDED_BYTES = MetricSpec("parity_shadow_recorded_bytes_total", "counter", (),
                            "Bytes written to the recordings")
RECORDING_STOPPED = MetricSpec("parity_shadow_recording_stopped", "gauge", (),
                               "1 while a worker's recording is stopped (disk full...)")

# Counted by the proxy (and the workers' reports), exposed from its counters at scrape time.
CAPTURED = MetricSpec("parity_shadow_captured_total", "counter", (),
                      "Exchanges handed to a mirror worker")
MIRRORED = MetricSpec("parity_shadow_mirrored_total", "counter", (),
                      "Exchanges sent to the candidate (dry runs included)")
DRY_RUNS = MetricSpec("parity_shadow_dry_runs_total", "counter", (),
                      "Exchanges sent to the candidate rewritten as dry runs")
NOT_MIRRORED = MetricSpec("parity_shadow_not_mirrored_total", "counter", ("reason",),
                          "Exchanges not mirrored, by reason (dropped: a worker's queue was "
                          "full; too-large, streams, not-sampled, order-retries-not-resent, "
                          "abandoned, refused-by-proxy)")
WORKER_RESTARTS = MetricSpec("parity_shadow_worker_restarts_total", "counter", (),
                             "Mirror workers that died and were restarted")
WORKER_ERRORS = MetricSpec("parity_shadow_worker_errors_total", "counter", (),
                           "Exchanges a worker failed on (a bug; see the proxy's log)")
NOT_RECORDED = MetricSpec("parity_shadow_not_recorded_total", "counter", (),
                          "Judged exchanges not recorded because recording had stopped")
BREAKER_TRIPS = MetricSpec("parity_shadow_breaker_trips_total", "counter", (),
                           "Breakers tripped (a dry run the candidate did not prove)")
BREAKER_OPEN = MetricSpec("parity_shadow_breaker_open", "gauge", ("route",),
                          "1 for each route whose mirroring a breaker stopped")
OTHER_COUNTS = MetricSpec("parity_shadow_counts_total", "counter", ("reason",),
                          "Any other count of the shadow proxy, by its name")

WORKER_METRICS = (EXCHANGES, CRITICAL, LATENCY, ERRORS, QUEUE_DEPTH, RECORDED_BYTES,
                  RECORDING_STOPPED)
PROXY_METRICS = (CAPTURED, MIRRORED, DRY_RUNS, NOT_MIRRORED, WORKER_RESTARTS, WORKER_ERRORS,
                 NOT_RECORDED, BREAKER_TRIPS, BREAKER_OPEN, OTHER_COUNTS)

# Written by `parity replay --metrics-file` (node_exporter textfile collector).
REPLAY_EXCHANGES = MetricSpec("parity_replay_exchanges", "gauge", ("group", "verdict"),
                              "Exchanges of the last replay, by group and verdict")
REPLAY_CRITICAL = MetricSpec("parity_replay_critical_findings", "gauge", ("group",),
                             "Critical findings of the last replay, by group")
REPLAY_READY = MetricSpec("parity_replay_gate_ready", "gauge", ("group",),
                          "1 when the group's gate held in the last replay, else 0")
REPLAY_FAILURE_RATIO = MetricSpec("parity_replay_failure_ratio", "gauge", ("group",),
                                  "Failing share of the compared exchanges in the last replay")
REPLAY_FINISHED = MetricSpec("parity_replay_last_run_timestamp_seconds", "gauge", (),
                             "When the last replay finished (Unix time)")
REPLAY_METRICS = (REPLAY_EXCHANGES, REPLAY_CRITICAL, REPLAY_READY, REPLAY_FAILURE_RATIO,
                  REPLAY_FINISHED)

ALL_METRICS = WORKER_METRICS + PROXY_METRICS + REPLAY_METRICS


def exported_names() -> set[str]:
    """Every series name a scrape can show (histograms with their _bucket/_sum/_count)."""
    names: set[str] = set()
    for spec in ALL_METRICS:
        names.add(spec.name)
        if spec.kind == "histogram":
            names.update(spec.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names
