"""Priority against a moto server: the stack's high-priority queue, a run's priority from its tag or
the profile, and a high-priority run's GPU job on that queue with `priority` in its cost row."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from dagster import AssetKey, DagsterInstance

from odin_support import REGION, client, moto_endpoint, moto_reset  # noqa: F401
from odins_ravne_assets.cli import _parser, odin
from odins_ravne_assets.definitions import build_definitions
from odins_ravne_assets.jobs import priority_tags
from resources.batch_pipes import PipesBatchClientResource
from resources.profiles import load_profile
from resources.stage_plan import PRIORITY_TAG, run_priority, submit_params_for
from gpu_ops.settings import ProfileError, parse_profile
from gpu_ops.storage import Storage

ROOT = Path(__file__).resolve().parents[2]


def test_template_high_priority_queue_is_ahead_and_on_demand_first():
    from cfnlint.decode.cfn_yaml import load

    resources = load(str(ROOT / "infra" / "cloudformation.yaml"))["Resources"]
    high = resources["HighPriorityJobQueue"]["Properties"]
    others = [resources[q]["Properties"]["Priority"] for q in ("GpuJobQueue", "OnDemandJobQueue")]
    assert high["Priority"] > max(others)
    order = [o["ComputeEnvironment"]["Ref"] for o in sorted(high["ComputeEnvironmentOrder"], key=lambda o: o["Order"])]
    assert order == ["OnDemandComputeEnvironment", "SpotComputeEnvironment"]


def test_priority_from_the_run_tag_else_the_profile():
    cloud = load_profile("cloud")
    run = lambda tags: SimpleNamespace(run=SimpleNamespace(tags=tags))  # noqa: E731  (what an asset's context offers)
    assert run_priority(run({}), cloud) == "normal"
    assert run_priority(run({PRIORITY_TAG: "high"}), cloud) == "high"
    urgent = parse_profile({"cloud": {"aws": {"priority": "high"}}})
    assert run_priority(run({}), urgent) == "high" and run_priority(run({PRIORITY_TAG: "normal"}), urgent) == "normal"
    with pytest.raises(ValueError, match="run tag odins-ravne/priority is 'urgent': use normal or high"):
        run_priority(run({PRIORITY_TAG: "urgent"}), cloud)
    with pytest.raises(ProfileError, match="'cloud.aws.priority' is 'urgent'; use one of normal, high"):
        parse_profile({"cloud": {"aws": {"priority": "urgent"}}})
    assert submit_params_for(cloud, job_name="x", priority="high")["jobQueue"] == "odins-ravne-gpu-high"
    assert submit_params_for(cloud, job_name="x")["jobQueue"] == "odins-ravne-gpu-spot"
    # The deployment's camera_job carries the profile's priority; a run's own tag wins over it.
    assert build_definitions("cloud").resolve_job_def("camera_job").run_tags[PRIORITY_TAG] == "normal"
    assert priority_tags("high") == {PRIORITY_TAG: "high", "dagster/priority": "10"}
    assert _parser().parse_args(["process", "s3://b/in", "--out", "s3://b/out", "--priority", "high"]).priority == "high"


def test_high_priority_client_starts_on_demand_without_fallback(moto_endpoint):
    moto_reset(moto_endpoint)
    client("s3").create_bucket(Bucket="odins-ravne-p", CreateBucketConfiguration={"LocationConstraint": REGION})
    resource = PipesBatchClientResource.from_profile(load_profile("cloud"))
    normal, high = resource.get_client("odins-ravne-p"), resource.get_client("odins-ravne-p", priority="high")
    assert (normal.spot_queue, normal.fallback_job_queue) == (True, "odins-ravne-gpu-ondemand")
    assert (high.spot_queue, high.fallback_job_queue) == (False, None)


@pytest.mark.slow
def test_a_high_priority_run_submits_to_the_high_priority_queue_and_its_cost_row_says_so(moto_endpoint, tmp_path, monkeypatch):
    """The stack deployed from the template, one camera's Stage 1 run with the tag `process --priority high`
    puts on it (one GPU job, executed by the local Batch runner, reading only S3; ~15 s)."""
    import ultralytics

    moto_reset(moto_endpoint)
    with pytest.warns(UserWarning, match="not supported by moto"):
        assert odin.infra_deploy(profile="cloud", image_uri="odins-ravne:gpu", echo=lambda _: None) == 0
    bucket = f"odins-ravne-123456789012-{REGION}"
    boto3.client("s3", region_name=REGION).upload_file(str(Path(ultralytics.__file__).parent / "assets" / "bus.jpg"), bucket, "input/cam-a/IMG_0001.JPG")
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "local")
    monkeypatch.setenv("ODINS_RAVNE_INPUT", f"s3://{bucket}/input")
    monkeypatch.setenv("ODINS_RAVNE_OUTPUT", f"s3://{bucket}/output")
    monkeypatch.delenv("ODINS_RAVNE_BUCKET", raising=False)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cameras", ["cam-a"])
    camera_job = build_definitions("cloud").resolve_job_def("camera_job")
    result = camera_job.execute_in_process(
        partition_key="cam-a", instance=instance, asset_selection=[AssetKey("raw_images"), AssetKey("detections")], tags=priority_tags("high")
    )
    assert result.success
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags[PRIORITY_TAG] == "high" and tags["dagster/priority"] == "10"  # what the UI shows, what the run queue orders by

    batch = client("batch")
    on_high = batch.list_jobs(jobQueue="odins-ravne-gpu-high", jobStatus="SUCCEEDED")["jobSummaryList"]
    assert [j["jobName"] for j in on_high] == ["odins-ravne-detect-cam-a"]
    assert batch.list_jobs(jobQueue="odins-ravne-gpu-spot", jobStatus="SUCCEEDED")["jobSummaryList"] == []
    costs = Storage(f"s3://{bucket}/output").read_parquet("costs")
    row = costs.select(["priority", "queue", "capacity", "stage"]).to_pylist()
    assert row == [{"priority": "high", "queue": "odins-ravne-gpu-high", "capacity": "on-demand", "stage": "detect"}]

    lines: list[str] = []
    assert odin.cost_report(output_root=f"s3://{bucket}/output", profile="cloud", by="priority", echo=lines.append) == 0
    table = lines[0].splitlines()
    assert table[0].split()[0] == "priority" and [row.split()[0] for row in table[2:]] == ["high"]
