"""The cloud path end to end against moto, as the README runs it: deploy the stack, process a camera
from S3 to S3 with the GPU stages submitted to Batch (and executed by the local runner), read the
costs, download Stage 3 and query it, tear down. The slowest Odin test (two GPU jobs, ~30 s)."""

from __future__ import annotations

from pathlib import Path

import boto3
import duckdb
import pytest

from odin_support import REGION, moto_endpoint, moto_reset  # noqa: F401
from resources import odin_commands
from gpu_ops.storage import Storage

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def cloud_profile() -> str:
    # The cloud profile exactly as shipped: as the README's commands use it.
    return "cloud"


def test_process_a_camera_on_batch_against_moto(moto_endpoint, cloud_profile, tmp_path, monkeypatch):
    import ultralytics

    from odins_ravne_assets.cli import process

    moto_reset(moto_endpoint)
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "local")
    monkeypatch.setenv("ODINS_RAVNE_PROFILE", "local")  # process --profile cloud sets it; undone after the test
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))  # a private instance, made by the CLI
    photos = Path(ultralytics.__file__).parent / "assets"  # real photographs shipped in a package
    lines: list[str] = []
    with pytest.warns(UserWarning, match="not supported by moto"):
        assert odin_commands.infra_deploy(profile=cloud_profile, image_uri="odins-ravne:gpu", echo=lines.append) == 0
    bucket = f"odins-ravne-123456789012-{REGION}"
    s3 = boto3.client("s3", region_name=REGION)
    for number, name in enumerate(("bus.jpg", "zidane.jpg")):
        s3.upload_file(str(photos / name), bucket, f"input/cam-a/IMG_{number:04d}.JPG")

    assert process(f"s3://{bucket}/input", f"s3://{bucket}/output", camera_ids=["cam-a"], profile=cloud_profile, quiet=True) == 0

    jobs = boto3.client("batch", region_name=REGION).list_jobs(jobQueue="odins-ravne-gpu-spot", jobStatus="SUCCEEDED")["jobSummaryList"]
    assert {j["jobName"] for j in jobs} == {"odins-ravne-detect-cam-a", "odins-ravne-classify-cam-a"}
    costs = Storage(f"s3://{bucket}/output").read_parquet("costs")
    assert sorted(costs["stage"].to_pylist()) == ["classify", "detect"]
    assert set(costs["capacity"].to_pylist()) == {"spot"} and min(costs["runtime_seconds"].to_pylist()) > 0

    lines.clear()
    assert odin_commands.cost_report(output_root=f"s3://{bucket}/output", profile=cloud_profile, echo=lines.append) == 0
    assert "\ncam-a " in "\n".join(lines)
    local = tmp_path / "stage3-local"
    assert odin_commands.stage3_download(s3_uri=f"s3://{bucket}/output", local_dir=str(local), echo=lines.append) == 0
    con = duckdb.connect(str(local / "stage3" / "odins_ravne.duckdb"), read_only=True)
    assert con.execute("select count(*) from detections where camera_id = 'cam-a'").fetchone()[0] > 0
    con.close()
    assert odin_commands.infra_teardown(profile=cloud_profile, echo=lines.append) == 0
