"""Several regions from one profile against a moto server: `infra deploy|status|teardown --region`, one
stack, bucket and set of queues per region, and a run that works in the region of its output bucket."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from odin_support import REGION, client, moto_endpoint, moto_reset  # noqa: F401
from odins_ravne_assets.cli import _parser, odin
from odins_ravne_assets.definitions import build_definitions
from resources import infra
from resources.profiles import load_profile
from resources.regions import bucket_region, storage_settings_for
from gpu_ops.settings import StorageSettings
from gpu_ops.storage import Storage

ROOT = Path(__file__).resolve().parents[2]
WEST = "eu-west-1"


def test_regions_from_flags_else_profile_else_storage_region():
    cloud = load_profile("cloud")
    assert infra.regions_for(cloud) == [REGION]
    assert infra.regions_for(cloud, [WEST, REGION, WEST]) == [WEST, REGION]
    with pytest.raises(infra.InfraError, match="region 'Frankfurt' is not an AWS region name: use one like eu-north-1"):
        infra.regions_for(cloud, ["Frankfurt"])
    assert _parser().parse_args(["infra", "status", "--region", REGION, "--region", WEST]).regions == [REGION, WEST]


def test_bucket_region_as_s3_reports_it(moto_endpoint):
    moto_reset(moto_endpoint)
    boto3.client("s3", region_name=WEST).create_bucket(Bucket="b-west", CreateBucketConfiguration={"LocationConstraint": WEST})
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="b-virginia")  # S3 reports it as no constraint
    home = StorageSettings()
    assert bucket_region("b-west", home) == WEST and bucket_region("b-virginia", home) == "us-east-1"
    assert bucket_region("no-such-bucket", home) == REGION  # not readable: the profile's region, as before
    assert storage_settings_for("s3://b-west/out", home).region == WEST and storage_settings_for("/tmp/out", home) is home
    minio = StorageSettings(endpoint_url="http://127.0.0.1:9000")  # an S3-compatible store keeps its profile region
    assert bucket_region("b-west", minio) == REGION


@pytest.mark.slow
def test_two_regions_deployed_listed_and_a_run_submits_in_its_buckets_region(moto_endpoint, tmp_path, monkeypatch):
    """Deploy to two regions from one profile; status lists both; one camera's Stage 1 with its output in
    the second region's bucket submits there (one GPU job, run by the local Batch runner; ~20 s)."""
    import ultralytics

    moto_reset(moto_endpoint)
    profile = yaml.safe_load((ROOT / "profiles" / "cloud.yaml").read_text())
    profile["cloud"]["aws"]["regions"] = [REGION, WEST]
    profile_path = tmp_path / "two-regions.yaml"
    profile_path.write_text(yaml.safe_dump(profile))
    lines: list[str] = []
    with pytest.warns(UserWarning, match="not supported by moto"):
        assert odin.infra_deploy(profile=str(profile_path), image_uri="odins-ravne:gpu", echo=lines.append) == 0
    north, west = (f"odins-ravne-123456789012-{r}" for r in (REGION, WEST))
    assert f"one bucket per region: {REGION} s3://{north}, {WEST} s3://{west}; a run works in the region of its --out bucket" in lines
    assert sum(line.startswith("budget odins-ravne-monthly") for line in lines) == 1  # one per account

    lines.clear()
    assert odin.infra_status(profile=str(profile_path), echo=lines.append) == 0  # the profile's regions
    assert [line for line in lines if line.startswith("stack ")] == ["stack odins-ravne: CREATE_COMPLETE"] * 2
    assert [line for line in lines if line.startswith("  region: ")] == [f"  region: {REGION}", f"  region: {WEST}"]
    assert f"  BucketName: {west}" in lines and f"  dashboard: {infra.dashboard_url('odins-ravne', WEST)}" in lines
    for region in (REGION, WEST):
        stack = boto3.client("cloudformation", region_name=region).describe_stacks(StackName="odins-ravne")["Stacks"][0]
        assert {"Key": infra.REGION_TAG, "Value": region} in stack["Tags"]
        queues = boto3.client("batch", region_name=region).describe_job_queues()["jobQueues"]
        assert sorted(q["jobQueueName"] for q in queues) == ["odins-ravne-gpu-high", "odins-ravne-gpu-ondemand", "odins-ravne-gpu-spot"]
    lines.clear()
    assert odin.infra_status(profile="cloud", regions=[WEST], echo=lines.append) == 0  # --region: that one only
    assert [line for line in lines if line.startswith("  region: ")] == [f"  region: {WEST}"]

    photo = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    boto3.client("s3", region_name=WEST).upload_file(str(photo), west, "input/cam-w/IMG_0001.JPG")
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "local")
    monkeypatch.setenv("ODINS_RAVNE_INPUT", f"s3://{west}/input")
    monkeypatch.setenv("ODINS_RAVNE_OUTPUT", f"s3://{west}/output")
    monkeypatch.setenv("ODINS_RAVNE_BUCKET", north)  # the home region's bucket: its job role could not reach the west bucket
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cameras", ["cam-w"])
    result = build_definitions("cloud").resolve_job_def("camera_job").execute_in_process(
        partition_key="cam-w", instance=instance, asset_selection=[AssetKey("raw_images"), AssetKey("detections")]
    )
    assert result.success

    in_west = boto3.client("batch", region_name=WEST).list_jobs(jobQueue="odins-ravne-gpu-spot", jobStatus="SUCCEEDED")["jobSummaryList"]
    assert [j["jobName"] for j in in_west] == ["odins-ravne-detect-cam-w"]
    assert client("batch").list_jobs(jobQueue="odins-ravne-gpu-spot", jobStatus="SUCCEEDED")["jobSummaryList"] == []
    assert Storage(f"s3://{west}/output").read_parquet("costs")["region"].to_pylist() == [WEST]
    pipes = lambda bucket: boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=bucket, Prefix="pipes/").get("KeyCount", 0)  # noqa: E731
    assert pipes(west) > 0 and pipes(north) == 0  # the Pipes messages stayed in the job's region
    metrics = boto3.client("cloudwatch", region_name=WEST).list_metrics(Namespace="OdinsRavne/Processing")["Metrics"]
    assert {m["MetricName"] for m in metrics} >= {"MediaProcessed", "Jobs"}  # the west dashboard's data

    lines.clear()
    assert odin.infra_teardown(profile=str(profile_path), echo=lines.append) == 0
    assert [line.split(":")[0] for line in lines if "deleted" in line] == [REGION, WEST]
    assert infra.status(boto3.client("cloudformation", region_name=WEST))["status"] == "NOT_DEPLOYED"
