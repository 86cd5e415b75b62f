"""The redaction key: generated on first use outside the recordings with owner-only permissions,
shared by every process of the user (recording workers, replay), overridden by the variable;
passwords are fingerprinted only where a replay restores them."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from harness.model import Body, Exchange, Request, Response
from harness.replay.credentials import ServiceAccount, Tokens, with_fresh_credentials
from harness.store import fingerprint, redact_exchange
from harness.store.reader import iter_records
from harness.store.redact import PASSWORD_MARKER
from harness.store.redaction_key import KEY_ENV, KEY_FILE_ENV

FORM = "application/x-www-form-urlencoded"
PRINT_FINGERPRINT = "from harness.store import fingerprint; print(fingerprint('demo'))"


def _env(**values: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, KEY_FILE_ENV)}
    env.update({k: v for k, v in values.items() if v is not None})
    return env


def _fingerprint_in_subprocesses(env: dict[str, str], count: int) -> list[str]:
    """`fingerprint('demo')` computed by `count` processes started at once."""
    processes = [subprocess.Popen([sys.executable, "-c", PRINT_FINGERPRINT], env=env,
                                  stdout=subprocess.PIPE, text=True) for _ in range(count)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in processes]
    assert all(p.returncode == 0 for p in processes)
    return outputs


def test_the_key_file_is_created_once_owner_only_and_shared_by_concurrent_processes(tmp_path):
    key_file = tmp_path / "keys" / "redaction.key"
    outputs = _fingerprint_in_subprocesses(_env(PARITY_REDACTION_KEY_FILE=str(key_file)), 4)
    assert len(set(outputs)) == 1 and outputs[0].startswith("redacted:sha256:")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert len(key_file.read_text().strip()) == 64
    assert [p.name for p in key_file.parent.iterdir()] == ["redaction.key"]  # no temp file left
    # Another key gives other fingerprints: rotating the file rotates them.
    other = tmp_path / "other.key"
    rotated = _fingerprint_in_subprocesses(_env(PARITY_REDACTION_KEY_FILE=str(other)), 1)
    assert rotated != outputs[:1]


def test_the_default_key_lives_in_the_users_config_directory(tmp_path):
    env = _env(XDG_CONFIG_HOME=str(tmp_path / "config"))
    first = _fingerprint_in_subprocesses(env, 1)
    key_file = tmp_path / "config" / "cryptobot-parity" / "redaction.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _fingerprint_in_subprocesses(env, 1) == first
    # The variable overrides the file.
    assert _fingerprint_in_subprocesses({**env, KEY_ENV: "site-key"}, 1) != first


def test_recording_and_replay_share_the_key_so_the_login_password_is_restored(tmp_path):
    """A login recorded by another process (a mirror worker) is restored by the replay."""
    recordings = tmp_path / "rec"
    script = f"""
from harness.model import Body, Exchange, Request, Response
from harness.store import SegmentWriter
body = Body.from_bytes(b"grant_type=password&username=svc&password=s3cret-svc-pass")
login = Exchange(Request("POST", "/auth/login", headers=[("content-type", {FORM!r})], body=body),
                 Response(200))
with SegmentWriter({str(recordings)!r}) as writer:
    writer.write(login)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, env=os.environ.copy())
    [record] = list(iter_records([recordings]))
    assert "s3cret-svc-pass" not in json.dumps(record)
    request = Exchange.from_dict(record).request
    fresh = with_fresh_credentials(request, Tokens(), ServiceAccount("svc", "s3cret-svc-pass"),
                                   minted=lambda recorded: None)
    assert dict(urllib.parse.parse_qsl(fresh.body.text))["password"] == "s3cret-svc-pass"


@pytest.mark.parametrize("body", [
    {"old_password": "s3cret-old", "new_password": "s3cret-new"},
    {"password": "s3cret-new", "token": "reset-token-123"},
    {"user": {"name": "x"}, "settings": {"password": "s3cret-new"}},
])
def test_a_password_no_replay_restores_is_a_constant_marker(body):
    exchange = Exchange(
        request=Request("POST", "/auth/change-password",
                        headers=[("content-type", "application/json")],
                        body=Body.from_bytes(json.dumps(body).encode())),
        primary=Response(200))
    text = redact_exchange(exchange).request.body.text
    assert "s3cret" not in text and PASSWORD_MARKER in text


def test_a_login_password_keeps_its_fingerprint_in_json_and_form():
    for content_type, raw in (
        ("application/json", json.dumps({"username": "demo", "password": "demo"}).encode()),
        (FORM, b"username=demo&password=demo"),
    ):
        exchange = Exchange(request=Request("POST", "/auth/login",
                                            headers=[("content-type", content_type)],
                                            body=Body.from_bytes(raw)), primary=Response(200))
        assert fingerprint("demo") in redact_exchange(exchange).request.body.text


def test_an_unusable_key_file_never_falls_back_to_the_unkeyed_digest(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = _env(PARITY_REDACTION_KEY_FILE=str(blocker / "sub" / "redaction.key"))
    result = subprocess.run([sys.executable, "-c", PRINT_FINGERPRINT], env=env, timeout=120,
                            capture_output=True, text=True, check=True)
    plain = "redacted:sha256:" + hashlib.sha256(b"demo").hexdigest()[:8]
    assert result.stdout.strip().startswith("redacted:sha256:")
    assert result.stdout.strip() != plain
    assert not Path(blocker / "sub").exists()


@pytest.mark.parametrize("command", ["shadow", "replay", "report"])
def test_help_says_where_the_key_lives_and_how_to_rotate_it(command, capsys):
    from harness.cli import main as parity

    with pytest.raises(SystemExit) as exit_:
        parity([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "~/.config/cryptobot-parity/redaction.key" in text
    assert "PARITY_REDACTION_KEY_FILE" in text and "To rotate it" in text
