"""Right-sizing: instance type and batch size chosen by workload, submitted to (moto) Batch, recorded per job."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from media_support import ASSETS, write_jpeg
from odin_support import REGION, SPOT_QUEUE, client, make_batch, moto_endpoint, moto_reset  # noqa: F401
from gpu_ops.settings import ProfileError, parse_profile
from gpu_ops.storage import Storage
from resources.stage_plan import Sizing, _with_batch_size, right_size, submit_params_for

ROOT = Path(__file__).resolve().parents[2]
ALL_THREE = {"cloud": {"aws": {"compute": {"instance_types": ["g4dn.xlarge", "g4dn.2xlarge", "g4dn.4xlarge"]}}}}


def _sizing(profile: dict, n: int) -> tuple:
    s = right_size(parse_profile(profile), n)
    return s.instance_type, s.batch_size, s.vcpu, s.memory


def test_the_seeds_thresholds_are_the_default_rule():
    assert _sizing(ALL_THREE, 99) == ("g4dn.xlarge", 16, 4, 14745)
    assert _sizing(ALL_THREE, 100) == ("g4dn.2xlarge", 32, 8, 29491)
    assert _sizing(ALL_THREE, 999) == ("g4dn.2xlarge", 32, 8, 29491)
    assert _sizing(ALL_THREE, 1000) == ("g4dn.4xlarge", 64, 16, 58982)
    assert right_size(parse_profile(ALL_THREE), 5000).reason == "5000 images: 1000 or more -> g4dn.4xlarge, batch 64"


def test_a_rule_the_compute_environment_cannot_place_falls_back_to_the_largest_it_can():
    sizing = right_size(parse_profile({}), 5000)  # the default compute environment has no g4dn.4xlarge
    assert (sizing.instance_type, sizing.batch_size) == ("g4dn.2xlarge", 32)
    assert sizing.reason == "5000 images: 1000 or more wants g4dn.4xlarge, not in compute.instance_types -> g4dn.2xlarge, batch 32"


def test_rules_from_the_profile_and_off():
    rules = [{"max_images": 500, "instance_type": "g4dn.xlarge", "batch_size": 8, "memory": 12000}, {"instance_type": "g4dn.2xlarge", "batch_size": 24}]
    own = {"cloud": {"aws": {"right_sizing": {"rules": rules}}}}
    assert _sizing(own, 499) == ("g4dn.xlarge", 8, 4, 12000)
    assert _sizing(own, 500) == ("g4dn.2xlarge", 24, 8, 29491)
    off = {"cloud": {"aws": {"right_sizing": {"enabled": False}, "compute": {"vcpu": 4, "memory": 8192}}}, "pipeline": {"stage1": {"batch_size": 12}}}
    assert right_size(parse_profile(off), 5000) == Sizing("g4dn.xlarge", 12, 4, 8192, "profile")


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"instance_type": "g5.xlarge", "batch_size": 8}], "names 'g5.xlarge', which has no price in cost.on_demand_prices: add its price"),
        ([{"max_images": 100, "instance_type": "g4dn.xlarge"}], "use {max_images: N, instance_type: T, batch_size: B}"),
        ([{"instance_type": "g4dn.xlarge", "batch_size": 0}], "has batch_size 0; allowed: a whole number >= 1"),
        ([{"instance_type": "g4dn.xlarge", "batch_size": 8}, {"instance_type": "g4dn.2xlarge", "batch_size": 8}], "max_images must rise from rule to rule"),
        ([], "is empty; give at least one rule or set right_sizing.enabled: false"),
    ],
)
def test_bad_rules_are_refused_when_the_profile_loads(rules, message):
    with pytest.raises(ProfileError, match=re.escape(message)):
        parse_profile({"cloud": {"aws": {"right_sizing": {"rules": rules}}}}, "p.yaml")


def test_submit_params_request_the_sized_resources_and_the_job_gets_the_batch_size():
    profile = parse_profile(ALL_THREE)
    params = submit_params_for(profile, job_name="odins-ravne-detect-cam", sizing=right_size(profile, 2000))
    assert params["containerOverrides"]["resourceRequirements"] == [
        {"type": "VCPU", "value": "16"}, {"type": "MEMORY", "value": "58982"}, {"type": "GPU", "value": "1"}
    ]
    extras = {"stage": "detect", "profile": profile.to_dict()}
    assert _with_batch_size(extras, 64)["profile"]["pipeline"]["stage1"]["batch_size"] == 64
    assert extras["profile"]["pipeline"]["stage1"]["batch_size"] == 16  # the caller's profile is left as it was


@pytest.mark.slow
def test_a_camera_is_right_sized_on_moto_batch_and_recorded_per_job(moto_endpoint, tmp_path, monkeypatch):
    """Three photos under a profile whose rule sends 3 or more images to g4dn.2xlarge with batch 2: the job
    submitted to moto's Batch requests 8 vCPUs and 2xlarge memory, and its cost row names both."""
    moto_reset(moto_endpoint)
    make_batch()
    bucket = "odins-ravne-sizing"
    client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    for number, name in enumerate(("bus.jpg", "zidane.jpg", "bus.jpg")):
        path = write_jpeg(ASSETS / name, tmp_path / "cards" / f"IMG_{number:04d}.JPG", when=f"2026:06:01 0{5 + number}:30:00", scale=0.5 - 0.1 * number)
        client("s3").upload_file(str(path), bucket, f"input/cam-a/IMG_{number:04d}.JPG")
    profile = yaml.safe_load((ROOT / "profiles" / "cloud.yaml").read_text())
    profile["cloud"]["aws"]["right_sizing"] = {"rules": [
        {"max_images": 3, "instance_type": "g4dn.xlarge", "batch_size": 1}, {"instance_type": "g4dn.2xlarge", "batch_size": 2},
    ]}
    profile_path = tmp_path / "sized.yaml"
    profile_path.write_text(yaml.safe_dump(profile))
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "local")
    monkeypatch.setenv("ODINS_RAVNE_INPUT", f"s3://{bucket}/input")
    monkeypatch.setenv("ODINS_RAVNE_OUTPUT", f"s3://{bucket}/output")
    monkeypatch.delenv("ODINS_RAVNE_BUCKET", raising=False)
    from odins_ravne_assets.definitions import build_definitions

    # moto's describe_jobs leaves resourceRequirements overrides out, so the request is read as it is sent.
    submitted: list[dict] = []

    def record(params, **_):
        submitted.append(params)

    events = boto3._get_default_session().events
    events.register("provide-client-params.batch.SubmitJob", record)
    try:
        camera_job = build_definitions(str(profile_path)).resolve_job_def("camera_job")
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("cameras", ["cam-a"])
        result = camera_job.execute_in_process(partition_key="cam-a", instance=instance, asset_selection=[AssetKey("raw_images"), AssetKey("detections")])
    finally:
        events.unregister("provide-client-params.batch.SubmitJob", record)
    assert result.success
    (params,) = submitted
    assert params["jobQueue"] == SPOT_QUEUE and params["jobName"] == "odins-ravne-detect-cam-a"
    requested = {r["type"]: r["value"] for r in params["containerOverrides"]["resourceRequirements"]}
    assert requested == {"VCPU": "8", "MEMORY": "29491", "GPU": "1"}
    costs = Storage(f"s3://{bucket}/output").read_parquet("costs").to_pylist()
    assert [(r["instance_type"], r["batch_size"], r["sizing"], r["n_media"]) for r in costs] == [
        ("g4dn.2xlarge", 2, "3 images: 3 or more -> g4dn.2xlarge, batch 2", 3)
    ]
    assert costs[0]["usd_per_hour"] == 0.226 and costs[0]["cold_start_seconds"] > 0 and costs[0]["cameras"] == 1
