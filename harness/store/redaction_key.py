"""The key of the redaction fingerprints (HMAC-SHA256), kept outside the recordings.

Where it comes from, first match wins:

1. ``PARITY_REDACTION_KEY``: the key itself (a site-wide secret, e.g. from a vault);
2. ``PARITY_REDACTION_KEY_FILE``: a file holding it;
3. ``$XDG_CONFIG_HOME/cryptobot-parity/redaction.key`` (``~/.config/...`` by default).

A key file that does not exist is created on first use: 32 random bytes (hex), mode 0600 in a
0700 directory, created atomically so that concurrent mirror workers agree on one key. Recording
and replay must use the same key (the replay recognises its service account's password by its
fingerprint): run them as the same user, or point both at the same file.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from pathlib import Path

KEY_ENV = "PARITY_REDACTION_KEY"
KEY_FILE_ENV = "PARITY_REDACTION_KEY_FILE"
APP_DIR = "cryptobot-parity"
KEY_NAME = "redaction.key"

# What `--help` of shadow, replay and report says (one place).
HELP = f"""\
secrets: recordings keep no secret; each becomes a fingerprint
redacted:sha256:<8 hex>, an HMAC-SHA256 under a key kept outside the
recordings: ${KEY_ENV} if set, else the file ${KEY_FILE_ENV},
else ~/.config/{APP_DIR}/{KEY_NAME} (created 0600 on first use).
Recording and replay must share the key. To rotate it, move the key file
away (or set a new ${KEY_ENV}); the next run creates a new one.
Recordings made under the old key keep their fingerprints: replay them with
the old key ({KEY_FILE_ENV}=old.key) or record again."""

log = logging.getLogger("parity.redact")
_lock = threading.Lock()
_cache: dict[tuple[str, ...], bytes] = {}


def key_file() -> Path:
    """The key file in use when ``PARITY_REDACTION_KEY`` is not set."""
    explicit = os.environ.get(KEY_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / APP_DIR / KEY_NAME


def redaction_key() -> bytes:
    """The HMAC key of the fingerprints (read or created once per process and location)."""
    inline = os.environ.get(KEY_ENV, "")
    if inline:
        return inline.encode("utf-8")
    path = key_file()
    cache_key = (str(path),)
    key = _cache.get(cache_key)
    if key is None:
        with _lock:
            key = _cache.get(cache_key)
            if key is None:
                key = _cache[cache_key] = _load_or_create(path)
    return key


def _load_or_create(path: Path) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        return _ephemeral(path, exc)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            try:
                os.link(tmp, path)  # atomic: the first process to link wins, the others read it
                log.info("created the redaction key %s (mode 0600)", path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
        return _read(path)
    except OSError as exc:
        return _ephemeral(path, exc)


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("redaction key %s is readable by others (mode %o): chmod 600 it",
                    path, stat.S_IMODE(mode))
    key = path.read_bytes().strip()
    if not key:
        raise OSError(f"{path} is empty")
    return key


def _ephemeral(path: Path, exc: OSError) -> bytes:
    """No usable key file: a key for this process only (never the unkeyed digest). Fingerprints
    then correlate within this process only, and a replay cannot restore passwords."""
    log.warning("cannot use the redaction key file %s (%s): fingerprints of this process use a "
                "throw-away key; set %s or %s", path, exc.strerror or exc, KEY_ENV, KEY_FILE_ENV)
    return secrets.token_hex(32).encode("ascii")
