"""The reference Cryptobot's runtime drift switch (`--control-token`), used to show a rollback."""

from __future__ import annotations

import httpx
import pytest
from cutover_support import CONTROL_TOKEN as TOKEN
from cutover_support import OHLCV, controlled_app

from harness.processes import ReferenceApp


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    app = controlled_app(tmp_path_factory.mktemp("control"))
    yield app
    app.stop()


def put(app: ReferenceApp, drifts, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.put(f"{app.base_url}/_reference/drifts", json={"drifts": drifts},
                     headers=headers)


def first_timestamp(app: ReferenceApp) -> str:
    return httpx.get(app.base_url + OHLCV, params={"limit": 2}).json()[0]["timestamp"]


def test_drifts_switch_on_and_off_while_running(native: ReferenceApp) -> None:
    plain = first_timestamp(native)
    answer = put(native, ["tz-offset"])
    assert answer.status_code == 200 and answer.json() == {"drifts": ["tz-offset"]}
    shifted = first_timestamp(native)
    assert shifted != plain and shifted[11:13] == f"{(int(plain[11:13]) + 1) % 24:02d}"
    assert put(native, []).json() == {"drifts": []}
    assert first_timestamp(native) == plain


def test_the_control_token_is_required(native: ReferenceApp) -> None:
    assert put(native, ["tz-offset"], token=None).status_code == 401
    assert put(native, ["tz-offset"], token="wrong").status_code == 401
    assert put(native, ["no-such-drift"]).status_code == 422
    assert "unknown drift 'no-such-drift'" in put(native, ["no-such-drift"]).text
    bad = httpx.put(f"{native.base_url}/_reference/drifts", content=b"[1",
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 422
    assert put(native, []).status_code == 200


def test_without_the_flag_there_is_no_endpoint(tmp_path) -> None:
    app = controlled_app(tmp_path, "docker", token=None)
    try:
        assert put(app, ["tz-offset"]).status_code == 404
    finally:
        app.stop()
