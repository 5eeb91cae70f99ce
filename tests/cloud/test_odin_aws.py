"""Odin's AWS pieces against a moto server: stack lifecycle, S3 sensor and SQS mode, costs and the
budget guard, Stage 3 download; plus the template through cfn-lint and the production instance yaml."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from odin_support import REGION, client, moto_endpoint, moto_reset  # noqa: F401
from resources import infra
from resources.batch_pipes import BatchJobRecord
from resources.cost import BudgetExceeded, CostResource, PriceBook, check_budget, job_costs, report_rows, summarize
from resources.profiles import load_profile
from resources.s3_sensor import poll_s3, poll_sqs, run_key_for, s3_event
from resources.stage3_download import UnsafeKeyError, download_stage3, safe_local_path
from gpu_ops.storage import Storage

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "odins-ravne-data"


@pytest.fixture()
def aws(moto_endpoint):
    moto_reset(moto_endpoint)
    client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return moto_endpoint


def put(key: str, body: bytes = b"jpeg") -> None:
    client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)


class ListCounter:
    """Counts ListObjectsV2 calls and the objects they returned (botocore event hooks, no mocking)."""

    def __init__(self, s3):
        self.calls = self.objects = 0
        s3.meta.events.register("after-call.s3.ListObjectsV2", self._seen)

    def _seen(self, parsed, **_):
        self.calls += 1
        self.objects += len(parsed.get("Contents", []))


# -- template and instance config -------------------------------------------------------------------


def test_template_passes_cfn_lint():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")  # the console script installed beside this python
    # The project's home region, and the region Budgets lives in: resource availability differs by region.
    result = subprocess.run([str(cfn_lint), str(ROOT / "infra" / "cloudformation.yaml"), "--regions", "eu-north-1", "us-east-1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_has_spot_first_scale_to_zero_and_lifecycle():
    from cfnlint.decode.cfn_yaml import load

    resources = load(str(ROOT / "infra" / "cloudformation.yaml"))["Resources"]
    spot, on_demand = resources["SpotComputeEnvironment"]["Properties"], resources["OnDemandComputeEnvironment"]["Properties"]
    assert spot["ComputeResources"]["Type"] == "SPOT" and on_demand["ComputeResources"]["Type"] == "EC2"
    assert spot["ComputeResources"]["MinvCpus"] == 0 and on_demand["ComputeResources"]["MinvCpus"] == 0
    order = resources["GpuJobQueue"]["Properties"]["ComputeEnvironmentOrder"]
    assert [o["ComputeEnvironment"]["Ref"] for o in sorted(order, key=lambda o: o["Order"])] == ["SpotComputeEnvironment", "OnDemandComputeEnvironment"]
    job = resources["GpuJobDefinition"]["Properties"]
    assert {"Type": "GPU", "Value": {"Ref": "JobGpus"}} in job["ContainerProperties"]["ResourceRequirements"]
    assert job["RetryStrategy"]["EvaluateOnExit"] == [{"OnStatusReason": "Host EC2*", "Action": "RETRY"}, {"OnReason": "*", "Action": "EXIT"}]
    bucket = resources["DataBucket"]["Properties"]
    transitions = bucket["LifecycleConfiguration"]["Rules"][0]["Transitions"]
    assert [(t["StorageClass"], t["TransitionInDays"]) for t in transitions] == [("STANDARD_IA", 30), ("GLACIER", 90)]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert not any(r["Type"] == "AWS::Budgets::Budget" for r in resources.values())  # absent in eu-north-1: made through the API
    # The job role reaches the project's bucket only.
    statements = resources["JobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert all("s3:*" not in s["Action"] for s in statements)


def test_prod_instance_yaml_is_valid_dagster_config(tmp_path, monkeypatch):
    from dagster._config import process_config, resolve_to_config_type
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB", "ODINS_RAVNE_BUCKET"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("DAGSTER_PG_PORT", "5432")
    (tmp_path / "dagster.yaml").write_text((ROOT / "infra" / "dagster.prod.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    assert "postgres" in config["storage"]
    for cls, section in ((S3ComputeLogManager, "compute_logs"), (QueuedRunCoordinator, "run_coordinator")):
        checked = process_config(resolve_to_config_type(cls.config_type()), config[section]["config"])
        assert checked.success, checked.errors
    limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {"key": "odins-ravne/runner", "value": "batch", "limit": 4} in limits


# -- infrastructure lifecycle -----------------------------------------------------------------------


def test_infra_deploy_status_teardown(aws):
    subnets, groups = infra.default_network(client("ec2"))  # moto, like a fresh account, has a default VPC
    assert subnets and groups
    profile = load_profile("cloud-cost-optimized")
    params = infra.stack_parameters(profile, image_uri="123.dkr.ecr.eu-north-1.amazonaws.com/odins-ravne:gpu", subnet_ids=subnets, security_group_ids=groups)
    assert params["InstanceTypes"] == "g4dn.xlarge,g4dn.2xlarge" and params["RetryAttempts"] == "3"
    cfn, batch = client("cloudformation"), client("batch")
    assert infra.status(cfn)["status"] == "NOT_DEPLOYED"
    # moto has no CloudFormation support for the bucket/queue policies and the budget: it skips them with a warning.
    with pytest.warns(UserWarning, match="not supported by moto"):
        outputs = infra.deploy(cfn, params, poll_seconds=0.1, echo=lambda _: None)
    assert outputs["JobQueue"] == "odins-ravne-gpu-spot" and outputs["OnDemandJobQueue"] == "odins-ravne-gpu-ondemand"
    budgets = client("budgets")
    assert "created" in infra.ensure_budget(budgets, account_id="123456789012", name="odins-ravne-monthly", monthly_usd=1000, email="ops@example.org")
    # (moto does not implement UpdateBudget, so changing an existing budget's limit is not run here.)
    limit = budgets.describe_budget(AccountId="123456789012", BudgetName="odins-ravne-monthly")["Budget"]["BudgetLimit"]
    assert float(limit["Amount"]) == 1000.0
    report = infra.status(cfn, batch=batch)
    assert report["status"] == "CREATE_COMPLETE"
    assert {e["desired_vcpus"] for e in report["compute_environments"].values()} == {0}  # scaled to zero
    queue = batch.describe_job_queues(jobQueues=["odins-ravne-gpu-spot"])["jobQueues"][0]
    assert len(queue["computeEnvironmentOrder"]) == 2
    definition = batch.describe_job_definitions(jobDefinitionName="odins-ravne-gpu")["jobDefinitions"][0]
    assert definition["retryStrategy"]["attempts"] == 3
    client("s3").head_bucket(Bucket=outputs["BucketName"])  # moto's CloudFormation does not apply its lifecycle rules; the template test checks them
    # Re-deploying an unchanged stack is not an error.
    infra.deploy(cfn, params, poll_seconds=0.1, echo=lambda _: None)

    class BusyBatch:  # moto finishes jobs at once, so a queue with work in it is simulated here
        def list_jobs(self, jobQueue, jobStatus):
            return {"jobSummaryList": [{"jobId": "j1"}] if jobStatus == "RUNNING" else []}

    with pytest.raises(infra.InfraError, match="still queued or running"):
        infra.teardown(cfn, batch=BusyBatch(), echo=lambda _: None)
    message = infra.teardown(cfn, batch=batch, poll_seconds=0.1, echo=lambda _: None)
    assert "deleted" in message and "is kept" in message
    assert infra.status(cfn)["status"] == "NOT_DEPLOYED"


# -- S3 sensor: per-camera StartAfter cursor ------------------------------------------------------------


def test_s3_poll_lists_only_what_is_new(aws):
    s3 = client("s3")
    for camera in ("cam01", "cam02"):
        for i in range(30):
            put(f"input/{camera}/IMG_{i:04d}.JPG")
    put("input/readme.txt")  # not in a camera folder
    put("input/cam01/.DS_Store")
    counter = ListCounter(s3)
    found, cursor = poll_s3(s3, BUCKET, "input", None)
    assert sorted(found) == ["cam01", "cam02"] and len(found["cam01"]) == 30
    assert all(".DS_Store" not in k for k in found["cam01"])

    # Nothing new: one call for the camera folders and one per camera; the only object listed is
    # the stray file directly under the prefix, which the folder listing returns.
    counter.calls = counter.objects = 0
    found, cursor = poll_s3(s3, BUCKET, "input", cursor)
    assert found == {} and counter.calls == 3 and counter.objects == 1

    put("input/cam01/IMG_0030.JPG")
    put("input/cam03/IMG_0001.JPG")  # a new camera
    counter.calls = counter.objects = 0
    found, cursor = poll_s3(s3, BUCKET, "input", cursor)
    assert found == {"cam01": ["input/cam01/IMG_0030.JPG"], "cam03": ["input/cam03/IMG_0001.JPG"]}
    assert counter.calls == 4 and counter.objects == 1 + 2  # bounded by what is new, not the 63 that exist

    # A late upload whose name sorts before the cursor is found by the periodic rescan.
    time.sleep(1.1)  # S3 LastModified has one-second resolution
    put("input/cam02/IMG_0005b.JPG")
    found, cursor = poll_s3(s3, BUCKET, "input", cursor, rescan_every=2)
    assert found == {"cam02": ["input/cam02/IMG_0005b.JPG"]}  # tick 4 is a rescan tick
    assert run_key_for("cam02", found["cam02"]) == run_key_for("cam02", list(found["cam02"]))


def test_s3_poll_spreads_a_big_upload_over_ticks(aws):
    s3 = client("s3")
    for i in range(25):
        put(f"input/cam01/{i:03d}.jpg")
    seen, cursor = [], None
    for _ in range(3):
        found, cursor = poll_s3(s3, BUCKET, "input/", cursor, max_keys_per_camera=10)
        seen += found.get("cam01", [])
    assert seen == [f"input/cam01/{i:03d}.jpg" for i in range(25)]
    with pytest.raises(ValueError, match="reset the sensor"):
        poll_s3(s3, BUCKET, "input", "not json")


# -- SQS mode: S3 ObjectCreated notifications --------------------------------------------------------------


def test_sqs_mode_receives_uploads_at_least_once(aws):
    s3, sqs = client("s3"), client("sqs")
    queue = sqs.create_queue(QueueName="odins-ravne-uploads", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # moto delivers real S3 notifications (and S3's test event) to the queue, URL-encoded keys included.
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "input/"}]}}}]},
    )
    put("input/cam 01/IMG 0001.JPG")
    put("input/cam02/IMG_0001.JPG")
    put("input/cam02/IMG_0002.JPG")
    sqs.send_message(QueueUrl=queue, MessageBody=s3_event("another-bucket", "input/cam09/x.jpg"))
    sqs.send_message(QueueUrl=queue, MessageBody="not an S3 event")

    uploads = poll_sqs(sqs, queue, "input", max_messages=20, bucket=BUCKET)
    assert dict(uploads) == {"cam 01": ["input/cam 01/IMG 0001.JPG"], "cam02": ["input/cam02/IMG_0001.JPG", "input/cam02/IMG_0002.JPG"]}
    assert uploads.unparsed == 1
    # Not acknowledged (the tick "failed"): after the visibility timeout the same uploads come back.
    time.sleep(1.2)
    again = poll_sqs(sqs, queue, "input", max_messages=20, bucket=BUCKET)
    assert dict(again) == dict(uploads)
    assert again.ack() == len(again.receipts) or again.receipts == []
    time.sleep(1.2)
    after_ack = poll_sqs(sqs, queue, "input", max_messages=20, bucket=BUCKET)
    assert dict(after_ack) == {} and after_ack.unparsed == 1  # only the poison message is left, for the DLQ


# -- costs and the budget guard -----------------------------------------------------------------------------


def _record(job_id, capacity, seconds, attempts=1):
    start = 1_700_000_000_000
    spans = [{"startedAt": start + i * seconds * 1000, "stoppedAt": start + (i + 1) * seconds * 1000} for i in range(attempts)]
    return BatchJobRecord(shard_index=0, job_id=job_id, job_name=job_id, queue="q", capacity=capacity, status="SUCCEEDED", started_at=start, stopped_at=start + attempts * seconds * 1000, attempts=spans)


def test_costs_recorded_with_spot_saving(aws, tmp_path):
    resource = CostResource.from_profile(load_profile("cloud"), live_spot_prices=False)
    output = Storage(str(tmp_path / "out"))
    jobs = [_record("j-spot", "spot", 1800), _record("j-od", "on-demand", 1800), _record("j-reclaimed", "spot", 900, attempts=2)]
    table, summary = resource.record_jobs(output, jobs, camera_id="cam01", run_id="run1", stage="detect", instance_type="g4dn.xlarge", media_per_job=[1000, 1000, 1000])
    usd = dict(zip(table["job_id"].to_pylist(), table["usd"].to_pylist()))
    assert usd["j-spot"] == pytest.approx(0.079)  # half an hour at $0.158
    assert usd["j-od"] == pytest.approx(0.263)  # half an hour at $0.526
    assert usd["j-reclaimed"] == pytest.approx(0.079)  # both attempts billed
    assert summary["saving_usd"] == pytest.approx(0.789 - 0.421, abs=1e-3) and summary["n_media"] == 3000
    assert summary["usd_per_media"] == pytest.approx(0.421 / 3000, rel=1e-3)
    stored = output.read_parquet("costs")
    assert stored.num_rows == 3 and (tmp_path / "out/costs/camera_id=cam01/run1-detect.parquet").exists()
    assert report_rows(stored)[0]["camera_id"] == "cam01"
    spent, source = resource.spent_this_month(output, budgets=None, account_id=None)
    assert source in ("costs table", "AWS Budget odins-ravne-monthly")
    # DuckDB reads the costs table as the Stage 3 `costs` view would.
    total = duckdb.connect().execute(f"select round(sum(usd), 3) from read_parquet('{tmp_path}/out/costs/**/*.parquet')").fetchone()[0]
    assert total == pytest.approx(0.421, abs=1e-3)


def test_live_spot_price_used_only_when_recent_and_plausible(aws):
    # moto answers describe_spot_price_history with placeholder prices stamped 2006: rightly ignored.
    book = PriceBook(REGION, {"g4dn.xlarge": 0.526}, {"g4dn.xlarge": 0.158}, ec2=client("ec2"))
    price = book.price("g4dn.xlarge", "spot")
    assert price.usd_per_hour == 0.158 and price.source.startswith("table (live ignored: newest price from 2006")

    now = dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc)

    class LiveEc2:  # what AWS returns for two zones, recent
        def describe_spot_price_history(self, **_):
            return {"SpotPriceHistory": [
                {"AvailabilityZone": "eu-north-1a", "Timestamp": now - dt.timedelta(minutes=5), "SpotPrice": "0.1600"},
                {"AvailabilityZone": "eu-north-1b", "Timestamp": now - dt.timedelta(minutes=9), "SpotPrice": "0.1700"},
                {"AvailabilityZone": "eu-north-1a", "Timestamp": now - dt.timedelta(hours=2), "SpotPrice": "0.3000"},
            ]}

    live = PriceBook(REGION, {"g4dn.xlarge": 0.526}, {"g4dn.xlarge": 0.158}, ec2=LiveEc2(), now=now).price("g4dn.xlarge", "spot")
    assert live.source == "live-spot" and live.usd_per_hour == pytest.approx(0.165)
    with pytest.raises(KeyError, match="add it to the profile"):
        book.price("g5.xlarge", "spot")


def test_budget_guard_refuses_a_run_it_cannot_afford(aws, tmp_path):
    with pytest.raises(BudgetExceeded, match=r"cost about \$50.00 but only \$10.00 of the monthly budget of \$1,000.00 is left"):
        check_budget(50.0, 1000.0, 990.0)
    assert check_budget(5.0, 1000.0, 990.0) == pytest.approx(5.0)

    budgets = client("budgets")
    budgets.create_budget(
        AccountId="123456789012",
        Budget={"BudgetName": "odins-ravne-monthly", "BudgetLimit": {"Amount": "1000", "Unit": "USD"}, "TimeUnit": "MONTHLY", "BudgetType": "COST", "CalculatedSpend": {"ActualSpend": {"Amount": "995", "Unit": "USD"}}},
    )
    resource = CostResource(monthly_budget_usd=1000.0, live_spot_prices=False)
    output = Storage(str(tmp_path / "out"))
    # 100,000 images on g4dn.xlarge spot: 50 h at $0.158 = $7.90 > the $5 left in the AWS Budget.
    with pytest.raises(BudgetExceeded, match="only \\$5.00"):
        resource.guard(output, n_media=100_000, instance_type="g4dn.xlarge", budgets=budgets, account_id="123456789012")
    allowed = resource.guard(output, n_media=10_000, instance_type="g4dn.xlarge", budgets=budgets, account_id="123456789012")
    assert allowed["spent_source"] == "AWS Budget odins-ravne-monthly" and allowed["projected_usd"] == pytest.approx(0.79)


def test_cloudwatch_metrics_are_put(aws):
    cloudwatch = client("cloudwatch")
    CostResource().put_metrics(camera_id="cam01", stage="detect", seconds=120.0, n_media=500, usd=0.05, cloudwatch=cloudwatch)
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="OdinsRavne/Processing")["Metrics"]}
    assert names == {"ProcessingTime", "MediaProcessed", "ProcessingCost"}


def test_job_costs_from_described_jobs_dicts():
    book = PriceBook(REGION, {"g4dn.2xlarge": 0.752}, {"g4dn.2xlarge": 0.226})
    rows = job_costs([{"job_id": "a", "capacity": "spot", "attempts": [{"startedAt": 0, "stoppedAt": 3_600_000}]}], book, camera_id="c", run_id="r", stage="classify", instance_type="g4dn.2xlarge")
    assert rows["usd"].to_pylist() == [0.226] and rows["saving_usd"].to_pylist() == [pytest.approx(0.526)]
    assert summarize(None)["jobs"] == 0


# -- Stage 3 download ---------------------------------------------------------------------------------------


def test_stage3_download_copies_outputs_and_refuses_escaping_keys(aws, tmp_path):
    db = tmp_path / "build.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create table _data_detections as select 'cam01' as camera_id, 'dog' as label")
    con.execute("create view detections as select * from _data_detections")
    con.close()
    put("out/stage3/odins_ravne.duckdb", db.read_bytes())
    buffer = pa.BufferOutputStream()
    pa.parquet.write_table(pa.table({"camera_id": ["cam01"], "label": ["dog"]}), buffer)
    put("out/detections/camera_id=cam01/data.parquet", buffer.getvalue().to_pybytes())
    put("out/crops/camera_id=cam01/abc.jpg", b"jpeg")
    put("out/_work/detect/sig/camera_id=cam01/done/x.parquet", b"checkpoint")

    local = tmp_path / "local"
    path = download_stage3(f"s3://{BUCKET}/out", local)
    assert path == (local / "stage3/odins_ravne.duckdb").resolve()
    assert duckdb.connect(str(path), read_only=True).execute("select label from detections").fetchall() == [("dog",)]
    assert (local / "detections/camera_id=cam01/data.parquet").exists()
    assert not (local / "crops/camera_id=cam01/abc.jpg").exists() and not (local / "_work").exists()

    put("out/stage3/../../evil.txt", b"owned")
    with pytest.raises(UnsafeKeyError, match=r"refusing object key 'stage3/\.\./\.\./evil\.txt'"):
        download_stage3(f"s3://{BUCKET}/out", tmp_path / "again")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "again" / "stage3").exists()
    for bad in ("/etc/passwd", "a/../../b", "..", "c:\\x", "stage3\\..\\x"):
        with pytest.raises(UnsafeKeyError):
            safe_local_path(tmp_path, bad)
    assert safe_local_path(tmp_path, "media/a..b.parquet") == (tmp_path / "media/a..b.parquet").resolve()
    with pytest.raises(ValueError, match="not an s3:// URI"):
        download_stage3(str(tmp_path), tmp_path / "x")


# -- the CLI-facing commands ------------------------------------------------------------------------------


def test_odin_commands_deploy_status_report_download_teardown(aws, tmp_path, capsys):
    from odins_ravne_assets.cli import odin

    lines: list[str] = []
    echo = lines.append
    with pytest.warns(UserWarning, match="not supported by moto"):
        assert odin.infra_deploy(profile="cloud-cost-optimized", image_uri="odins-ravne:gpu", echo=echo) == 0
    assert any("using the default VPC" in line for line in lines) and any("ODINS_RAVNE_BUCKET=" in line for line in lines)
    assert "budget odins-ravne-monthly created: $1,000.00 a month" in lines
    lines.clear()
    assert odin.infra_status(profile="cloud-cost-optimized", echo=echo) == 0
    assert lines[0] == "stack odins-ravne: CREATE_COMPLETE" and any("queue odins-ravne-gpu-spot: idle" in line for line in lines)

    output = Storage(f"s3://{BUCKET}/out")
    CostResource(live_spot_prices=False).record_jobs(output, [_record("j1", "spot", 3600)], camera_id="cam01", run_id="r1", stage="detect", instance_type="g4dn.xlarge", media_per_job=[2000])
    lines.clear()
    assert odin.cost_report(output_root=f"s3://{BUCKET}/out", profile="cloud-cost-optimized", echo=echo) == 0
    report = "\n".join(lines)
    assert "cam01" in report and "total $0.1580 for 1 job(s)" in report and "spot saved $0.3680 (70%" in report

    assert odin.stage3_download(s3_uri=f"s3://{BUCKET}/out", local_dir=str(tmp_path / "s3"), echo=echo) == 2
    assert "no Stage 3 database" in capsys.readouterr().err
    lines.clear()
    assert odin.infra_teardown(profile="cloud-cost-optimized", echo=echo) == 0
    assert "deleted" in lines[-1]
