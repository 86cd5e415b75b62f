"""One side's database: a SQLAlchemy engine (Core only), its tables, and the queries the bisection
runs, counted. Errors become one line naming the side and the URL without its password.

`sqlite:///DIR` where DIR is a directory (the reference Cryptobot's data dir) attaches every
`*.sqlite` file in it, so tables spread over several files are compared as one database.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SAWarning, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from harness.datastate.columns import SqlType, register_sqlite_functions
from harness.errors import UserError

SUPPORTED = ("sqlite", "postgresql")
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@]*@")


def safe_url(url: str | URL) -> str:
    """The URL as it may be shown: never with its password."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return _PASSWORD_IN_URL.sub(r"\1***@", str(url))


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A table as one side has it."""

    schema: str | None
    name: str
    columns: dict[str, SqlType]  # in table order
    unique_keys: tuple[tuple[str, ...], ...]  # primary key and unique constraints/indexes


class Database:
    """One side (primary or candidate) of the comparison."""

    def __init__(self, url: str, side: str, *, pool_size: int = 4) -> None:
        self.side = side
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise UserError(f"{side} database {safe_url(url)}: not a database URL "
                            "(sqlite:///FILE-or-DIR, postgresql+psycopg://USER@HOST/DB)") from None
        self.shown = safe_url(parsed)
        self._password = parsed.password
        self.dialect = parsed.get_backend_name()
        if self.dialect not in SUPPORTED:
            raise self.error(f"unsupported database {self.dialect!r} (sqlite or postgresql)")
        self._attached: dict[str, Path] = {}
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            parsed = self._sqlite(parsed)
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size,
                          connect_args={"options": "-c TimeZone=UTC"})
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise self.error(f"cannot use this URL: {self.scrub(exc)}") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", self._on_sqlite_connect)
        self.queries = 0
        self.rows_fetched = 0
        self._lock = threading.Lock()
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise self.error(f"cannot connect: {self.scrub(exc)}") from None

    def _sqlite(self, parsed: URL) -> URL:
        database = parsed.database or ""
        if not database or database == ":memory:":
            raise self.error("an in-memory sqlite database holds nothing to compare")
        path = Path(database)
        if path.is_dir():
            files = sorted(path.glob("*.sqlite")) + sorted(path.glob("*.db"))
            if not files:
                raise self.error("directory holds no *.sqlite or *.db file")
            self._attached = {f.stem: f for f in files}
            return parsed.set(database=":memory:")
        if not path.is_file():
            raise self.error("no such file")
        return parsed

    def _on_sqlite_connect(self, connection: sqlite3.Connection,
                           _record: ConnectionPoolEntry) -> None:
        register_sqlite_functions(connection)
        for schema, path in self._attached.items():
            connection.execute(f"ATTACH DATABASE ? AS \"{schema}\"", (str(path),))

    def error(self, what: str) -> UserError:
        """A one-line error about this side."""
        return UserError(f"{self.side} database {self.shown}: {what}")

    def scrub(self, exc: BaseException) -> str:
        """An exception's first line, without the password."""
        original = getattr(exc, "orig", None) or exc
        line = (str(original).strip().splitlines() or [type(original).__name__])[0]
        if self._password:
            line = line.replace(str(self._password), "***")
        return line

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    def quote(self, name: str) -> str:
        """An identifier quoted for this dialect."""
        return self.engine.dialect.identifier_preparer.quote_identifier(name)

    def qualified(self, table: TableInfo) -> str:
        """The table's name as a query uses it."""
        name = self.quote(table.name)
        return f"{self.quote(table.schema)}.{name}" if table.schema else name

    def find_table(self, name: str) -> TableInfo | None:
        """The table called `name` (in any attached file for a sqlite directory), or None."""
        try:
            with self.engine.connect() as connection, warnings.catch_warnings():
                # An unknown type is reflected as NullType: reported incomparable, not warned.
                warnings.simplefilter("ignore", SAWarning)
                inspector = inspect(connection)
                schemas = list(self._attached) if self._attached else [None]
                for schema in schemas:
                    if name not in inspector.get_table_names(schema=schema):
                        continue
                    columns = {c["name"]: c["type"]
                               for c in inspector.get_columns(name, schema=schema)}
                    unique = []
                    primary = inspector.get_pk_constraint(name, schema=schema)
                    if primary.get("constrained_columns"):
                        unique.append(tuple(primary["constrained_columns"]))
                    unique += [tuple(u["column_names"])
                               for u in inspector.get_unique_constraints(name, schema=schema)]
                    unique += [tuple(i["column_names"])
                               for i in inspector.get_indexes(name, schema=schema)
                               if i.get("unique") and _columns_only(i["column_names"])]
                    return TableInfo(schema, name, columns, tuple(unique))
        except SQLAlchemyError as exc:
            raise self.error(f"cannot read table {name}: {self.scrub(exc)}") from None
        return None

    def run(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one query and return its rows (counted)."""
        with self._lock:
            self.queries += 1
        try:
            with self.engine.connect() as connection:
                rows = [tuple(row) for row in connection.execute(text(sql), params or {})]
        except SQLAlchemyError as exc:
            raise self.error(f"query failed: {self.scrub(exc)}") from None
        return rows

    def fetched(self, count: int) -> None:
        """Count rows downloaded for row-wise comparison."""
        with self._lock:
            self.rows_fetched += count


def _columns_only(names: list[str | None]) -> TypeGuard[list[str]]:
    """Whether an index is on plain columns (None stands for an expression)."""
    return None not in names
