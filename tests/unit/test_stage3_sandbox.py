"""Stage 3 is a folder an analyst can carry away, and a query can only read it.

Built with the real builder on real Parquet; every probe here was once a fault (issue 11: items 10
and 16): absolute view paths made a copied output read the original and a moved one fail; the
"read-only" query could write files, read any file and install extensions.
"""

from __future__ import annotations

import shutil

import duckdb
import pyarrow as pa
import pytest

from gpu_ops import schemas
from gpu_ops.storage import Storage
from resources.stage3 import DB_KEY, QueryRefused, build_stage3, connect, query


def _media(camera_id: str, n: int) -> pa.Table:
    rows = [{"camera_id": camera_id, "file_path": f"IMG_{i:04d}.JPG", "media_type": "image", "sha256": f"{camera_id}{i}",
             "status": "ok"} for i in range(n)]
    return pa.Table.from_pylist(rows, schema=schemas.MEDIA)


@pytest.fixture()
def output(tmp_path) -> Storage:
    out = Storage(tmp_path / "out")
    out.write_parquet(schemas.camera_key("media", "cam-a"), _media("cam-a", 3))
    build_stage3(out)
    return out


def test_a_copied_output_reads_its_own_tables_and_a_moved_one_still_works(output, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(output.local_path(), copy)
    output.write_parquet(schemas.camera_key("media", "cam-b"), _media("cam-b", 5))  # the original moves on
    assert query(Storage(copy), "SELECT count(*) FROM media")[1] == [(3,)]
    assert query(output, "SELECT count(*) FROM media")[1] == [(8,)]
    moved = tmp_path / "moved"
    shutil.move(str(copy), moved)
    con = connect(moved / DB_KEY)
    assert con.execute("SELECT count(*) FROM media").fetchone() == (3,)
    con.close()


@pytest.mark.parametrize("sql, kind", [
    ("COPY (SELECT 1) TO 'media/x.csv'", "COPY"),
    ("EXPORT DATABASE 'dump'", "EXPORT"),
    ("ATTACH 'other.duckdb'", "ATTACH"),
    ("INSTALL httpfs", "LOAD"),
    ("SELECT 1; CREATE TABLE t AS SELECT 1", "CREATE"),
    ("SET enable_external_access = true", "SET"),
])
def test_query_runs_only_read_statements(output, sql, kind):
    with pytest.raises(QueryRefused, match=f"a {kind} statement is not allowed"):
        query(output, sql)
    assert not output.local_path("media/x.csv").exists()


def test_a_query_cannot_read_files_outside_the_tables(output, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    with pytest.raises(duckdb.PermissionException):
        query(output, f"SELECT * FROM read_text('{secret}')")
    with pytest.raises(duckdb.PermissionException):
        query(output, "SELECT * FROM read_text('media/../../secret.txt')")
    assert query(output, "SELECT count(*) FROM read_parquet('media/**/*.parquet')")[1] == [(3,)]


def test_a_hostile_view_in_a_fetched_database_cannot_read_other_files(output, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    con = duckdb.connect(str(output.local_path(DB_KEY)))
    con.execute(f"CREATE VIEW leak AS SELECT * FROM read_text('{secret}')")
    con.close()
    with pytest.raises(duckdb.PermissionException):
        query(output, "SELECT * FROM leak")
    con = connect(output.local_path(DB_KEY))
    with pytest.raises(duckdb.InvalidInputException, match="lock"):
        con.execute("SET enable_external_access = true")
    con.close()
