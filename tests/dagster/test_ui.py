"""`make dev` as a user starts it: `dg dev` brings the Dagster UI up with every asset of the project and
the automation sensor running; `dg check defs` and `dg list defs` pass from the repository root."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dg_env(tmp_path: Path) -> dict[str, str]:
    """What `make dev` sets: a private instance, the input and output roots, the project's venv."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ODINS_RAVNE_INPUT": str(tmp_path / "in"),
        "ODINS_RAVNE_OUTPUT": str(tmp_path / "out"),
        "VIRTUAL_ENV": str(VENV),
    }


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=5).read()).get("data") or {}


def test_dagster_ui_serves_the_asset_graph(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV / "bin" / "dg"), "dev", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=dg_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        assets = None
        while time.time() < deadline:
            try:
                nodes = graphql(port, "{ assetNodes { assetKey { path } } }").get("assetNodes") or []
                if nodes:
                    assets = {"/".join(n["assetKey"]["path"]) for n in nodes}
                    break
            except OSError:
                pass
            time.sleep(1)
        assert assets is not None, "the Dagster UI did not answer within 120 s"
        assert {"raw_images", "detections", "crops", "species_labels", "deployments", "condensed_reports", "gps_clusters", "stage3_database"} <= assets
        sensors = graphql(port, '{ sensorsOrError(repositorySelector: {repositoryName: "__repository__", '
                                'repositoryLocationName: "odins_ravne"}) { ... on Sensors { results { name sensorState { status } } } } }')
        status = {s["name"]: s["sensorState"]["status"] for s in sensors["sensorsOrError"]["results"]}
        assert status["project_automation_sensor"] == "RUNNING"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # dg, its webserver, daemon and code server
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_dg_check_defs_and_list_defs_pass_from_the_repository_root(tmp_path):
    env = dg_env(tmp_path)
    check = subprocess.run([str(VENV / "bin" / "dg"), "check", "defs"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "All definitions loaded successfully" in check.stdout + check.stderr

    listed = subprocess.run([str(VENV / "bin" / "dg"), "list", "defs", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    defs = json.loads(listed.stdout)
    assert {"deployments", "condensed_reports", "gps_clusters", "reports", "stage3_database"} <= {a["asset_key"] for a in defs["assets"]}
    assert {s["name"] for s in defs["sensors"]} == {"new_media_sensor", "project_automation_sensor"}
    assert {j["name"] for j in defs["jobs"]} == {"camera_job", "project_job"}
