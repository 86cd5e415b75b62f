"""The cutover in the proxy process: the routing decision on the hot path, the rollback judge fed
by the workers, the state, and the admin listener `parity cutover` talks to.

The admin listener is a separate socket (default 127.0.0.1), never the public listener; every
request needs `Authorization: Bearer <token>` (`--admin-token-file` or PARITY_ADMIN_TOKEN).

    GET  /cutover/status                              the status (see `status`)
    POST /cutover/advance   {"group", "percent"}      percent: 0-100 or "adopters"
    POST /cutover/rollback  {"group", "reason"}
    POST /cutover/resume    {"group"}

Orders execute once: an unsafe request with an idempotency identifier (``client_order_id``,
``Idempotency-Key``...) is pinned to the side that got its first attempt, whatever the share says
later and across restarts (the pin is on disk before the request is sent: harness.cutover.orders);
a retry pinned to an unreachable candidate is answered 503 by the proxy, never sent to the
primary.
"""

from __future__ import annotations

import hmac
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from mitmproxy import http

from harness.cutover import serve
from harness.cutover.identity import identity_of
from harness.cutover.judge import UNREACHABLE, Judged, RollbackJudge
from harness.cutover.orders import OrderPins, journal_path
from harness.cutover.state import CutoverError, CutoverState, GroupState
from harness.cutover.tokens import session_for, token_exchange_problem
from harness.cutover.upstream import CandidateClient
from harness.mirror.policy import idempotency_key
from harness.model import SAFE_METHODS, Body, Request
from harness.routes import GROUPS

log = logging.getLogger("parity.cutover")

ADMIN_TOKEN_ENV = "PARITY_ADMIN_TOKEN"
REMEMBERED_ORDERS = 100_000
MAX_SEEN = 100_000  # identities remembered per group for the status
ROLLBACKS = "cutover-rollbacks"  # counted with the shadow counters


def read_admin_token(token_file: str | None) -> str:
    """The admin token from `token_file`, else PARITY_ADMIN_TOKEN; ValueError (one line) when
    there is none or it is empty."""
    import os

    if token_file:
        try:
            text = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"admin token file {token_file}: cannot read it "
                             f"({type(exc).__name__})") from None
        if not text:
            raise ValueError(f"admin token file {token_file} is empty")
        return text.splitlines()[0]
    token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if not token:
        raise ValueError(f"the admin listener needs a token: --admin-token-file FILE or "
                         f"{ADMIN_TOKEN_ENV}")
    return token


def bind(host: str, port: int) -> socket.socket:
    """The admin listener's socket, bound now so a taken port fails the start (OSError)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class CutoverControl:
    """Routing, judging and control of the cutover for one proxy (see the module)."""

    def __init__(self, *, config: Any, primary: str, candidate: str, state_path: Path,
                 admin_token: str, timeout_s: float, verify: Any, mark_served: bool,
                 counters: Any = None) -> None:
        self.config = config
        self.plan = config.cutover
        self.routes = config.routes
        self.primary, self.candidate = primary.rstrip("/"), candidate.rstrip("/")
        self.state_path = state_path
        self.admin_token = admin_token
        self.timeout_s = timeout_s
        self.verify = verify
        self.mark_served = mark_served
        self.counters = counters
        self.state = CutoverState.load(state_path, self.plan.early_adopters)  # CutoverError
        self.judge = RollbackJudge(self.plan, config.gates)
        self.pins = OrderPins(journal_path(state_path), REMEMBERED_ORDERS)  # OSError
        self.seen: dict[str, OrderedDict[str, None]] = {}
        self.client: Any = None  # aiohttp, for the token check
        self.upstream: Any = None  # the hot path's client to the candidate
        self._runner: web.AppRunner | None = None
        self.state.save(state_path)  # a new key is kept before the first request (OSError)

    async def start(self, sock: socket.socket) -> None:
        """Serve the admin listener on `sock` and open the client to the candidate."""
        self.client = session_for(self.timeout_s, self.verify)
        self.upstream = CandidateClient(self.candidate, self.timeout_s, self.verify)
        app = web.Application(middlewares=[self._authorised])
        app.router.add_get("/cutover/status", self._status)
        app.router.add_post("/cutover/advance", self._advance)
        app.router.add_post("/cutover/rollback", self._rollback)
        app.router.add_post("/cutover/resume", self._resume)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.client is not None:
            await self.client.close()
            await self.upstream.close()
        self.pins.close()

    # --- the hot path ------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        """Decide who answers `flow`; a moved request is answered here, by the candidate. An
        order (an unsafe request with an idempotency identifier) is pinned, on disk, to the side
        it is sent to before it is sent; its retries follow the pin."""
        request = flow.request
        method = request.method.upper()
        order = _order_key(request) if method not in SAFE_METHODS else None
        if order is not None:
            pinned = await self.pins.side(order)
            if pinned is not None:
                if pinned == "candidate":
                    await self._serve(flow, None, order=order, pinned=True)
                return
        group = self._moved_group(flow, method)
        if order is None:
            if group is not None:
                await self._serve(flow, group, order=None, pinned=False)
            return
        try:  # (no await since `side` said the order is not pinned: see OrderPins.attempt)
            async with self.pins.attempt(order, "primary" if group is None else "candidate"):
                if group is not None:
                    await self._serve(flow, group, order=order, pinned=False)
        except OSError as exc:
            _refuse_unpinned(flow, exc, self.pins.path)

    def _moved_group(self, flow: http.HTTPFlow, method: str) -> str | None:
        """The migration group whose candidate serves `flow` (its identity is moved), or None
        when the primary does."""
        request = flow.request
        if not self.state.active or request.headers.get("upgrade"):
            return None
        group = self.routes.match(method, request.path.partition("?")[0]).group
        state = self.state.groups.get(group)
        if state is None or not state.active:
            return None
        peer = flow.client_conn.peername
        identity = identity_of(request.headers.fields, peer[0] if peer else "", self.plan.identity)
        seen = self.seen.setdefault(group, OrderedDict())
        if identity not in seen:
            seen[identity] = None
            if len(seen) > MAX_SEEN:
                seen.popitem(last=False)
        return group if self.state.moves(group, identity) else None

    async def _serve(self, flow: http.HTTPFlow, group: str | None, *, order: str | None,
                     pinned: bool) -> None:
        outcome, error = await serve.serve_from_candidate(self.upstream, flow)
        if outcome == serve.FELL_THROUGH:
            if pinned:  # its first attempt went to the candidate: never to the primary too
                _refuse(flow, "this order was first sent to the native service, which is "
                              "unreachable; it is not sent elsewhere")
                return
            if order is not None:  # not sent to the candidate: pinned to the primary instead
                try:
                    await self.pins.move(order, "primary")
                except OSError as exc:
                    _refuse_unpinned(flow, exc, self.pins.path)
                    return
            if group is not None:
                self.rollback(group, f"candidate unreachable ({error})" if error.startswith(
                    UNREACHABLE) else f"candidate failed a moved request ({error}); the "
                    "primary answered it", automatic=True)
            return
        flow.metadata["parity_served"] = "candidate"
        if outcome == serve.FAILED:
            log.warning("cutover: %s %s failed on the candidate after it was sent (%s); not "
                        "retried", flow.request.method, flow.request.path, error)
            if group is not None:
                self.rollback(group, f"candidate failed a moved {flow.request.method} after it "
                              f"was sent ({error}); answered 502, not retried", automatic=True)

    # --- judged exchanges from the workers ---------------------------------------------------

    def take(self, items: list[Any]) -> None:
        """Count judged exchanges (`Judged` wire lists) and roll back a group that breaches."""
        now = time.monotonic()
        touched: set[str] = set()
        for raw in items:
            try:
                item = Judged.from_wire(raw)
            except (ValueError, TypeError):
                continue
            urgent = self.judge.add(item, now)
            state = self.state.groups.get(item.group)
            if state is None or not state.active:
                continue
            if urgent:
                self.rollback(item.group, urgent, automatic=True)
            else:
                touched.add(item.group)
        for group in touched:
            if self.state.groups[group].active and (why := self.judge.verdict(group, now)):
                self.rollback(group, why, automatic=True)

    def rollback(self, group: str, reason: str, *, automatic: bool) -> str:
        """Drop `group` to 0 % now (the flip takes effect before the state is written)."""
        line = self.state.rollback(group, reason, time.time(), automatic=automatic)
        self.judge.reset(group)
        if self.counters is not None:
            self.counters.add(ROLLBACKS)
        (log.critical if automatic else log.warning)("cutover: %s%s", line,
                                                     " (automatic)" if automatic else "")
        self._save()
        return line

    def _save(self) -> None:
        try:
            self.state.save(self.state_path)
        except OSError as exc:
            log.error("cutover: cannot write the state to %s (%s): a restart would not route "
                      "as now", self.state_path, exc)

    # --- status and the admin listener -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Each group's share, moved identities (of those seen), clean clock and last rollback."""
        now = time.time()
        groups = {}
        for name in GROUPS:
            state = self.state.groups.get(name) or GroupState()
            seen: Mapping[str, None] = self.seen.get(name, {})
            groups[name] = {
                "share": state.share, "adopters": state.adopters,
                "moved_identities": sum(1 for i in seen if self.state.moves(name, i)),
                "seen_identities": len(seen), "since": state.since,
                "clean_clock_s": self.state.clean_clock(name, now),
                "last_rollback": state.last_rollback,
            }
        return {"now": now, "groups": groups, "rollbacks": self.state.rollbacks,
                "early_adopters": list(self.state.early_adopters),
                "history": self.state.history[-20:], "state_file": str(self.state_path)}

    @web.middleware
    async def _authorised(self, request: web.Request, handler: Any) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self.admin_token.encode()):
            return _error(401, "a valid admin token is required (Authorization: Bearer ...)")
        return await handler(request)

    async def _status(self, request: web.Request) -> web.Response:
        return _json(self.status())

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise CutoverError("expected a JSON object") from None
        if not isinstance(body, dict) or not isinstance(body.get("group"), str):
            raise CutoverError("expected a JSON object with a group")
        return body

    async def _advance(self, request: web.Request) -> web.Response:
        return await self._change(request, "advance")

    async def _rollback(self, request: web.Request) -> web.Response:
        return await self._change(request, "rollback")

    async def _resume(self, request: web.Request) -> web.Response:
        return await self._change(request, "resume")

    async def _change(self, request: web.Request, kind: str) -> web.Response:
        try:
            body = await self._body(request)
            group = body["group"]
            if group not in GROUPS:
                raise CutoverError(f"unknown group {group!r} (known: {', '.join(GROUPS)})")
            if kind == "rollback":
                line = self.rollback(group, str(body.get("reason") or "rolled back by hand"),
                                     automatic=False)
                return _json({"message": line, "status": self.status()})
            before = self.state.to_dict()
            was_active = self.state.group(group).active
            if kind == "advance":
                percent = body.get("percent")
                if not isinstance(percent, int | float | str) or isinstance(percent, bool):
                    raise CutoverError(f"advance {group}: expected a percent, got {percent!r}")
                line = self.state.advance(group, percent, time.time())
            else:
                line = self.state.resume(group, time.time())
            if self.state.group(group).active and not was_active \
                    and group in self.plan.needs_auth:
                problem = await self._token_problem()
                if problem:
                    self._restore(before)
                    return _error(409, f"{group} not moved: {problem}")
            try:
                self.state.save(self.state_path)
            except OSError as exc:
                self._restore(before)
                return _error(500, f"{group} not moved: cannot write the state ({exc})")
            self.judge.reset(group)
            log.warning("cutover: %s", line)
            return _json({"message": line, "status": self.status()})
        except CutoverError as exc:
            return _error(400, str(exc))

    def _restore(self, before: dict[str, Any]) -> None:
        self.state = CutoverState.from_dict(before)

    async def _token_problem(self) -> str | None:
        from harness.replay.credentials import ServiceAccount

        try:
            account = ServiceAccount.from_sources(None, self.config.replay)
        except Exception as exc:  # UserError: a user without a password
            return str(exc)
        return await token_exchange_problem(self.client, self.primary, self.candidate, account,
                                            self.plan.token_check_path)


def _order_key(request: http.Request) -> str | None:
    """The idempotency identifier of an unsafe request (harness.policy's rule), or None."""
    parsed = Request(method=request.method, path=request.path.partition("?")[0],
                     headers=[(k.decode("latin-1"), v.decode("latin-1"))
                              for k, v in request.headers.fields],
                     body=Body.from_bytes(request.raw_content or b""))
    key = idempotency_key(parsed)
    return f"{request.path.partition('?')[0]} {key}" if key else None


def _refuse_unpinned(flow: http.HTTPFlow, exc: OSError, journal: Path) -> None:
    """Answer 503 for an order whose pin could not be written: it is sent nowhere (a retry after
    a restart could not be told where it went)."""
    log.error("cutover: cannot write the order pin journal %s (%s): %s %s answered 503, not "
              "sent", journal, exc, flow.request.method, flow.request.path)
    _refuse(flow, "the proxy cannot record where this order goes (its pin journal cannot be "
                  "written); it was not sent anywhere")


def _refuse(flow: http.HTTPFlow, detail: str) -> None:
    """Answer 503 from the proxy itself: served by neither side, so neither mirrored nor judged
    (counted as refused by the proxy)."""
    flow.response = http.Response.make(503, orjson.dumps({"detail": detail}),
                                       {"content-type": "application/json"})
    flow.metadata["parity_served"] = "proxy"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status,
                        content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)
