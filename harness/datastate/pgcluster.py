"""A throwaway PostgreSQL cluster (initdb + pg_ctl on a free 127.0.0.1 port, its socket and data in
a temporary directory) for the tests, the benchmark and trying `parity data` out.

Run as root (CI), the server runs as the `postgres` system user (PostgreSQL refuses root); the
directory is then owned by that user. Passwords are required over TCP (scram-sha-256), so URLs
carry one, as real ones do.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.processes import free_port

USER = "parity"
PASSWORD = "throwaway-secret-7f3a"


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are (the newest Debian install, or PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class ThrowawayCluster:
    """`with ThrowawayCluster() as pg: pg.create_database("a"); url = pg.url("a")`."""

    def __init__(self, bindir: Path | None = None) -> None:
        bindir = bindir or find_bindir()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL's initdb was not found (apt-get install "
                                    "postgresql)")
        self.bindir = bindir
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="parity-pg-"))
        self.data = self.base / "data"
        self.socket_dir = self.base / "socket"
        self._runas: list[str] = []
        self.started = False

    def _run(self, *args: str) -> None:
        try:
            subprocess.run([*self._runas, *args], check=True, capture_output=True, text=True,
                           timeout=120)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"{Path(args[0]).name} failed: {exc.stderr.strip() or exc}") \
                from None

    def start(self) -> ThrowawayCluster:
        """initdb and start the server; waits until it accepts connections."""
        self.socket_dir.mkdir()
        pwfile = self.base / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root needs the postgres system user (the Debian "
                                   "postgresql package creates it)") from None
            for path in (self.base, self.socket_dir, pwfile):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            self._runas = ["runuser", "-u", "postgres", "--"]
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER,
                  f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.base / "server.log"), "-w", "-t", "120", "start")
        self.started = True
        return self

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self.started:
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                          "-w", "-t", "60", "stop")
            finally:
                self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> ThrowawayCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def url(self, database: str, *, password: str = PASSWORD) -> str:
        """The SQLAlchemy URL of a database of this cluster."""
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        """A psycopg connection string of a database of this cluster."""
        return (f"host=127.0.0.1 port={self.port} user={USER} password={PASSWORD} "
                f"dbname={database}")

    def create_database(self, name: str) -> str:
        """Create a database; its URL."""
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
