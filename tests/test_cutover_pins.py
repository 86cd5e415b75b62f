"""The order pin journal (harness.cutover.orders): pins read back after a restart, a torn last
line skipped, the journal compacted, a failed write pinning nothing, and attempts of one order
serialized so a duplicate follows the first attempt's outcome."""

from __future__ import annotations

import asyncio
import os

import pytest

from harness.cutover.orders import OrderPins, journal_path


def test_the_journal_sits_beside_its_state_file(tmp_path):
    assert journal_path(tmp_path / "parity-cutover.json") == \
        tmp_path / "parity-cutover.orders.jsonl"


def test_pins_are_read_back_and_a_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "pins.jsonl"
    pins = OrderPins(path, limit=100)

    async def pin_some() -> None:
        async with pins.attempt("a", "candidate"):
            pass
        async with pins.attempt("b", "primary"):
            await pins.move("b", "candidate")  # not sent to the primary after all
        async with pins.attempt("c", "primary"):
            pass

    asyncio.run(pin_some())
    pins.close()
    with path.open("ab") as journal:  # a crash in the middle of the next pin's write
        journal.write(b'{"order": "d", "si')
    again = OrderPins(path, limit=100)
    assert [asyncio.run(again.side(o)) for o in "abcd"] == [
        "candidate", "candidate", "primary", None]
    again.close()


def test_the_journal_is_compacted_to_the_newest_pins(tmp_path):
    path = tmp_path / "pins.jsonl"
    pins = OrderPins(path, limit=3)

    async def pin_many() -> None:
        for number in range(10):
            async with pins.attempt(f"o{number}", "primary"):
                pass

    asyncio.run(pin_many())
    pins.close()
    assert len(path.read_bytes().splitlines()) < 2 * 3
    again = OrderPins(path, limit=3)
    assert len(again) == 3
    assert [asyncio.run(again.side(f"o{n}")) for n in (6, 7, 8, 9)] == [
        None, "primary", "primary", "primary"]
    again.close()


def test_a_pin_that_cannot_be_written_pins_nothing(tmp_path, monkeypatch):
    pins = OrderPins(tmp_path / "pins.jsonl", limit=100)
    ran = []

    async def attempts() -> None:
        async with pins.attempt("kept", "candidate"):
            pass
        monkeypatch.setattr(os, "fsync", _no_space)
        with pytest.raises(OSError):
            async with pins.attempt("new", "primary"):
                ran.append("new")
        with pytest.raises(OSError):
            await pins.move("kept", "primary")

    asyncio.run(attempts())
    assert ran == []
    assert asyncio.run(pins.side("new")) is None
    assert asyncio.run(pins.side("kept")) == "candidate"
    pins.close()


def _no_space(fd: int) -> None:
    raise OSError(28, "No space left on device")


def test_a_duplicate_waits_for_the_first_attempt_and_follows_its_outcome(tmp_path):
    pins = OrderPins(tmp_path / "pins.jsonl", limit=100)
    seen: list[str | None] = []

    async def both() -> None:
        sent = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            async with pins.attempt("order", "candidate"):
                sent.set()
                await release.wait()  # the candidate could not be reached after all
                await pins.move("order", "primary")

        async def duplicate() -> None:
            await sent.wait()
            seen.append(await pins.side("order"))

        task = asyncio.create_task(first())
        waiting = asyncio.create_task(duplicate())
        await asyncio.sleep(0.05)
        assert seen == []  # still waiting for the first attempt
        release.set()
        await asyncio.gather(task, waiting)

    asyncio.run(both())
    assert seen == ["primary"]
    pins.close()
