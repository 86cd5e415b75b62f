"""Files written whole: a reader (a browser, a scraper, another process) never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int | None = None,
                     durable: bool = False) -> None:
    """Write `data` to `path` through a temporary file beside it and a rename; `mode` sets the
    file's permissions (None: the temporary file's owner-only 0600). With `durable`, the file
    and the rename are flushed to disk (fsync) before this returns, so a crash of the machine
    leaves the old or the new file. Creates the parent directory. Raises OSError (disk full, no
    permission...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        if durable:
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
