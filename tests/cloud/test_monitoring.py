"""The stack's monitoring against a moto server: `infra deploy` puts the region's CloudWatch dashboard
and alarms, they read exactly the metrics the cost resource puts (names, namespace, dimensions), and
`infra teardown` removes them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from odin_support import REGION, client, moto_endpoint, moto_reset  # noqa: F401
from odins_ravne_assets.cli import odin
from resources import infra
from resources.batch_pipes import BatchJobRecord
from resources.cost import METRICS_NAMESPACE, CostResource
from gpu_ops.storage import Storage

ROOT = Path(__file__).resolve().parents[2]


def _job(job_id: str, status: str) -> BatchJobRecord:
    start = 1_700_000_000_000
    return BatchJobRecord(
        shard_index=0, job_id=job_id, job_name=job_id, queue="odins-ravne-gpu-spot", capacity="spot", status=status,
        started_at=start, stopped_at=start + 600_000, attempts=[{"startedAt": start, "stoppedAt": start + 600_000}],
    )


def _dashboard_metrics(body: dict) -> set[tuple[str, str]]:
    """(namespace, metric name) of every metric the dashboard's widgets read, in plain rows and SEARCH expressions."""
    found = set()
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], str):
                found.add((row[0], row[1]))
            for part in row:
                if isinstance(part, dict) and "expression" in part:
                    for namespace, name in re.findall(r"\{([^,}]+),[^}]*\} MetricName=\"(\w+)\"", part["expression"]):
                        found.add((namespace, name))
    return found


def test_deploy_puts_dashboard_and_alarms_on_the_metrics_the_cost_resource_puts(moto_endpoint, tmp_path):
    moto_reset(moto_endpoint)
    lines: list[str] = []
    with pytest.warns(UserWarning, match="not supported by moto"):
        assert odin.infra_deploy(profile="cloud", image_uri="odins-ravne:gpu", budget_email="ops@example.org", echo=lines.append) == 0
    cloudwatch = client("cloudwatch")
    topic = client("cloudformation").describe_stacks(StackName="odins-ravne")["Stacks"][0]
    topic_arn = {o["OutputKey"]: o["OutputValue"] for o in topic["Outputs"]}["AlarmTopicArn"]
    assert any(line.startswith(f"  dashboard odins-ravne-{REGION} and alarms") and topic_arn in line for line in lines)

    body = json.loads(cloudwatch.get_dashboard(DashboardName=f"odins-ravne-{REGION}")["DashboardBody"])
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles == ["Batch jobs by status (per hour)", "Images processed (Stage 1, per hour)", "GPU hours (per hour)", "Spend this month against the budget (USD)"]
    budget_lines = body["widgets"][3]["properties"]["annotations"]["horizontal"]
    assert [(a["label"], a["value"]) for a in budget_lines] == [("monthly budget", 1000.0), ("alarm at 80%", 800.0)]
    read_by_dashboard = _dashboard_metrics(body)

    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=["odins-ravne-failed-jobs", "odins-ravne-budget"])["MetricAlarms"]}
    assert sorted(alarms) == ["odins-ravne-budget", "odins-ravne-failed-jobs"]
    failed, budget = alarms["odins-ravne-failed-jobs"], alarms["odins-ravne-budget"]
    assert (failed["MetricName"], failed["Dimensions"], failed["Statistic"], failed["Threshold"]) == ("Jobs", [{"Name": "status", "Value": "FAILED"}], "Sum", 1.0)
    assert (budget["MetricName"], budget["Dimensions"], budget["Statistic"], budget["Threshold"]) == ("SpendThisMonth", [], "Maximum", 800.0)
    assert failed["AlarmActions"] == [topic_arn] and budget["AlarmActions"] == [topic_arn]
    read_by_alarms = {(a["Namespace"], a["MetricName"]) for a in alarms.values()}

    # What the cost resource puts when a run's jobs are recorded: one succeeded, one failed.
    resource = CostResource(live_spot_prices=False, cloudwatch_metrics=True, budget_name=None)
    output = Storage(str(tmp_path / "out"))
    resource.record_jobs(output, [_job("j-ok", "SUCCEEDED"), _job("j-bad", "FAILED")], camera_id="cam01", run_id="r1", stage="detect",
                         instance_type="g4dn.xlarge", media_per_job=[120, 0])
    put = {(METRICS_NAMESPACE, m["MetricName"]): m["Dimensions"] for m in cloudwatch.list_metrics(Namespace=METRICS_NAMESPACE)["Metrics"]}
    assert read_by_dashboard | read_by_alarms <= set(put), (read_by_dashboard | read_by_alarms) - set(put)
    assert read_by_dashboard | read_by_alarms == set(put)  # and nothing is put that no one reads
    jobs_dims = sorted(d[0]["Value"] for m in cloudwatch.list_metrics(Namespace=METRICS_NAMESPACE, MetricName="Jobs")["Metrics"] for d in [m["Dimensions"]])
    assert jobs_dims == ["FAILED", "SUCCEEDED"]
    assert {d["Name"] for d in put[(METRICS_NAMESPACE, "MediaProcessed")]} == {"camera_id", "stage"}  # what the SEARCH expressions name

    lines.clear()
    assert odin.infra_status(profile="cloud", echo=lines.append) == 0
    assert "  alarms: odins-ravne-budget OK, odins-ravne-failed-jobs OK" in lines  # moto does not evaluate alarms
    assert any(line.startswith("  dashboard: https://eu-north-1.console.aws.amazon.com/cloudwatch/") for line in lines)

    lines.clear()
    assert odin.infra_teardown(profile="cloud", echo=lines.append) == 0
    assert cloudwatch.describe_alarms(AlarmNames=list(infra.alarm_names("odins-ravne").values()))["MetricAlarms"] == []
    assert cloudwatch.list_dashboards()["DashboardEntries"] == []


def test_a_metric_cloudwatch_refuses_does_not_lose_the_costs(tmp_path, monkeypatch):
    """CloudWatch unreachable (an endpoint nothing listens on): the costs are written and the summary says
    why the metrics are missing, rather than failing the GPU stage after its work is done."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    resource = CostResource(live_spot_prices=False, cloudwatch_metrics=True, budget_name=None)
    output = Storage(str(tmp_path / "out"))
    table, summary = resource.record_jobs(output, [_job("j1", "SUCCEEDED")], camera_id="cam01", run_id="r1", stage="detect", instance_type="g4dn.xlarge", media_per_job=[10])
    assert summary["metrics_error"].startswith("CloudWatch metrics not put: Could not connect to the endpoint URL")
    assert output.read_parquet("costs").num_rows == 1 and table["priority"].to_pylist() == ["normal"]


@pytest.mark.slow
def test_a_failed_gpu_job_is_priced_and_counted_for_the_failed_jobs_alarm(moto_endpoint, tmp_path, monkeypatch):
    """A Stage 1 job that fails in its container (the profile names a model file the image lacks): the
    job was billed, so its cost row is written (status FAILED) and the Jobs{status=FAILED} metric the
    failed-jobs alarm reads is put, before the failure fails the step. Runs the real entrypoint under
    the local Batch runner (~15 s)."""
    import ultralytics
    import yaml
    from dagster import AssetKey, DagsterInstance

    from odin_support import make_batch
    from odins_ravne_assets.definitions import build_definitions

    moto_reset(moto_endpoint)
    make_batch()
    bucket = "odins-ravne-failing"
    client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    client("s3").upload_file(str(Path(ultralytics.__file__).parent / "assets" / "bus.jpg"), bucket, "input/cam-f/IMG_0001.JPG")
    profile = yaml.safe_load((ROOT / "profiles" / "cloud.yaml").read_text())
    profile["pipeline"]["stage1"]["model"] = "/opt/models/not-in-the-image.pt"  # on a Batch runner only its form is checked at load
    profile_path = tmp_path / "missing-model.yaml"
    profile_path.write_text(yaml.safe_dump(profile))
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "local")
    monkeypatch.setenv("ODINS_RAVNE_INPUT", f"s3://{bucket}/input")
    monkeypatch.setenv("ODINS_RAVNE_OUTPUT", f"s3://{bucket}/output")
    monkeypatch.delenv("ODINS_RAVNE_BUCKET", raising=False)
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cameras", ["cam-f"])
    result = build_definitions(str(profile_path)).resolve_job_def("camera_job").execute_in_process(
        partition_key="cam-f", instance=instance, asset_selection=[AssetKey("raw_images"), AssetKey("detections")], raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.to_string()
    assert "1 of 1 Batch job(s) failed" in failure
    costs = Storage(f"s3://{bucket}/output").read_parquet("costs")
    assert costs.select(["camera_id", "stage", "status", "n_media"]).to_pylist() == [{"camera_id": "cam-f", "stage": "detect", "status": "FAILED", "n_media": 0}]
    assert costs["runtime_seconds"].to_pylist()[0] > 0
    failed = client("cloudwatch").list_metrics(Namespace=METRICS_NAMESPACE, MetricName="Jobs", Dimensions=[{"Name": "status", "Value": "FAILED"}])["Metrics"]
    assert len(failed) == 1
