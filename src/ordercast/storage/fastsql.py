"""Run a prepared SQLAlchemy Core statement straight on the driver, inside a transaction.

Why: an order change runs ~7 statements, and each one through ``Connection.execute`` costs
SQLAlchemy's execution machinery on top of the driver: measured ~15 µs per statement with
pysqlite (the driver itself: ~2 µs) and ~100 µs with asyncpg (the driver: ~30 µs,
including its round trip). The hot statements are module constants, so their compiled
form (SQL text, parameter order, SQLAlchemy's own bind and result processors for the
dialect) is built once here, and each execution is one driver call.

Only inside a transaction that SQLAlchemy has already begun on ``conn`` (the driver says
so: ``sqlite3.Connection.in_transaction``, ``asyncpg.Connection.is_in_transaction()``):
the statement then joins it, exactly as if SQLAlchemy had sent it. Anything else (no
transaction yet, another driver such as aiosqlite) goes through ``conn.execute``. Driver
errors are raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``…), so callers
handle one exception tree. On asyncpg the driver call is awaited with SQLAlchemy's
``await_only``: the caller runs in ``AsyncConnection.run_sync``'s greenlet.

Not supported (use ``conn.execute``): expanding IN parameters, statements with RETURNING.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.util import await_only

Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Prepared:
    sql: str
    names: tuple[str, ...]  # positional parameter order
    compiled: Any  # sqlalchemy Compiled: fills in the statement's own bound values
    binds: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, processor)
    row: Any  # namedtuple class for SELECT rows, or None
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column, processor)


class Result:
    """Rows (named tuples, attribute access like SQLAlchemy's Row) and the row count."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def scalar_one_or_none(self) -> Any:
        if not self.rows:
            return None
        if len(self.rows) > 1:
            raise sa_exc.MultipleResultsFound("more than one row")
        return self.rows[0][0]

    def scalars(self) -> list[Any]:
        return [r[0] for r in self.rows]


# By statement object (module constants: a bounded set), dialect and parameter names; the
# statement is kept so its id cannot be reused.
_cache: dict[tuple[int, str, str, tuple[str, ...]], tuple[sa.Executable, _Prepared]] = {}


def execute(conn: sa.Connection, stmt: sa.Executable, params: Params | None = None) -> Result:
    """Execute ``stmt`` (a statement built once) with one parameter set."""
    driver: Any = conn.connection.driver_connection
    if _in_transaction(driver) and isinstance(driver, sqlite3.Connection):
        p = _prepare(conn, stmt, params or {})
        args = _args(p, params or {})
        try:
            cur = driver.execute(p.sql, args)
            rows = cur.fetchall() if p.row is not None else []
        except sqlite3.Error as exc:
            raise _translate(exc, p.sql, args) from exc
        return Result(_rows(p, rows), cur.rowcount)
    if _in_transaction(driver):  # asyncpg
        p = _prepare(conn, stmt, params or {})
        args = _args(p, params or {})
        try:
            if p.row is not None:
                records = await_only(driver.fetch(p.sql, *args))
                return Result(_rows(p, records), len(records))
            status = await_only(driver.execute(p.sql, *args))
        except asyncpg.PostgresError as exc:
            raise _translate(exc, p.sql, args) from exc
        return Result([], _status_count(status))
    return _fallback(conn.execute(stmt, dict(params) if params else None))


def execute_many(conn: sa.Connection, stmt: sa.Executable, rows: Sequence[Params]) -> None:
    """Execute a DML ``stmt`` once per parameter set (all sets with the same keys)."""
    if not rows:
        return
    if len(rows) == 1:
        execute(conn, stmt, rows[0])
        return
    driver: Any = conn.connection.driver_connection
    if not _in_transaction(driver):
        conn.execute(stmt, [dict(r) for r in rows])
        return
    p = _prepare(conn, stmt, rows[0])
    args = [_args(p, r) for r in rows]
    if isinstance(driver, sqlite3.Connection):
        try:
            driver.executemany(p.sql, args)
        except sqlite3.Error as exc:
            raise _translate(exc, p.sql, args) from exc
        return
    try:
        await_only(driver.executemany(p.sql, args))  # one round trip for all
    except asyncpg.PostgresError as exc:
        raise _translate(exc, p.sql, args) from exc


def _in_transaction(driver: Any) -> bool:
    """Whether ``driver`` is a connection this module runs statements on directly, with a
    transaction open on it."""
    if isinstance(driver, sqlite3.Connection):
        return driver.in_transaction
    if isinstance(driver, asyncpg.Connection):
        return bool(driver.is_in_transaction())
    return False


def _prepare(conn: sa.Connection, stmt: sa.Executable, params: Params) -> _Prepared:
    dialect = conn.dialect
    keys = tuple(sorted(params))
    key = (id(stmt), dialect.name, dialect.driver, keys)
    hit = _cache.get(key)
    if hit is not None and hit[0] is stmt:
        return hit[1]
    compiled: Any = stmt.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    names = tuple(compiled.positiontup or ())
    binds = []
    for i, name in enumerate(names):
        proc = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        if proc is not None:
            binds.append((i, proc))
    row: Any = None
    results = []
    if isinstance(stmt, sa.Select):
        cols = list(stmt.selected_columns)
        row = _row_class([str(c.key) for c in cols])
        for i, col in enumerate(cols):
            proc = col.type.dialect_impl(dialect).result_processor(dialect, None)
            if proc is not None:
                results.append((i, proc))
    prepared = _Prepared(compiled.string, names, compiled, tuple(binds), row, tuple(results))
    _cache[key] = (stmt, prepared)
    return prepared


def _row_class(fields: list[str]) -> Any:
    return namedtuple("Row", fields, rename=True)


def _args(p: _Prepared, params: Params) -> list[Any]:
    values = p.compiled.construct_params(params)
    args = [values[name] for name in p.names]
    for i, proc in p.binds:
        args[i] = proc(args[i])
    return args


def _rows(p: _Prepared, raw: Sequence[Any]) -> list[Any]:
    if p.row is None:
        return []
    out = []
    for r in raw:
        values = list(r)
        for i, proc in p.results:
            values[i] = proc(values[i])
        out.append(p.row(*values))
    return out


def _status_count(status: str) -> int:
    """asyncpg's command tag ("UPDATE 1", "INSERT 0 3") → the row count."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _translate(exc: Exception, sql: str, args: Any) -> sa_exc.DBAPIError:
    """The driver's error as SQLAlchemy would have raised it."""
    integrity = isinstance(exc, sqlite3.IntegrityError | asyncpg.IntegrityConstraintViolationError)
    if integrity:
        return sa_exc.IntegrityError(sql, args, exc)
    if isinstance(exc, sqlite3.OperationalError):
        return sa_exc.OperationalError(sql, args, exc)
    return sa_exc.DBAPIError(sql, args, exc)


def _fallback(result: sa.CursorResult[Any]) -> Result:
    rows = list(result.all()) if result.returns_rows else []
    return Result(rows, result.rowcount)
