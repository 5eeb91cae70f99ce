"""`make dev` as a user starts it: the Dagster UI comes up and lists every asset of the project."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dagster_ui_serves_the_asset_graph(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "ODINS_RAVNE_INPUT": str(tmp_path / "in"), "ODINS_RAVNE_OUTPUT": str(tmp_path / "out")}
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        assets = None
        query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
        while time.time() < deadline:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query, headers={"Content-Type": "application/json"})
                body = json.loads(urllib.request.urlopen(request, timeout=5).read())
                nodes = body.get("data", {}).get("assetNodes") or []
                if nodes:
                    assets = {"/".join(n["assetKey"]["path"]) for n in nodes}
                    break
            except OSError:
                pass
            time.sleep(1)
        assert assets is not None, "the Dagster UI did not answer within 120 s"
        assert {"raw_images", "detections", "crops", "species_labels", "condensed_reports", "gps_clusters", "stage3_database"} <= assets
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
