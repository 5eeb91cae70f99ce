"""infra/dagster.prod.yaml run for real: a PostgreSQL server, the Dagster daemon, a backfill of 20 cameras.

The instance is the production file unchanged (PostgreSQL run/event/schedule storage, the queued run
coordinator with its tag limits, compute logs in S3, here moto's). PostgreSQL 15 is started by the
test on loopback in a temporary folder and stopped after it; the test is skipped, saying why, where
its binaries or dagster-postgres are missing. The runs are the stand-in camera job of
tests/team_deployment_job.py (the camera partitions and the Batch runner tag, a step that waits a
few seconds as a camera waiting on its Batch jobs does), so what is tested is the queue, not Stage 1.

Proved: the daemon never has more runs tagged ``odins-ravne/runner: batch`` in flight than the
file's limit (sampled while it runs, and from the runs' start and end times in PostgreSQL), and a
daemon stopped and started again halfway through the backfill loses no run: every camera ends with
one successful run and none failed.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from odin_support import REGION, client, moto_endpoint  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
CAMERAS = [f"cam-{i:02d}" for i in range(20)]
BUCKET = "odins-ravne-team"
PG_BIN_DIRS = ["/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]


def _pg_bin(name: str) -> str | None:
    return shutil.which(name) or next((f"{d}/{name}" for d in PG_BIN_DIRS if os.access(f"{d}/{name}", os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres_user():
    """initdb and postgres refuse to run as root: drop to the ``postgres`` user where the test runs as root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user for PostgreSQL to run as")

    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return {"preexec_fn": drop, "uid": user.pw_uid, "gid": user.pw_gid}


@pytest.fixture()
def postgres():
    """A PostgreSQL server on 127.0.0.1 (a free port) with a ``dagster`` database; stopped afterwards."""
    binaries = {name: _pg_bin(name) for name in ("initdb", "pg_ctl", "postgres")}
    missing = [name for name, path in binaries.items() if not path]
    if missing:
        pytest.skip(f"PostgreSQL is not installed here ({', '.join(missing)} not found): apt-get install postgresql")
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is not installed: pip install dagster-postgres==0.29.27 (the dev extra has it)")
    import psycopg2

    user = _as_postgres_user()
    drop = {"preexec_fn": user["preexec_fn"]} if user else {}
    folder = tempfile.mkdtemp(prefix="odins-ravne-pg-")  # under /tmp, which the postgres user can reach
    if user:
        os.chown(folder, user["uid"], user["gid"])
    data, port = f"{folder}/data", _free_port()
    subprocess.run([binaries["initdb"], "-D", data, "-U", "dagster", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True, **drop)
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
    subprocess.run([binaries["pg_ctl"], "-D", data, "-o", options, "-l", f"{folder}/server.log", "-w", "start"], check=True, capture_output=True, **drop)
    try:
        con = psycopg2.connect(host="127.0.0.1", port=port, user="dagster", dbname="postgres")
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE dagster")
        con.close()
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "unused-trust-auth", "DAGSTER_PG_DB": "dagster"}
    finally:
        subprocess.run([binaries["pg_ctl"], "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True, **drop)
        shutil.rmtree(folder, ignore_errors=True)


def _start_daemon(home: Path, env: dict, log) -> subprocess.Popen:
    daemon = Path(sys.executable).parent / "dagster-daemon"
    return subprocess.Popen([str(daemon), "run", "-w", str(home / "workspace.yaml")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen, timeout: float = 60) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # the daemon alone, as a redeploy or a host restart stops it
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
def test_backfill_of_20_cameras_respects_the_batch_limit_and_survives_a_daemon_restart(postgres, moto_endpoint, tmp_path, monkeypatch):
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from odins_ravne_assets.jobs import RUNNER_TAG
    from team_deployment_job import BATCH_RUN_TAGS

    assert BATCH_RUN_TAGS == {RUNNER_TAG: "batch"}  # the stand-in carries camera_job's tag
    prod = yaml.safe_load((ROOT / "infra" / "dagster.prod.yaml").read_text())
    limit = next(l["limit"] for l in prod["run_coordinator"]["config"]["tag_concurrency_limits"] if l["key"] == RUNNER_TAG)
    client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "infra" / "dagster.prod.yaml", home / "dagster.yaml")
    job_file = ROOT / "tests" / "team_deployment_job.py"
    (home / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [{"python_file": {"relative_path": str(job_file), "working_directory": str(ROOT / "tests"), "location_name": "team"}}]}))
    env = {**os.environ, **postgres, "DAGSTER_HOME": str(home), "ODINS_RAVNE_BUCKET": BUCKET, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    for key, value in {**postgres, "DAGSTER_HOME": str(home), "ODINS_RAVNE_BUCKET": BUCKET}.items():
        monkeypatch.setenv(key, value)
    instance = DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    instance.add_dynamic_partitions("cameras", CAMERAS)

    log = (tmp_path / "daemon.log").open("ab")
    daemon = _start_daemon(home, env, log)
    try:
        dagster = Path(sys.executable).parent / "dagster"
        subprocess.run(
            [str(dagster), "job", "backfill", "-w", str(home / "workspace.yaml"), "-j", "camera_job", "--partitions", ",".join(CAMERAS), "--noprompt"],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=180,
        )
        in_flight = RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED], tags={RUNNER_TAG: "batch"})
        done = RunsFilter(statuses=[DagsterRunStatus.SUCCESS])
        most, restarted_with_queued, deadline = 0, None, time.time() + 420
        while time.time() < deadline:
            most = max(most, instance.get_runs_count(in_flight))
            succeeded = instance.get_runs_count(done)
            if restarted_with_queued is None and succeeded >= 6:
                _stop(daemon)  # mid-backfill: runs in flight and runs still queued
                restarted_with_queued = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
                daemon = _start_daemon(home, env, log)
            if succeeded >= len(CAMERAS) or instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED])):
                break
            time.sleep(0.3)
    finally:
        _stop(daemon)
        log.close()
    daemon_log = (tmp_path / "daemon.log").read_text(errors="replace")[-3000:]
    records = instance.get_run_records()
    by_camera: dict[str, list[str]] = {}
    for record in records:
        by_camera.setdefault(record.dagster_run.tags["dagster/partition"], []).append(record.dagster_run.status.value)
    assert sorted(by_camera) == CAMERAS, daemon_log
    assert all(statuses == ["SUCCESS"] for statuses in by_camera.values()), (by_camera, daemon_log)
    assert restarted_with_queued and restarted_with_queued > 0  # the restart really was mid-backfill
    spans = [(r.start_time, r.end_time) for r in records]
    assert 1 < most <= limit and _max_overlap(spans) <= limit
