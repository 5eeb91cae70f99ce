"""Runs that die, runs that are stopped, runs that overlap, and a disk that fills (issue 11, items 12
and 13, and the run faults of the corpus).

Everything is real: the ``odins-ravne process`` command in a subprocess, its Dagster instance, the
default model, the GPU stage subprocess, signals, a moto server for the S3 leases, and a full disk
(a 1 MiB tmpfs mounted for the test; skipped where mounting is not allowed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

from gpu_ops.storage import Storage
from media_support import ASSETS, write_jpeg
from odin_support import client, moto_endpoint  # noqa: F401 - the moto server fixture
from resources.lease import LEASE_PREFIX, camera_lease

ROOT = Path(__file__).resolve().parents[2]


def _cards(root: Path, cameras: dict[str, int]) -> Path:
    """Camera folders of distinct small photos an hour apart (no bursts: chunks of 64 media)."""
    for camera, count in cameras.items():
        for i in range(count):
            write_jpeg(ASSETS / "bus.jpg", root / camera / f"IMG_{i:04d}.JPG",
                       when=f"2024:05:{1 + i // 24:02d} {i % 24:02d}:00:00", scale=0.12 + 0.002 * i)
    return root


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def _start(home: Path, cards: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "odins_ravne_assets.cli", "process", str(cards), "--out", str(out), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _gpu_stage(cli: subprocess.Popen, timeout: float = 240) -> psutil.Process:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert cli.poll() is None, cli.communicate()
        for child in psutil.Process(cli.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a child that ended meanwhile
                if "gpu_ops.entrypoint" in " ".join(child.cmdline()):
                    return child
        time.sleep(0.2)
    raise AssertionError("the GPU stage never started")


def _done_markers(out: Path, camera: str) -> list[Path]:
    return sorted(out.glob(f"_work/detect/*/camera_id={camera}/done/*.parquet"))


def _wait_for(condition, timeout: float = 240, what: str = "") -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _said(home: Path, ending: str) -> bool:
    instance = DagsterInstance.from_config(str(home))
    return any(e.message and e.message.endswith(ending) for run in instance.get_runs() for e in instance.all_logs(run.run_id))


def _detections_runs(instance: DagsterInstance) -> list[dict]:
    records = instance.fetch_materializations(AssetKey("detections"), limit=10).records
    return [{k: v.value for k, v in r.asset_materialization.metadata.items()} | {"run_id": r.run_id} for r in records]


@pytest.mark.slow
def test_kill_9_mid_camera_fails_the_run_kills_the_detector_and_the_rerun_redoes_nothing(tmp_path):
    """Before: the run stayed STARTED for ever (filling the queue) and the detector ran on alone."""
    cards, out, home = _cards(tmp_path / "cards", {"cam-kill": 150}), tmp_path / "out", _home(tmp_path)
    cli = _start(home, cards, out)
    detector = _gpu_stage(cli)
    _wait_for(lambda: _done_markers(out, "cam-kill"), what="the first committed chunk")
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    gone, alive = psutil.wait_procs([detector], timeout=10)
    assert alive == [] and gone == [detector]  # PR_SET_PDEATHSIG took it down with the CLI

    instance = DagsterInstance.from_config(str(home))
    [orphan] = instance.get_runs()
    assert orphan.status == DagsterRunStatus.STARTED
    committed = {p.name: p.stat().st_mtime_ns for p in _done_markers(out, "cam-kill")}
    done_keys = sum(pq.read_table(p).num_rows for p in _done_markers(out, "cam-kill"))

    rerun = subprocess.run([sys.executable, "-m", "odins_ravne_assets.cli", "process", str(cards), "--out", str(out), "--quiet"],
                           env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"marked 1 run(s) failed whose process had died (killed or crashed): {orphan.run_id[:8]}\n" in rerun.stderr
    failed = instance.get_run_by_id(orphan.run_id)
    assert failed.status == DagsterRunStatus.FAILURE
    [failure] = instance.all_logs(orphan.run_id, of_type=DagsterEventType.RUN_FAILURE)
    assert f"the process that ran it (pid {cli.pid}) is gone" in failure.message
    # Nothing finished was redone: the committed chunks are untouched and skipped.
    assert {p.name: p.stat().st_mtime_ns for p in _done_markers(out, "cam-kill") if p.name in committed} == committed
    latest = _detections_runs(instance)[0]
    assert latest["stage1_media_skipped"] == done_keys and latest["stage1_media_processed"] == 150 - done_keys


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_whole_command(tmp_path, signum):
    """Before: Ctrl-C or SIGTERM stopped only the current camera, and the command went on with the next."""
    cards, out, home = _cards(tmp_path / "cards", {"cam-a": 70, "cam-b": 2}), tmp_path / "out", _home(tmp_path)
    cli = _start(home, cards, out)
    detector = _gpu_stage(cli)
    os.kill(cli.pid, signum)
    _, stderr = cli.communicate(timeout=120)
    assert cli.returncode == 128 + signum
    assert stderr.splitlines()[-1] == (
        f"stopped by {signal.Signals(signum).name} during camera cam-a (0 of 2 camera(s) finished); "
        "finished work is checkpointed: run the same command again to resume"
    )
    assert "Traceback" not in stderr
    assert not psutil.pid_exists(detector.pid) or detector.status() == psutil.STATUS_ZOMBIE
    assert not (out / "media" / "camera_id=cam-b").exists()  # the next camera never started
    [run] = DagsterInstance.from_config(str(home)).get_runs()
    assert run.tags["dagster/partition"] == "cam-a" and run.status == DagsterRunStatus.FAILURE


@pytest.mark.slow
def test_two_runs_of_one_camera_at_once_detect_each_image_once(tmp_path):
    """Before: both runs saw the same pending media and both detected every image (double cost)."""
    cards, out, home = _cards(tmp_path / "cards", {"cam-twice": 40}), tmp_path / "out", _home(tmp_path)
    first = _start(home, cards, out)
    gpu = _gpu_stage(first)
    # Hold the first run inside Stage 1 (its lease held) until the second has said it waits: 40 small
    # images may otherwise be done before the second run asks for the camera (a race, not the fault).
    gpu.suspend()
    try:
        second = _start(home, cards, out)
        _wait_for(lambda: _said(home, "; waiting for it to finish"), timeout=300, what="the second run to wait")
    finally:
        gpu.resume()
    assert first.wait(timeout=600) == 0 and second.wait(timeout=600) == 0, (first.stderr.read(), second.stderr.read())
    instance = DagsterInstance.from_config(str(home))
    runs = _detections_runs(instance)
    assert len(runs) == 2
    assert sorted(r.get("stage1_media_processed", 0) for r in runs) == [0, 40]
    waited = next(r["run_id"] for r in runs if "stage1_media_processed" not in r)
    holder = next(r["run_id"] for r in runs if "stage1_media_processed" in r)
    messages = [e.message for e in instance.all_logs(waited) if e.message]
    assert any(m.startswith(f"camera cam-twice is being processed by run {holder[:8]} (pid {first.pid} on ")
               and m.endswith("; waiting for it to finish") for m in messages)


def test_a_local_lease_waits_for_its_holder_and_is_freed_by_its_death(tmp_path):
    output = Storage(str(tmp_path / "out"))
    said, order = [], []

    def second() -> None:
        with camera_lease(output, "cam-1", holder="run B", log=said.append, poll_s=0.05):
            order.append("B")

    with camera_lease(output, "cam-1", holder="run A", poll_s=0.05):
        waiter = threading.Thread(target=second)
        waiter.start()
        _wait_for(lambda: said, timeout=10, what="the second run to wait")
        order.append("A")
    waiter.join(timeout=10)
    assert said == ["camera cam-1 is being processed by run A; waiting for it to finish"] and order == ["A", "B"]

    # A holder killed with SIGKILL: the kernel drops its lock, the next run takes the lease at once.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from gpu_ops.storage import Storage; from resources.lease import camera_lease\n"
        f"with camera_lease(Storage({str(tmp_path / 'out')!r}), 'cam-1', holder='run C'):\n"
        "    print('held', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    holder.kill()
    holder.wait()
    started = time.perf_counter()
    with camera_lease(output, "cam-1", holder="run D", log=said.append, poll_s=0.05):
        pass
    assert time.perf_counter() - started < 1.0 and len(said) == 1


def test_an_s3_lease_waits_expires_and_only_one_waiter_takes_over(moto_endpoint):  # noqa: F811
    client("s3").create_bucket(Bucket="leases", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    output = Storage("s3://leases/project")
    said: list[str] = []
    with camera_lease(output, "cam-1", holder="run A", ttl_s=2.0, poll_s=0.05):
        done = []
        waiter = threading.Thread(target=lambda: done.append(
            camera_lease(output, "cam-1", holder="run B", log=said.append, poll_s=0.05).__enter__()))
        waiter.start()
        _wait_for(lambda: said, timeout=10, what="the second run to wait")
        time.sleep(2.5)  # past the TTL: the heartbeat keeps the live holder's lease
        assert done == [] and said == ["camera cam-1 is being processed by run A; waiting for it to finish"]
    waiter.join(timeout=10)
    assert done == [None]  # released by A, taken by B

    # A dead holder's lease (expired, never renewed): of two waiters exactly one takes it over.
    key = f"project/{LEASE_PREFIX}/cam-2.json"
    client("s3").put_object(Bucket="leases", Key=key, Body=json.dumps({"holder": "run dead", "expires_at": time.time() - 1}))
    from resources.lease import _S3Lease

    racers = [_S3Lease(output, "cam-2", f"run {n}", ttl_s=60) for n in "XY"]
    barrier = threading.Barrier(2)
    won = []

    def race(lease) -> None:
        barrier.wait()
        won.append(lease.try_acquire())

    threads = [threading.Thread(target=race, args=(lease,)) for lease in racers]
    [t.start() for t in threads]
    [t.join(timeout=10) for t in threads]
    assert sorted(won) == [False, True]
    [winner] = [lease for lease in racers if lease.heartbeat is not None]
    assert json.loads(client("s3").get_object(Bucket="leases", Key=key)["Body"].read())["holder"] == winner.holder
    winner.release()


@pytest.mark.slow
def test_a_full_disk_stops_the_command_with_one_line(tmp_path):
    """A real full disk: the output on a 1 MiB tmpfs mounted for the test, too small for one camera's
    crops and tables. Skipped where mounting is not allowed (it needs root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        cards = tmp_path / "cards"
        for i in range(12):  # full-size photos: their crops alone are several MiB
            write_jpeg(ASSETS / ("bus.jpg" if i % 2 else "zidane.jpg"), cards / "cam-full" / f"IMG_{i:04d}.JPG",
                       when=f"2024:05:01 {i:02d}:00:00", scale=1.0 + 0.01 * i)
        (cards / "cam-next").mkdir()
        write_jpeg(ASSETS / "bus.jpg", cards / "cam-next" / "IMG_0000.JPG", when="2024:05:02 10:00:00")
        home = _home(tmp_path)
        done = subprocess.run([sys.executable, "-m", "odins_ravne_assets.cli", "process", str(cards), "--out", str(mount / "out"), "--quiet"],
                              env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=600)
        written_next = (mount / "out" / "media" / "camera_id=cam-next").exists()
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: the output {mount / 'out'} cannot be written (camera cam-full, ")
    assert "[Errno 28] No space left on device" in line
    assert line.endswith("): free space or choose another --out; finished work is checkpointed, run again to resume")
    assert not written_next  # the command stopped at the first camera
