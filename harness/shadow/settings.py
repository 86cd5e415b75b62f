"""What a mirror worker process is told when it starts (kept apart from the worker so the proxy
does not import the comparison machinery)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What a worker needs, as plain values (passed as JSON on its command line)."""

    candidate: str
    secondary: str | None = None
    config_path: str | None = None
    recordings: str = "recordings"
    timeout_s: float = 5.0
    queue_size: int = 10_000
    max_inflight: int = 128
    verify: bool = True
    ca_bundle: str | None = None
    breakers: str | None = None  # the breaker file shared by the proxy's workers
    nice: int = 10  # below the proxy's CPU priority: production wins when CPU is short
    idle: bool = True  # SCHED_IDLE: CPU only when nothing else wants it (Linux)
    name: str = "w1"
    metrics_dir: str | None = None  # prometheus_client multiprocess directory (--metrics)
    primary: str | None = None  # where moved exchanges are mirrored (cutover)
    cutover: bool = False  # report judged exchanges at once, for the rollback judge

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> WorkerSettings:
        return cls(**orjson.loads(text))
