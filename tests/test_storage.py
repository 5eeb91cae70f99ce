"""Storage over local folders and a real S3 endpoint (a moto server on loopback)."""

from __future__ import annotations

import os

import boto3
import pyarrow as pa
import pytest

from resources.storage import Storage


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


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="eu-north-1")
    yield f"http://{host}:{port}"
    server.stop()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_s3_round_trip_through_a_real_endpoint(s3_endpoint):
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="eu-north-1").create_bucket(
        Bucket="traps", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"}
    )
    store = Storage("s3://traps/season-1", endpoint_url=s3_endpoint)
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
