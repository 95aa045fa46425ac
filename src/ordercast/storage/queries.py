"""Named SQL: ``storage/sql/common.sql`` plus one file per database, loaded once.

Each statement starts with a ``-- name: <name>`` line; the comment lines under it describe
it and are dropped. Parameters are written ``:name`` in every file. SQLite's driver binds
those names itself; for asyncpg they become ``$1``, ``$2`` … in order of first use
(``Query.params`` lists the names in that order). A ``::type`` cast is not a parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$")
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    sql: str  # as the driver takes it
    params: tuple[str, ...]  # asyncpg: the parameter names by position; SQLite: ()


def parse(text: str) -> dict[str, str]:
    """``{name: sql}`` of one .sql file (comment lines dropped)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        named = _NAME.match(line)
        if named:
            if named.group(1) in found:
                raise ValueError(f"statement {named.group(1)!r} named twice")
            current = found[named.group(1)] = []
        elif current is not None and line.strip() and not line.lstrip().startswith("--"):
            current.append(line.rstrip())
    return {name: "\n".join(lines) for name, lines in found.items()}


def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``:name`` parameters as ``$n`` (asyncpg), and the names in position order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, sql), tuple(names)


def load(dialect: Dialect) -> dict[str, Query]:
    """The statements ``dialect`` runs: common.sql and its own file (a name once)."""
    folder = resources.files("ordercast.storage") / "sql"
    common = parse((folder / "common.sql").read_text("utf-8"))
    own = parse((folder / f"{dialect}.sql").read_text("utf-8"))
    twice = common.keys() & own.keys()
    if twice:
        raise ValueError(f"{dialect}.sql redefines {sorted(twice)} of common.sql")
    queries: dict[str, Query] = {}
    for name, sql in {**common, **own}.items():
        if dialect == "postgresql":
            text, params = positional(sql)
            queries[name] = Query(name, text, params)
        else:
            queries[name] = Query(name, sql, ())
    return queries
