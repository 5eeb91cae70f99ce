"""A backfill across camera partitions, launched the way an operator does (`dagster job backfill`),
each camera run in its own process on a real instance."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus

from media_support import ASSETS, write_jpeg

REPO = Path(__file__).resolve().parents[2]

# Runs launch straight away in subprocesses; the shipped dagster.yaml queues them for the daemon.
INSTANCE_YAML = """telemetry: {enabled: false}
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
"""


def test_backfill_of_two_cameras_materializes_both(tmp_path):
    source = tmp_path / "in"
    write_jpeg(ASSETS / "bus.jpg", source / "cam-1" / "a.jpg", when="2026:06:01 05:30:00", scale=0.4)
    write_jpeg(ASSETS / "zidane.jpg", source / "cam-2" / "a.jpg", when="2026:06:01 06:30:00", scale=0.4)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    env = {**os.environ, "DAGSTER_HOME": str(home), "ODINS_RAVNE_INPUT": str(source), "ODINS_RAVNE_OUTPUT": str(tmp_path / "out")}
    instance = DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("cameras", ["cam-1", "cam-2"])
    dagster = Path(sys.executable).parent / "dagster"
    subprocess.run(
        [str(dagster), "job", "backfill", "-j", "camera_job", "-w", "workspace.yaml", "--partitions", "cam-1,cam-2", "--noprompt"],
        cwd=REPO, env=env, check=True, capture_output=True, timeout=300,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        runs = instance.get_runs()
        if len(runs) == 2 and all(r.is_finished for r in runs):
            break
        time.sleep(2)
    errors = [
        event.message
        for run in runs
        if run.status != DagsterRunStatus.SUCCESS
        for event in instance.all_logs(run.run_id)
        if event.level >= 40  # logging.ERROR
    ]
    assert sorted((r.tags["dagster/partition"], r.status) for r in runs) == [
        ("cam-1", DagsterRunStatus.SUCCESS),
        ("cam-2", DagsterRunStatus.SUCCESS),
    ], "\n".join(errors)
    assert all("dagster/backfill" in r.tags for r in runs)
    for camera in ("cam-1", "cam-2"):
        assert (tmp_path / "out" / "events" / f"camera_id={camera}" / "data.parquet").is_file()
