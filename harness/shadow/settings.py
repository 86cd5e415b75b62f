"""What a mirror worker process is told when it starts (kept apart from the worker so the proxy
does not import the comparison machinery). Derived from the declared settings
(`harness.settings`): the defaults are theirs, `derived` fills it from resolved values."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

from harness.settings import SHADOW_DEFAULTS, ShadowSettings, ShadowTargets


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What a worker needs, as plain values (passed as JSON on its command line)."""

    candidate: str
    secondary: str | None = None
    config_path: str | None = None
    recordings: str = ShadowTargets().recordings
    timeout_s: float = SHADOW_DEFAULTS.timeout_s
    queue_size: int = SHADOW_DEFAULTS.queue_size
    max_inflight: int = SHADOW_DEFAULTS.max_inflight
    verify: bool = not ShadowTargets().insecure
    ca_bundle: str | None = None
    breakers: str | None = None  # the breaker file shared by the proxy's workers
    # Below the proxy's CPU priority: production wins when CPU is short.
    worker_nice: int = SHADOW_DEFAULTS.worker_nice
    worker_idle: bool = SHADOW_DEFAULTS.worker_idle  # SCHED_IDLE: CPU nothing else wants
    name: str = "w1"
    metrics_dir: str | None = None  # prometheus_client multiprocess directory (--metrics)

    @classmethod
    def derived(cls, targets: ShadowTargets, shadow: ShadowSettings,
                **more: Any) -> WorkerSettings:
        """The settings of the workers of a proxy run with `targets` and `shadow`; `more` sets
        the worker-only fields (breakers, metrics_dir, name)."""
        return cls(
            candidate=targets.candidate,
            secondary=targets.secondary or None,
            config_path=targets.config or None,
            recordings=targets.recordings,
            timeout_s=shadow.timeout_s,
            queue_size=shadow.queue_size,
            max_inflight=shadow.max_inflight,
            verify=not targets.insecure,
            ca_bundle=targets.ca_bundle or None,
            worker_nice=shadow.worker_nice,
            worker_idle=shadow.worker_idle,
            **more,
        )

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> WorkerSettings:
        return cls(**orjson.loads(text))
