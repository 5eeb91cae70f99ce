"""The whole Definitions load, and every profile validates: a broken import or knob fails here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus

from gpu_ops.settings import ProfileError, parse_profile
from odins_ravne_assets.definitions import build_definitions
from odins_ravne_assets.jobs import RUNNER_TAG
from resources.batch_pipes import PipesBatchClientResource
from resources.cost import CostResource
from resources.profiles import PROFILE_DIR, load_profile
from resources.runner import BatchStageRunner, GpuStageRunner

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_load_with_placeholder_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ODINS_RAVNE_INPUT", str(tmp_path / "in"))
    monkeypatch.setenv("ODINS_RAVNE_OUTPUT", str(tmp_path / "out"))
    from odins_ravne_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"raw_images", "detections", "repeat_detections", "crops", "species_labels", "deployments", "camera_operation", "condensed_reports", "gps_clusters", "reports", "stage3_database"}
    assert defs.resolve_job_def("camera_job").partitions_def.name == "cameras"
    assert defs.resolve_job_def("project_job")
    assert {s.name for s in defs.sensors} >= {"new_media_sensor", "project_automation_sensor"}


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
def test_every_shipped_profile_loads(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.pipeline.stage1.batch_size == 16
    # The model's own input size in every profile: the same photo gives the same answer anywhere.
    assert profile.pipeline.stage1.image_size is None
    assert profile.pipeline.stage2.batch_size == 32 and profile.pipeline.stage2.image_size == 224
    assert profile.pipeline.stage1.max_images_per_job == 1000


def test_a_mistyped_key_names_the_key_and_the_likely_meaning():
    with pytest.raises(ProfileError, match=r"unknown key 'pipeline.stage1.batchsize'.*batch_size"):
        parse_profile({"pipeline": {"stage1": {"batchsize": 8}}})


def test_a_wrong_type_or_choice_is_an_error():
    with pytest.raises(ProfileError, match="'pipeline.stage1.batch_size' must be int"):
        parse_profile({"pipeline": {"stage1": {"batch_size": "sixteen"}}})
    with pytest.raises(ProfileError, match="'runner.type' is 'lambda'; use one of local, batch"):
        parse_profile({"runner": {"type": "lambda"}})
    with pytest.raises(ProfileError, match="unknown key 'pipeline.events.per_camera.cam-1.window'"):
        parse_profile({"pipeline": {"events": {"per_camera": {"cam-1": {"window": 3}}}}})


def test_an_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match="known profiles: cloud, cloud-cost-optimized, local"):
        load_profile("nope")


def test_the_profile_decides_the_runner_resources_and_the_runner_tag(monkeypatch):
    monkeypatch.delenv("ODINS_RAVNE_BATCH_RUNNER", raising=False)
    local = build_definitions("local")
    assert type(local.resources["gpu_runner"]) is GpuStageRunner
    assert "batch_pipes" not in local.resources and "cost" not in local.resources
    assert local.resolve_job_def("camera_job").run_tags[RUNNER_TAG] == "local"

    cloud = build_definitions("cloud")
    runner = cloud.resources["gpu_runner"]
    assert isinstance(runner, BatchStageRunner)
    assert isinstance(cloud.resources["batch_pipes"], PipesBatchClientResource) and isinstance(cloud.resources["cost"], CostResource)
    assert runner.batch.fallback_job_queue == "odins-ravne-gpu-ondemand" and not runner.batch.local_runner
    assert cloud.resolve_job_def("camera_job").run_tags[RUNNER_TAG] == "batch"
    assert RUNNER_TAG not in cloud.resolve_job_def("project_job").run_tags  # no GPU work: no Batch slot
    # The production run queue limits exactly the tag the job carries.
    limits = yaml.safe_load((ROOT / "infra" / "dagster.prod.yaml").read_text())["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {"key": RUNNER_TAG, "value": "batch", "limit": 4} in limits


def test_a_backfill_on_a_batch_deployment_is_queued_with_the_runner_tag(tmp_path):
    """Runs launched outside the CLI (a backfill, as an operator starts it; the UI's launchpad takes its
    tags from the same job) carry the tag that the production queue limits."""
    home = tmp_path / "home"
    home.mkdir()
    # Queued and never dequeued (no daemon): what the run queue would see.
    (home / "dagster.yaml").write_text(
        "telemetry: {enabled: false}\nrun_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
    )
    instance = DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("cameras", ["cam-1", "cam-2"])
    env = {**os.environ, "DAGSTER_HOME": str(home), "ODINS_RAVNE_PROFILE": "cloud", "ODINS_RAVNE_INPUT": str(tmp_path / "in"), "ODINS_RAVNE_OUTPUT": str(tmp_path / "out")}
    env.pop("ODINS_RAVNE_BATCH_RUNNER", None)
    dagster = Path(sys.executable).parent / "dagster"
    subprocess.run(
        [str(dagster), "job", "backfill", "-j", "camera_job", "-w", "workspace.yaml", "--partitions", "cam-1,cam-2", "--noprompt"],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=300,
    )
    runs = instance.get_runs()
    assert sorted(r.tags["dagster/partition"] for r in runs) == ["cam-1", "cam-2"]
    assert all(r.status == DagsterRunStatus.QUEUED and "dagster/backfill" in r.tags and r.tags[RUNNER_TAG] == "batch" for r in runs)


def test_the_local_instance_fails_a_run_whose_process_died(tmp_path):
    """The daemon's own run monitoring step (monitor_started_run, as `make dev` runs it) with the
    project's dagster.yaml: a run whose process was killed with SIGKILL is marked failed, a live one is
    left alone. Before, the default launcher could not check workers and such runs stayed STARTED."""
    import logging
    import textwrap

    from dagster import RunsFilter
    from dagster._core.launcher import WorkerStatus
    from dagster._daemon.monitoring.run_monitoring import monitor_started_run

    from resources.run_launcher import LocalRunLauncher

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    instance = DagsterInstance.from_config(str(home))
    assert isinstance(instance.run_launcher, LocalRunLauncher) and instance.run_monitoring_enabled
    dies = textwrap.dedent("""
        import os, signal
        from dagster import DagsterInstance, job, op

        @op
        def killed():
            os.kill(os.getpid(), signal.SIGKILL)

        @job
        def doomed():
            killed()

        doomed.execute_in_process(instance=DagsterInstance.get())
    """)
    subprocess.run([sys.executable, "-c", dies], env={**os.environ, "DAGSTER_HOME": str(home)}, timeout=120)
    [record] = instance.get_run_records(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))
    health = instance.run_launcher.check_run_worker_health(record.dagster_run)
    assert health.status == WorkerStatus.FAILED and "is gone, killed or crashed" in health.msg
    monitor_started_run(instance, None, record, logging.getLogger("test"))
    assert instance.get_run_by_id(record.dagster_run.run_id).status == DagsterRunStatus.FAILURE

    from dagster import job, op

    @op
    def fine():
        return 1

    @job
    def alive():
        fine()

    run = alive.execute_in_process(instance=instance).dagster_run
    assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING  # this process lives
