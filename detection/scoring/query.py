"""The detection SQL: one text in the Athena (Trino) dialect, run as is on Athena and, locally, on DuckDB.

Each query lives in ``detection/scoring/sql/<name>.sql`` and declares its contract in its header comment::

    -- parameters: window_start, window_end, window_start, window_end
    -- partition: dt

``parameters`` names the positional ``?`` placeholders in the order they appear; ``partition`` names the projected
partition column of the Athena table, if the query filters on it. :class:`Query` loads the text once, checks that
the header matches the placeholders, and gives

* for Athena: the text (with the table name swapped in through the syntax tree, never by string splicing) and its
  ``ExecutionParameters`` (:meth:`Query.athena_sql`, :meth:`Query.athena_parameters`);
* locally: the DuckDB text, transpiled by sqlglot once per variant and cached (:meth:`Query.duckdb_sql`), with
  each ``?`` turned into a named parameter (``$window_start``) so values are bound by DuckDB, never spliced into
  the text; when the local relation has no partition column (the input layer prunes hour folders itself) the
  predicates on that column are dropped from the tree;
* :meth:`Query.run`: runs it on a DuckDB connection against a relation (the ``logs`` view of
  :mod:`detection.logs.reader`) and returns Arrow.

Window values are validated as finite epoch seconds before they reach either engine.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

if TYPE_CHECKING:  # the Lambda functions build Athena text only: no DuckDB there, and no pyarrow to start with
    import duckdb
    import pyarrow as pa

__all__ = [
    "BASELINE",
    "FEATURES",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "Query",
    "QueryError",
    "load_query",
    "prepare_relation",
    "queries",
]

SQL_DIR = Path(__file__).with_name("sql")
FEATURES = "features"
BASELINE = "baseline"

#: Columns every detection query needs (the input is unusable without them).
REQUIRED_COLUMNS: dict[str, str] = {
    "timestamp": "DOUBLE",
    "c_ip": "VARCHAR",
    "sc_status": "INTEGER",
    "cs_uri_stem": "VARCHAR",
}
#: Columns the queries use when the field list has them; missing ones read as NULL (features that need them are
#: then empty, and the run's stats say which fields were missing).
OPTIONAL_COLUMNS: dict[str, str] = {
    "sc_bytes": "BIGINT",
    "asn": "BIGINT",
    "c_country": "VARCHAR",
    "cs_user_agent": "VARCHAR",
    "cs_referer": "VARCHAR",
    "cmcd_session_id": "VARCHAR",
    "cmcd_playback_rate": "DOUBLE",
}


@functools.cache
def _shipped_text_parameters() -> dict[str, str]:
    """The text parameters a caller without a detection config may leave out: the shipped network registry's
    values (built once; the registry is imported only when a query asks for them)."""
    from detection.networks.settings import NetworkSettings

    return NetworkSettings().query_parameters()


_HEADER = re.compile(r"^--[ \t]*(parameters|partition):[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}\Z")


class QueryError(ValueError):
    """A query that cannot run: bad window values, a relation without the columns it needs, a malformed header."""


def _window_value(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QueryError(f"{name} must be epoch seconds (a number), not {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > 2**40:
        raise QueryError(f"{name} must be finite epoch seconds, not {value!r}")
    return number


@dataclass(frozen=True)
class Query:
    """One detection query: its Trino text and the contract its header declares."""

    name: str
    text: str
    parameters: tuple[str, ...]
    partition: str | None = None
    _tree: exp.Expression = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @classmethod
    def from_text(cls, name: str, text: str) -> Query:
        header = {key: value for key, value in _HEADER.findall(text)}
        if "parameters" not in header:
            raise QueryError(f"{name}: the header must declare '-- parameters: a, b, ...'")
        parameters = tuple(p.strip() for p in header["parameters"].split(",") if p.strip())
        try:
            tree = sqlglot.parse_one(text, read="trino")
        except sqlglot.errors.ParseError as exc:
            raise QueryError(f"{name}: not valid Athena/Trino SQL: {exc}") from exc
        placeholders = list(tree.find_all(exp.Placeholder, bfs=False))
        if len(placeholders) != len(parameters):
            raise QueryError(
                f"{name}: the header names {len(parameters)} parameters but the text has {len(placeholders)} '?'"
            )
        partition = header.get("partition") or None
        return cls(name=name, text=text, parameters=parameters, partition=partition, _tree=tree)

    # -- binding -------------------------------------------------------------------------------------------------

    def values(
        self, window_start: float, window_end: float, extra: Mapping[str, str] | None = None
    ) -> dict[str, float | str]:
        """The named parameter values for a window ``[window_start, window_end)`` (epoch seconds) and the text
        parameters in ``extra`` (for features.sql, :meth:`DetectionConfig.query_parameters`)."""
        start = _window_value("window_start", window_start)
        end = _window_value("window_end", window_end)
        if not end > start:
            raise QueryError(f"empty window: window_end {end} is not after window_start {start}")
        known: dict[str, float | str] = {"window_start": start, "window_end": end}
        supplied = dict(extra or {})
        if any(name not in known and name not in supplied for name in self.parameters):
            supplied = {**_shipped_text_parameters(), **supplied}
        for name, value in supplied.items():
            if not isinstance(value, str):
                raise QueryError(f"{self.name}: parameter {name} must be text, not {value!r}")
            known[name] = value
        missing = [p for p in self.parameters if p not in known]
        if missing:
            raise QueryError(f"{self.name}: no value for parameter(s) {', '.join(missing)}")
        return {p: known[p] for p in dict.fromkeys(self.parameters)}

    def athena_parameters(
        self, window_start: float, window_end: float, extra: Mapping[str, str] | None = None
    ) -> list[str]:
        """Athena ``ExecutionParameters``: one literal per ``?``, in order (numbers as they are, text quoted)."""
        values = self.values(window_start, window_end, extra)
        return [_literal(values[p]) for p in self.parameters]

    # -- text ----------------------------------------------------------------------------------------------------

    def athena_sql(self, table: str = "logs") -> str:
        """The Trino text for Athena, reading ``table`` (``db.table`` or ``table``) instead of ``logs``."""
        if table == "logs":
            return self.text
        return _rename_table(self._tree.copy(), table).sql(dialect="trino", pretty=True)

    def duckdb_sql(self, *, relation: str = "logs", partition_column: bool = False) -> str:
        """The DuckDB text (cached): named parameters ``$window_start``...; without ``partition_column`` the
        predicates on the partition column are dropped."""
        return _transpile(self, relation, partition_column)

    # -- running -------------------------------------------------------------------------------------------------

    def run(
        self,
        con: duckdb.DuckDBPyConnection,
        window: tuple[float, float],
        *,
        relation: str = "logs",
        extra: Mapping[str, str] | None = None,
    ) -> pa.Table:
        """Run on DuckDB against ``relation`` for ``window`` = ``(start, end)``, end exclusive; return Arrow."""
        values = self.values(*window, extra)
        columns = _relation_columns(con, relation)
        sql = self.duckdb_sql(relation=relation, partition_column=bool(self.partition and self.partition in columns))
        return con.sql(sql, params=values).to_arrow_table()


def _literal(value: float | str) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _rename_table(tree: exp.Expression, table: str) -> exp.Expression:
    if not _IDENTIFIER.match(table):
        raise QueryError(f"table name must be [catalog.][db.]table of plain identifiers, not {table!r}")
    replacement = exp.to_table(table)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for node in list(tree.find_all(exp.Table)):
        if node.name == "logs" and not node.args.get("db") and "logs" not in ctes:
            new = replacement.copy()
            if node.alias:
                new.set("alias", node.args.get("alias"))
            node.replace(new)
    return tree


def _drop_partition_predicates(tree: exp.Expression, column: str) -> exp.Expression:
    def references(node: exp.Expression) -> bool:
        return any(c.name == column for c in node.find_all(exp.Column))

    for node in list(tree.find_all(exp.Predicate)):
        if node.parent is None or not references(node):
            continue
        # the innermost predicate that mentions the partition column: replace it by TRUE
        if not any(references(child) for child in node.iter_expressions() if isinstance(child, exp.Predicate)):
            node.replace(exp.true())
    return tree


@functools.lru_cache(maxsize=32)
def _transpile(query: Query, relation: str, partition_column: bool) -> str:
    tree = query._tree.copy()
    for placeholder, name in zip(list(tree.find_all(exp.Placeholder, bfs=False)), query.parameters):
        placeholder.replace(exp.Placeholder(this=name))
    if query.partition and not partition_column:
        tree = _drop_partition_predicates(tree, query.partition)
    # Athena's sessions run in UTC; a DuckDB connection formats time stamps in its own time zone
    for node in list(tree.find_all(exp.UnixToTime)):
        node.replace(exp.Anonymous(this="timezone", expressions=[exp.Literal.string("UTC"), node.copy()]))
    if relation != "logs":
        tree = _rename_table(tree, relation)
    return tree.sql(dialect="duckdb", comments=False)


@functools.cache
def load_query(name: str) -> Query:
    """The query ``detection/scoring/sql/<name>.sql`` (loaded and parsed once)."""
    if not re.fullmatch(r"[a-z_]+", name):
        raise QueryError(f"unknown query {name!r}")
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise QueryError(f"unknown query {name!r} (no {path})")
    return Query.from_text(name, path.read_text(encoding="utf-8"))


def _relation_columns(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    if not _IDENTIFIER.match(relation):
        raise QueryError(f"relation must be a plain identifier, not {relation!r}")
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE {relation}").fetchall()}


def prepare_relation(
    con: duckdb.DuckDBPyConnection,
    source: str = "logs",
    target: str = "detect_logs",
    *,
    required: Mapping[str, str] = REQUIRED_COLUMNS,
    optional: Mapping[str, str] = OPTIONAL_COLUMNS,
) -> tuple[str, list[str]]:
    """Make sure the relation the queries read has every column they use.

    Returns ``(relation, missing_optional)``: ``source`` itself when it has every column, else a view ``target``
    over it that adds the missing optional columns as typed NULLs. Raises :class:`QueryError` naming the
    CloudFront fields when a required column is missing.
    """
    columns = _relation_columns(con, source)
    missing = [c for c in required if c not in columns]
    if missing:
        names = ", ".join(c.replace("_", "-") for c in missing)
        raise QueryError(f"the log field list lacks {names}: detection needs {', '.join(required)}".replace("_", "-"))
    absent = [c for c in optional if c not in columns]
    if not absent:
        return source, []
    if not _IDENTIFIER.match(target):
        raise QueryError(f"relation must be a plain identifier, not {target!r}")
    extra = ", ".join(f"CAST(NULL AS {optional[c]}) AS {c}" for c in absent)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {target} AS SELECT *, {extra} FROM {source}")
    return target, absent


def queries() -> Iterable[str]:
    """Names of the queries in ``detection/scoring/sql``."""
    return sorted(p.stem for p in SQL_DIR.glob("*.sql"))
