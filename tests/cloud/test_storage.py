"""Storage over local folders and a real S3 endpoint (a moto server on loopback)."""

from __future__ import annotations

import boto3
import pyarrow as pa

from odin_support import moto_endpoint  # noqa: F401  (a real S3 endpoint on loopback)
from gpu_ops.storage import Storage


def test_local_writes_are_atomic_and_hidden_files_are_not_listed(tmp_path):
    store = Storage(f"file://{tmp_path}")
    store.write_bytes("cam-1/a.jpg", b"x")
    (tmp_path / "cam-1" / ".a.jpg.123.tmp").write_bytes(b"half")  # what a crashed write leaves
    (tmp_path / ".DS_Store").write_bytes(b"")
    assert [o.key for o in store.list()] == ["cam-1/a.jpg"]
    assert store.top_level_folders() == ["cam-1"]
    store.write_parquet("t/camera_id=c/data.parquet", pa.table({"a": [1, 2]}))
    assert store.read_parquet("t").column("a").to_pylist() == [1, 2]
    assert store.read_parquet("missing") is None


def test_s3_round_trip_through_a_real_endpoint(moto_endpoint):
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-north-1").create_bucket(
        Bucket="traps", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"}
    )
    store = Storage("s3://traps/season-1", endpoint_url=moto_endpoint)
    store.write_bytes("cam-1/IMG_1.JPG", b"one")
    store.write_bytes("cam-1/sub/IMG_2.JPG", b"two")
    store.write_bytes("cam-2/IMG_1.JPG", b"three")
    assert store.top_level_folders() == ["cam-1", "cam-2"]
    assert [o.key for o in store.child("cam-1").list()] == ["IMG_1.JPG", "sub/IMG_2.JPG"]
    assert [o.key for o in store.list(start_after="cam-1/sub/IMG_2.JPG")] == ["cam-2/IMG_1.JPG"]
    with store.local_copy("cam-2/IMG_1.JPG") as path:
        assert path.read_bytes() == b"three"
    store.write_parquet("media/camera_id=cam-1/data.parquet", pa.table({"n": [1]}))
    assert store.read_parquet("media").num_rows == 1
    assert store.exists("cam-1/IMG_1.JPG") and not store.exists("cam-1/nope.jpg")
    assert store.delete_prefix("cam-1") == 2


def test_the_pipeline_reads_and_writes_s3(moto_endpoint, tmp_path, monkeypatch, dagster_home, capsys):
    """Cards uploaded to S3, results written to S3, Stage 3 queried from a downloaded copy."""
    from media_support import ASSETS, write_jpeg
    from odins_ravne_assets.cli import main

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-north-1")
    s3.create_bucket(Bucket="cards", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    photo = write_jpeg(ASSETS / "zidane.jpg", tmp_path / "a.jpg", when="2026:06:01 05:30:00", scale=0.4)
    s3.upload_file(str(photo), "cards", "season-1/cam-s3/IMG_0001.JPG")
    s3.put_object(Bucket="cards", Key="season-1/cam-s3/broken.jpg", Body=b"not a jpeg")

    assert main(["process", "s3://cards/season-1", "--out", "s3://cards/results", "--quiet"]) == 0
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="cards", Prefix="results/")["Contents"]}
    assert "results/media/camera_id=cam-s3/data.parquet" in keys
    assert "results/stage3/odins_ravne.duckdb" in keys
    assert any(k.startswith("results/crops/camera_id=cam-s3/") and k.endswith(".jpg") for k in keys)
    capsys.readouterr()
    assert main(["query", "SELECT file_path, status FROM media ORDER BY 1", "--out", "s3://cards/results"]) == 0
    out = capsys.readouterr().out
    assert "IMG_0001.JPG  ok" in out and "broken.jpg    failed" in out
