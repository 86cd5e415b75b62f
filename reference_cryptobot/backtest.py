"""Backtest service: start a run (it completes shortly after, in the background), poll it, read its
results and performance, and grid-optimise parameters. Answers follow BacktestResult,
PerformanceMetrics and OptimizationResponse of the spec.

    POST /api/backtest/start            → 202 BacktestResult (status "pending")
    GET  /api/backtest/status/{id}      → BacktestResult without results, plus progress
    GET  /api/backtest/results/{id}     → BacktestResult (results null until completed)
    GET  /api/backtest/performance/{id} → PerformanceMetrics (409 until completed)
    POST /api/backtest/optimize         → OptimizationResponse, ranked by Sharpe ratio
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, model_validator

from reference_cryptobot.clock import as_utc, iso, now_iso
from reference_cryptobot.market import Timeframe
from reference_cryptobot.settings import Settings
from reference_cryptobot.simulation import (
    STRATEGIES,
    BacktestRequest,
    parameter_errors,
    run_backtest,
)

__all__ = ["BacktestRequest", "BacktestRuns", "router", "run_backtest"]

QUEUE_DELAY_S = 0.05  # a run waits this long in "pending" before it starts
MAX_COMBINATIONS = 200


@dataclass(slots=True)
class BacktestRun:
    """One backtest: its request and where it is."""

    id: str
    request: BacktestRequest
    status: str = "pending"
    created_at: str = field(default_factory=now_iso)
    start_time: str | None = None
    completed_at: str | None = None
    results: dict[str, Any] | None = None
    error: str | None = None

    def answer(self, *, with_results: bool) -> dict[str, Any]:
        """The run as a BacktestResult."""
        req = self.request
        answer = {
            "id": self.id,
            "strategy": req.strategy,
            "parameters": req.parameters,
            "symbol": req.symbol,  # as sent, as the real service stores it
            "exchange": req.exchange.lower(),
            "timeframe": req.timeframe.value,
            "start_date": iso(req.start_date),
            "end_date": iso(req.end_date),
            "initial_capital": req.initial_capital,
            "status": self.status,
            "start_time": self.start_time or self.created_at,
            "end_time": self.completed_at,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "error": self.error,
        }
        if with_results:
            answer["results"] = self.results
        else:
            answer["progress"] = {"pending": 0.0, "running": 0.5}.get(self.status, 1.0)
        return answer


class BacktestRuns:
    """Every run of this process, by id, and the background tasks completing them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runs: dict[str, BacktestRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    def submit(self, request: BacktestRequest) -> BacktestRun:
        """Queue a run; it completes in the background."""
        run = BacktestRun(id=str(uuid.uuid4()), request=request)
        with self._lock:
            self._runs[run.id] = run
        task = asyncio.get_running_loop().create_task(self._complete(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    async def _complete(self, run: BacktestRun) -> None:
        await asyncio.sleep(QUEUE_DELAY_S)
        run.status, run.start_time = "running", now_iso()
        try:
            results = await asyncio.to_thread(run_backtest, self.settings, run.request)
        except ValueError as exc:  # reported on the run, as the real service does
            run.status, run.error, run.completed_at = "failed", str(exc), now_iso()
            return
        run.results, run.status, run.completed_at = results, "completed", now_iso()

    def get(self, backtest_id: str) -> BacktestRun:
        """The run with this id; 404 otherwise."""
        run = self._runs.get(backtest_id)
        if run is None:
            raise HTTPException(status_code=404, detail=f"Backtest {backtest_id} not found")
        return run

    async def close(self) -> None:
        """Cancel runs still in flight (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class ParameterRange(BaseModel):
    """ParameterRange of the spec (start_value..end_value by step, inclusive), or explicit
    `values`."""

    name: str = Field(min_length=1)
    start_value: float | None = None
    end_value: float | None = None
    step: float | None = Field(default=None, gt=0)
    values: list[float] | None = Field(default=None, min_length=1, max_length=MAX_COMBINATIONS)

    @model_validator(mode="after")
    def _complete(self) -> ParameterRange:
        if self.values is None and None in (self.start_value, self.end_value, self.step):
            raise ValueError("give start_value, end_value and step (or values)")
        if self.values is None and self.end_value < self.start_value:
            raise ValueError("end_value must not be below start_value")
        return self

    def grid(self) -> list[int | float]:
        """The values this range takes (integers where integral)."""
        if self.values is not None:
            raw = self.values
        else:
            count = int((self.end_value - self.start_value) / self.step + 1e-9) + 1
            raw = [self.start_value + k * self.step for k in range(min(count,
                                                                       MAX_COMBINATIONS + 1))]
        return [int(v) if float(v).is_integer() else round(v, 10) for v in raw]


class OptimizationRequest(BaseModel):
    """OptimizationRequest of the spec, plus `exchange`, `initial_capital` and fixed
    `parameters` (e.g. the fee) applied to every combination."""

    strategy_name: str
    parameter_ranges: list[ParameterRange] = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    symbol: str
    exchange: str = "binance"
    timeframe: Timeframe
    start_date: datetime
    end_date: datetime
    initial_capital: float = Field(default=10_000.0, gt=0, le=1e12, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> OptimizationRequest:
        if self.strategy_name not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy_name!r} "
                             f"(known: {', '.join(STRATEGIES)})")
        if as_utc(self.end_date) <= as_utc(self.start_date):
            raise ValueError("end_date must be after start_date")
        return self

    def combinations(self) -> list[dict[str, Any]]:
        """Every parameter set of the grid, in grid order."""
        names = [r.name for r in self.parameter_ranges]
        grids = [r.grid() for r in self.parameter_ranges]
        total = 1
        for grid in grids:
            total *= len(grid)
        if total > MAX_COMBINATIONS:
            raise RequestValidationError([{
                "type": "value_error", "loc": ("body", "parameter_ranges"),
                "msg": f"Value error, {total} combinations; at most {MAX_COMBINATIONS}",
                "input": None,
            }])
        return [{**self.parameters, **dict(zip(names, values, strict=True))}
                for values in itertools.product(*grids)]


def _by_sharpe(result: dict[str, Any]) -> tuple[bool, float]:
    sharpe = result["metrics"]["sharpe_ratio"]
    return sharpe is None, -(sharpe or 0.0)


def _runs(request: Request) -> BacktestRuns:
    return request.app.state.backtests


def _check_parameters(parameters: dict[str, Any]) -> None:
    errors = parameter_errors(parameters)
    if errors:
        raise RequestValidationError(errors)


router = APIRouter(tags=["backtest"])


@router.post("/api/backtest/start", status_code=202)
async def start_backtest(request: Request, body: BacktestRequest) -> dict[str, Any]:
    """Queue a backtest; poll its status, then read its results."""
    _check_parameters(body.parameters)
    return _runs(request).submit(body).answer(with_results=False)


@router.get("/api/backtest/status/{backtest_id}")
def backtest_status(request: Request, backtest_id: str) -> dict[str, Any]:
    """Where a backtest is: pending, running, completed or failed."""
    return _runs(request).get(backtest_id).answer(with_results=False)


@router.get("/api/backtest/results/{backtest_id}")
def backtest_results(request: Request, backtest_id: str) -> dict[str, Any]:
    """A backtest with its results (null until it has completed)."""
    return _runs(request).get(backtest_id).answer(with_results=True)


@router.get("/api/backtest/performance/{backtest_id}")
def backtest_performance(request: Request, backtest_id: str) -> dict[str, Any]:
    """The performance metrics of a completed backtest."""
    run = _runs(request).get(backtest_id)
    if run.status != "completed" or run.results is None:
        raise HTTPException(status_code=409,
                            detail=f"Backtest {backtest_id} is {run.status}, not completed")
    return run.results["metrics"]


@router.post("/api/backtest/optimize")
async def optimize(request: Request, body: OptimizationRequest) -> dict[str, Any]:
    """Backtest every combination of the parameter ranges; best Sharpe ratio first."""
    combinations = body.combinations()
    for parameters in combinations:
        _check_parameters(parameters)
    settings: Settings = request.app.state.settings
    created_at = now_iso()

    def evaluate() -> list[dict[str, Any]]:
        ranked = []
        for parameters in combinations:
            run = BacktestRequest(
                strategy=body.strategy_name, parameters=parameters, symbol=body.symbol,
                exchange=body.exchange, timeframe=body.timeframe, start_date=body.start_date,
                end_date=body.end_date, initial_capital=body.initial_capital)
            ranked.append({"parameters": parameters,
                           "metrics": run_backtest(settings, run)["metrics"]})
        ranked.sort(key=_by_sharpe)  # stable: grid order on ties

        return ranked

    try:
        results = await asyncio.to_thread(evaluate)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    return {
        "optimization_id": str(uuid.uuid4()),
        "strategy_name": body.strategy_name,
        "symbol": body.symbol,  # as sent, as the real service answers
        "exchange": body.exchange.lower(),
        "timeframe": body.timeframe.value,
        "start_date": iso(body.start_date),
        "end_date": iso(body.end_date),
        "status": "completed",
        "best_parameters": results[0]["parameters"] if results else None,
        "results": results,
        "created_at": created_at,
        "completed_at": now_iso(),
    }


def install(app: FastAPI, settings: Settings) -> None:
    """Add the backtest service (routes and state) to the app."""
    app.state.backtests = BacktestRuns(settings)
    app.include_router(router)
