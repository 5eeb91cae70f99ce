"""`stage3 download` against a real S3 endpoint (moto server): what changed arrives, what cannot be laid
out on disk is refused before anything is written (issue 11: items 9 and 18)."""

from __future__ import annotations

import duckdb
import pytest

from odin_support import REGION, client, moto_endpoint, moto_reset  # noqa: F401
from resources.stage3_download import UnsafeKeyError, download_stage3

BUCKET = "stage3-download"


@pytest.fixture()
def s3(moto_endpoint):
    moto_reset(moto_endpoint)
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3


def _database(tmp_path, label: str) -> bytes:
    path = tmp_path / f"{label}.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE detections AS SELECT '{label}' AS label")
    con.close()
    return path.read_bytes()


def test_a_rewritten_file_of_the_same_size_is_fetched_again(s3, tmp_path):
    first, second = _database(tmp_path, "dog"), _database(tmp_path, "cat")
    assert len(first) == len(second) and first != second
    s3.put_object(Bucket=BUCKET, Key="out/stage3/odins_ravne.duckdb", Body=first)
    local = tmp_path / "local"
    download_stage3(f"s3://{BUCKET}/out", local)
    s3.put_object(Bucket=BUCKET, Key="out/stage3/odins_ravne.duckdb", Body=second)  # the re-run
    lines = []
    path = download_stage3(f"s3://{BUCKET}/out", local, echo=lines.append)
    assert path.read_bytes() == second and lines == [f"1 file(s) downloaded, 0 already up to date, into {local}"]
    download_stage3(f"s3://{BUCKET}/out", local, echo=lines.append)
    assert lines[-1].startswith("0 file(s) downloaded, 1 already up to date")


@pytest.mark.parametrize("key, message", [
    ("out/media/camera_id=a", "is both a file and the folder of"),
    ("out/media/" + "x" * 300 + ".parquet", "too long for a local file name"),
])
def test_keys_no_file_system_can_hold_are_refused_before_anything_is_written(s3, tmp_path, key, message):
    s3.put_object(Bucket=BUCKET, Key="out/stage3/odins_ravne.duckdb", Body=_database(tmp_path, "dog"))
    s3.put_object(Bucket=BUCKET, Key="out/media/camera_id=a/data.parquet", Body=b"parquet")
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"clash")
    local = tmp_path / "local"
    with pytest.raises(UnsafeKeyError, match=message):
        download_stage3(f"s3://{BUCKET}/out", local)
    assert not any(p.is_file() for p in local.rglob("*"))
