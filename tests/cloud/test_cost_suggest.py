"""`odins-ravne cost report --suggest` and the budget guard's projection, from costs recorded in moto's S3."""

from __future__ import annotations

import pytest
import yaml

from odin_support import REGION, client, moto_endpoint, moto_reset  # noqa: F401
from odins_ravne_assets.cli import odin
from gpu_ops.storage import Storage
from resources.batch_pipes import BatchJobRecord
from resources.cost import CostResource, usd

BUCKET = "odins-ravne-costs"
START = 1_700_000_000_000


def _job(job_id: str, seconds: float, capacity: str = "spot") -> BatchJobRecord:
    stop = START + int(seconds * 1000)
    return BatchJobRecord(0, job_id, job_id, "q", capacity, status="SUCCEEDED", started_at=START, stopped_at=stop, attempts=[{"startedAt": START, "stoppedAt": stop}])


@pytest.fixture()
def output(moto_endpoint):
    moto_reset(moto_endpoint)
    client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return Storage(f"s3://{BUCKET}/out")


def _record(output, run_id: str, camera_id: str, job: BatchJobRecord, instance_type: str, n_media: int, cold: float, batch_size: int) -> None:
    CostResource(live_spot_prices=False).record_jobs(
        output, [job], run_id=run_id, stage="detect", instance_type=instance_type,
        shares=[{"media": {camera_id: n_media}, "cold_start_seconds": cold}], batch_size=batch_size, sizing="profile",
    )


def test_usd_keeps_three_significant_digits():
    assert [usd(0.000131667), usd(6.2778e-5), usd(0.0743), usd(12.5), usd(0.0), usd(None)] == ["$0.000132", "$0.0000628", "$0.0743", "$12.50", "$0.00", ""]


def test_report_suggests_from_measured_costs(output, tmp_path):
    profile = yaml.safe_load(open("profiles/cloud.yaml"))
    profile["pipeline"]["stage1"]["max_images_per_job"] = 50
    path = tmp_path / "cloud-50.yaml"
    path.write_text(yaml.safe_dump(profile))
    # A minute on g4dn.xlarge for 20 images, half of it cold start; 100 s on g4dn.2xlarge for 100 images.
    _record(output, "r1", "cam01", _job("j1", 60), "g4dn.xlarge", 20, 30.0, 16)
    _record(output, "r2", "cam02", _job("j2", 100), "g4dn.2xlarge", 100, 20.0, 16)
    lines: list[str] = []
    assert odin.cost_report(output_root=output.root, profile=str(path), suggest=True, next_n=1000, echo=lines.append) == 0
    report = "\n".join(lines)
    # The per-image column was "0.0001" and "0.0001" (four decimals) before: now three significant digits.
    assert "$0.000132" in report and "$0.0000628" in report
    suggestions = report.split("suggestions:")[1].strip().splitlines()
    assert suggestions[0].strip() == "spot saved $0.0207 of $0.0297 on-demand (70%)"
    assert suggestions[1].strip() == "lowest cost per image: g4dn.2xlarge at $0.0000628/image (g4dn.xlarge $0.000132)"
    assert suggestions[2].strip() == (
        "cold starts: 31% of job time (50 s over 2 job(s), 60 images a job on average); "
        "raise pipeline.stage1.max_images_per_job from 50 to about 300 to bring cold starts to 10%"
    )
    assert suggestions[3].strip().startswith("batch size and instance type: runs of 100 images (the median) ran on g4dn.2xlarge/batch 16, g4dn.xlarge/batch 16; "
                                             "the right-sizing rule picks g4dn.2xlarge/batch 32")
    assert suggestions[4].strip() == "next 1,000 images: about $0.0743 (measured $0.0000743/image for Stage 1 over 120 images, Stage 2 in proportion)"


def test_small_cameras_are_told_to_run_together(output):
    _record(output, "r1", "cam01", _job("j1", 40), "g4dn.xlarge", 20, 30.0, 16)
    lines: list[str] = []
    assert odin.cost_report(output_root=output.root, profile="cloud", suggest=True, echo=lines.append) == 0
    cold = next(line for line in lines if "cold starts" in line)
    assert "75% of job time" in cold and "because cameras are small; run cameras together" in cold


def test_next_n_without_measurements_uses_the_throughput_table(output):
    _record(output, "r1", "cam01", _job("j1", 40), "g4dn.xlarge", 0, 30.0, 16)  # a job that processed nothing
    lines: list[str] = []
    assert odin.cost_report(output_root=output.root, profile="cloud", next_n=2000, echo=lines.append) == 0
    # 2,000 images fall under the 1,000-and-more rule, which wants g4dn.4xlarge; cloud offers up to g4dn.2xlarge.
    assert lines[-1].strip() == "next 2,000 images: about $0.113 (Stage 1 on g4dn.2xlarge spot from the throughput table: nothing measured yet)"


def test_budget_guard_projects_from_measured_cost_per_image(output):
    resource = CostResource(live_spot_prices=False, budget_name=None)
    before = resource.guard(output, n_media=10_000, instance_type="g4dn.xlarge")
    assert before["projection"] == "throughput table" and before["projected_usd"] == pytest.approx(0.79)
    _record(output, "r1", "cam01", _job("j1", 60), "g4dn.xlarge", 20, 30.0, 16)
    _record(output, "r2", "cam02", _job("j2", 100), "g4dn.2xlarge", 100, 20.0, 32)  # another type: not this projection's
    after = resource.guard(output, n_media=10_000, instance_type="g4dn.xlarge")
    assert after["projection"] == "measured $0.000132/image over 20 images"
    assert after["projected_usd"] == pytest.approx(10_000 * 60 / 3600 * 0.158 / 20, rel=1e-4)
