"""``odins-ravne batch`` against a moto server: local cards staged to S3, processed on (moto) Batch by
the local runner reading only from S3, Stage 3 downloaded, costs printed; a second run sends nothing
and launches no job. Also: ``process`` refuses a local input on a Batch profile, and the local runner
fails a job handed a path of this machine, as a container could not read it."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import duckdb
import pytest
import yaml
from dagster import DagsterInstance, asset, materialize

from media_support import ASSETS, write_jpeg
from gpu_ops.settings import AwsSettings
from odin_support import JOB_DEFINITION, REGION, SPOT_QUEUE, client, make_batch, moto_batch_without_docker, moto_endpoint, moto_reset  # noqa: F401
from odins_ravne_assets.cli import main, odin
from resources import staging
from resources.batch_local import LocalBatchRunner
from resources.batch_pipes import PipesBatchClient

HIGH_QUEUE = AwsSettings().high_priority_job_queue


def test_process_refuses_a_local_input_on_a_batch_profile(tmp_path, capsys):
    (tmp_path / "cards" / "cam-a").mkdir(parents=True)
    assert main(["process", str(tmp_path / "cards"), "--out", "s3://bucket/out", "--profile", "cloud"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: the input {tmp_path / 'cards'} is on this machine, and a Batch job reads only S3: stage and process it in one "
        f"command with odins-ravne batch {tmp_path / 'cards'} --out s3://BUCKET/PREFIX, or give an s3:// input"
    )
    assert main(["process", "s3://bucket/in", "--out", str(tmp_path / "out"), "--profile", "cloud"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: the output {tmp_path / 'out'} is on this machine, and a Batch job writes only to S3: give --out s3://BUCKET/PREFIX"
    )


def test_batch_refuses_a_local_output_and_a_local_profile(tmp_path, capsys):
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {tmp_path / 'out'}: Batch jobs read and write S3 only: give --out s3://BUCKET/PREFIX"
    assert main(["batch", str(tmp_path), "--out", "s3://bucket/season", "--profile", "local"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: profile 'local' runs the GPU stages on this machine (runner.type local): "
        "use a Batch profile (--profile cloud), or odins-ravne process for a local run"
    )


def test_the_local_runner_fails_a_job_handed_a_path_of_this_machine(moto_endpoint, tmp_path, monkeypatch):
    """The job's command would run; the runner fails it before it starts because its Pipes context
    names a local input_root, which no Batch container could open."""
    moto_reset(moto_endpoint)
    moto_batch_without_docker(moto_endpoint)
    make_batch()
    client("s3").create_bucket(Bucket="odins-ravne-guard", CreateBucketConfiguration={"LocationConstraint": REGION})
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)
    batch = client("batch")
    pipes = PipesBatchClient(bucket="odins-ravne-guard", client=batch, s3_client=client("s3"), runner=LocalBatchRunner(batch),
                             fallback_timeout=None, poll_interval=0.1, max_poll_interval=0.5, message_interval=0.1)
    params = {"jobName": "odins-ravne-detect-cam-a", "jobQueue": SPOT_QUEUE, "jobDefinition": JOB_DEFINITION,
              "containerOverrides": {"command": ["python", "-c", "open('/should/never/run', 'w')"]}}
    errors = []

    @asset
    def detections(context):
        try:
            pipes.run(context=context, submit_job_params=params, extras={"input_root": str(tmp_path / "cards"), "output_root": "s3://b/out"})
        except Exception as err:
            errors.append(str(err))
            raise

    assert not materialize([detections], raise_on_error=False).success
    assert f"CannotStartContainerError: the job's input_root {tmp_path / 'cards'} is not on S3, and a Batch container sees only S3" in errors[0]


@pytest.mark.slow
def test_batch_stages_local_cards_runs_them_on_batch_and_a_rerun_does_nothing(moto_endpoint, tmp_path, monkeypatch, capsys):
    """The issue's "done when", as a user runs it (about a minute: two GPU jobs, then a re-run)."""
    moto_reset(moto_endpoint)
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "local")
    monkeypatch.setenv("ODINS_RAVNE_PROFILE", "local")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("ODINS_RAVNE_BUCKET", raising=False)
    with pytest.warns(UserWarning, match="not supported by moto"):
        assert odin.infra_deploy(profile="cloud", image_uri="odins-ravne:gpu", echo=lambda line: None) == 0
    bucket = f"odins-ravne-123456789012-{REGION}"
    cards = tmp_path / "laptop" / "cards"
    for number, name in enumerate(("bus.jpg", "zidane.jpg")):
        write_jpeg(ASSETS / name, cards / "cam-a" / f"IMG_{number:04d}.JPG", when=f"2026:06:01 0{5 + number}:30:00", scale=0.5)
    away = tmp_path / "laptop" / "cards-put-away"

    real_stage = staging.stage_cards

    def stage_then_put_the_cards_away(*args, **kwargs):
        # Once staged, the cards are gone from where they were: only S3 holds the media.
        summary = real_stage(*args, **kwargs)
        cards.rename(away)
        return summary

    monkeypatch.setattr(staging, "stage_cards", stage_then_put_the_cards_away)
    workdir = tmp_path / "empty-cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    local = tmp_path / "results"
    command = ["batch", str(cards), "--out", f"s3://{bucket}/season", "--local-output", str(local), "--download-stage3",
               "--cost-report", "--priority", "high", "--compression-window", "5", "--quiet"]

    assert main(command) == 0
    printed = capsys.readouterr().out
    assert f"staged 1 camera(s), 2 file(s)" in printed and "2 uploaded" in printed
    assert "\ncam-a " in printed and "total $" in printed  # the cost report
    assert f"Stage 3 database: {local / 'stage3' / 'odins_ravne.duckdb'}" in printed
    batch = boto3.client("batch", region_name=REGION)
    # --priority high: the jobs go to the high-priority queue, ahead of the spot one.
    jobs = batch.list_jobs(jobQueue=HIGH_QUEUE, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(j["jobName"] for j in jobs) == ["odins-ravne-classify-cam-a", "odins-ravne-detect-cam-a"]
    con = duckdb.connect(str(local / "stage3" / "odins_ravne.duckdb"), read_only=True)
    assert con.execute("select count(*) from media where camera_id = 'cam-a'").fetchone()[0] == 2
    assert con.execute("select count(*) from detections where camera_id = 'cam-a'").fetchone()[0] > 0
    con.close()
    assert sorted(p.name for p in workdir.iterdir()) == []  # nothing was written where the command ran
    instance = DagsterInstance.get()
    runs = instance.get_runs()
    assert runs and all(r.tags.get("odins-ravne/priority") == "high" for r in runs)
    profile_path = Path(runs[0].run_config["resources"]["pipeline"]["config"]["profile"])
    assert profile_path.parent == tmp_path / "dagster_home" / "profiles"
    assert yaml.safe_load(profile_path.read_text())["pipeline"]["events"]["compression_window"] == 5.0

    shutil.move(str(away), str(cards))  # the same cards again
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "0 uploaded (0 B sent), 0 copied inside S3 (same content already there), 2 already staged" in printed
    assert len(batch.list_jobs(jobQueue=HIGH_QUEUE, jobStatus="SUCCEEDED")["jobSummaryList"]) == 2  # no new job
