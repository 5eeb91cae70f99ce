"""Stage 3: the DuckDB database analysts query, ``OUTPUT/stage3/odins_ravne.duckdb``.

For a local output root the database holds only views over the Parquet tables, so it is tiny and
always current. The views name their Parquet by paths relative to the output root
(``media/**/*.parquet``), so the output folder can be copied or moved and still reads its own
tables: :func:`connect` resolves them against the folder the database sits in (one level up from
``stage3/``), and the DuckDB shell does the same when started in the output folder. DuckDB cannot
read S3 here (no httpfs), so for an ``s3://`` output root the tables are copied into the database
through pyarrow and the file is uploaded next to the Parquet; either way analysts see the same view
names and columns.

Every connection this module opens for analysts is a sandbox (:func:`connect`): read-only, file
access limited to the output's own tables, no extensions installed or loaded, settings locked, and
:func:`query` runs only read statements. A database fetched from a shared bucket could define views
that read other files or write some; here they fail.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb

from gpu_ops import schemas
from gpu_ops.fileio import atomic_fill, atomic_write
from gpu_ops.storage import Storage

DB_KEY = "stage3/odins_ravne.duckdb"

def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _has_parquet(storage: Storage, folder: str) -> bool:
    return any(info.key.endswith(".parquet") for info in storage.list(folder))


def build_stage3(
    output: Storage,
    *,
    extra_views: dict[str, str] | None = None,
    materialize: frozenset[str] = frozenset(),
    macros: dict[str, str] | None = None,
) -> dict:
    """(Re)build the database; returns the view names and their row counts.

    Every table of :data:`gpu_ops.schemas.TABLES` becomes a view of its Parquet (empty, with its
    schema, when nothing was written yet); ``extra_views`` adds SQL views defined over them (name -> SELECT ...), created in order. Names in ``materialize`` are stored as
    tables instead: a join that costs seconds per query at millions of rows is paid once per build.
    ``macros`` adds table macros (signature -> SELECT ...), such as ``detection_history(species_name, ...)``.
    """
    tables = schemas.TABLES
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "odins_ravne.duckdb"
        con = duckdb.connect(str(db_path))
        if not output.is_s3:
            con.execute(f"SET file_search_path = {_sql_str(str(output.local_path()))}")
        try:
            for view, schema in tables.items():
                folder = view
                if not _has_parquet(output, folder):
                    con.register("empty_arrow", schema.empty_table())
                    con.execute(f'CREATE TABLE "_empty_{view}" AS SELECT * FROM empty_arrow')
                    con.unregister("empty_arrow")
                    con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM "_empty_{view}"')
                elif output.is_s3:
                    con.register("arrow_table", output.read_parquet(folder))
                    con.execute(f'CREATE TABLE "_data_{view}" AS SELECT * FROM arrow_table')
                    con.unregister("arrow_table")
                    con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM "_data_{view}"')
                else:
                    pattern = f"{folder}/**/*.parquet"  # relative: resolved against the output root
                    con.execute(
                        f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet({_sql_str(pattern)}, '
                        "hive_partitioning = false, union_by_name = true)"
                    )
            for view, sql in (extra_views or {}).items():
                kind = "TABLE" if view in materialize else "VIEW"
                con.execute(f'CREATE {kind} "{view}" AS {sql}')
            for signature, sql in (macros or {}).items():
                con.execute(f"CREATE MACRO {signature} AS TABLE {sql}")
            counts = {
                name: con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                for name in [*tables, *(extra_views or {})]
            }
        finally:
            con.close()
        if output.is_s3:
            output.write_bytes(DB_KEY, db_path.read_bytes())
        else:
            with db_path.open("rb") as built:
                atomic_fill(output.local_path(DB_KEY), lambda handle: shutil.copyfileobj(built, handle))
    return counts


def local_database(output: Storage, cache_dir: Path | None = None) -> Path:
    """A local path of the Stage 3 database: itself when local, a downloaded copy when on S3."""
    if not output.is_s3:
        path = output.local_path(DB_KEY)
    else:
        cache_dir = cache_dir or Path(tempfile.gettempdir()) / "odins_ravne_stage3"
        path = atomic_write(cache_dir / output.root.replace("s3://", "").replace("/", "_") / DB_KEY, output.read_bytes(DB_KEY))
    if not path.exists():
        raise FileNotFoundError(
            f"no Stage 3 database at {path}: run `odins-ravne process INPUT --out {output.root}` first"
        )
    return path


READ_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


class QueryRefused(ValueError):
    """The SQL is not a read query; the message says which statement and what is allowed."""


def connect(db_path: str | Path) -> duckdb.DuckDBPyConnection:
    """A sandboxed read-only connection to a Stage 3 database in ``<output root>/stage3/``.

    Relative view paths resolve against the output root; only its table folders can be read.
    """
    db_path = Path(db_path).resolve()
    root = db_path.parent.parent
    con = duckdb.connect(str(db_path), read_only=True, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    allowed = [f"{root / name}/" for name in schemas.TABLES] + [f"{name}/" for name in schemas.TABLES]
    con.execute(f"SET file_search_path = {_sql_str(str(root))}")
    con.execute("SET allowed_directories = [" + ", ".join(_sql_str(a) for a in allowed) + "]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def check_read_only(sql: str) -> None:
    """Raise :class:`QueryRefused` unless every statement in ``sql`` is a SELECT or an EXPLAIN."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise QueryRefused(f"the SQL does not parse: {err}") from None
    if not statements:
        raise QueryRefused("no SQL statement given")
    for statement in statements:
        if statement.type not in READ_STATEMENTS:
            kind = statement.type.name.replace("_", " ")
            raise QueryRefused(f"queries are read-only: a {kind} statement is not allowed; use SELECT (or EXPLAIN)")


def query(output: Storage, sql: str) -> tuple[list[str], list[tuple]]:
    """Run read-only SQL against the Stage 3 database, sandboxed; returns (column names, rows)."""
    check_read_only(sql)
    con = connect(local_database(output))
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()
    finally:
        con.close()
