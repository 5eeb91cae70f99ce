"""Repeat-detection elimination through Dagster, on a constructed camera whose right answer is known.

The camera's media are real JPEGs with EXIF times, probed by ``raw_images``: a rock in six single
photos over three days, and one burst of five frames a second apart of a heron standing still. Its
Stage 1 output is constructed (the rock's box jittered a little, as a detector's is; the heron's box
the same in every frame) and checkpointed as Stage 1 does, so the ``detections`` asset publishes it
without a GPU job; every asset from there on runs as in a user's run, Stage 2 in its subprocess,
Parquet, DuckDB. Whether a real detector sees a rock is Stage 1's business (``bench``); what the
platform does with a box that recurs is what is tested here.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize
from PIL import Image

from gpu_ops import schemas
from gpu_ops.stage1 import RESULT_SCHEMA, crop_key, stage1_signature
from gpu_ops.megadetector_format import detection_id
from gpu_ops.storage import Storage
from gpu_ops.workstate import WorkState
from media_support import write_jpeg
from odins_ravne_assets.cli.results import export_command
from odins_ravne_assets.hugin_assets import stage3_database
from odins_ravne_assets.jobs import CAMERA_ASSETS
from resources.pipeline import PipelineResource
from resources.profiles import load_profile
from resources.runner import GpuStageRunner
from resources.stage3 import query

pytestmark = pytest.mark.slow

CAMERA = "cam-r"
ROCK = (0.40, 0.60, 0.10, 0.08)
HERON = (0.15, 0.30, 0.12, 0.30)
ROCK_TIMES = [f"2024:05:0{1 + t // 2} {2 + 6 * (t % 2):02d}:00:00" for t in range(6)]  # 3 days, 2 triggers each
HERON_TIMES = [f"2024:05:01 05:00:0{k}" for k in range(5)]  # one burst


def _camera(root, tmp_path):
    rng = np.random.default_rng(7)
    names = {}
    for kind, times in (("rock", ROCK_TIMES), ("heron", HERON_TIMES)):
        for k, when in enumerate(times):
            src = tmp_path / "src" / f"{kind}{k}.png"
            src.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(src)
            names[f"{kind}{k}.jpg"] = kind
            write_jpeg(src, root / CAMERA / f"{kind}{k}.jpg", when=when)
    return names


def _stage1_output(out: Storage, names: dict) -> None:
    """Commit the constructed detections as Stage 1 would: results and crops, then the done marker."""
    media = out.read_parquet(schemas.camera_prefix("media", CAMERA)).to_pylist()
    crop = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 90, 90)).save(crop, "JPEG")
    rows = []
    for m in media:
        kind = names[m["file_path"]]
        t = int(m["file_path"][len(kind):-4])
        box = (ROCK[0] + 0.003 * t, ROCK[1], ROCK[2], ROCK[3]) if kind == "rock" else HERON
        det = detection_id(m["sha256"], 0, 0)
        out.write_bytes(crop_key(CAMERA, det), crop.getvalue())
        rows.append({"sha256": m["sha256"], "frame_number": 0, "frame_offset_s": 0.0, "index": 0, "category": "animal",
                     "label": "sheep" if kind == "rock" else "bird", "conf": 0.55 - 0.01 * t if kind == "rock" else 0.6,
                     "bbox_x": box[0], "bbox_y": box[1], "bbox_w": box[2], "bbox_h": box[3], "source": "detector",
                     "model": "constructed", "crop_path": crop_key(CAMERA, det), "crop_width": 32, "crop_height": 32})
    state = WorkState(out, "detect", stage1_signature(load_profile("local"))[0], CAMERA)
    state.commit([m["sha256"] for m in media], pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), {})


def _run(instance, source, out, assets=CAMERA_ASSETS, partition=CAMERA):
    result = materialize(
        assets, partition_key=partition, instance=instance,
        resources={"pipeline": PipelineResource(input_root=str(source), output_root=str(out)), "gpu_runner": GpuStageRunner()},
    )
    assert result.success
    return result


def _table(out, name):
    return pq.read_table(out / name / f"camera_id={CAMERA}" / "data.parquet").to_pylist()


def _labels_of(out, table):
    return sorted({r["label"] if "label" in r else r["detector_label"] for r in _table(out, table)})


def test_a_static_box_is_suppressed_everywhere_a_standing_animal_is_not_and_the_keep_file_restores_it(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    names = _camera(source, tmp_path)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cameras", [CAMERA])
    _run(instance, source, out, assets=CAMERA_ASSETS[:1])
    _stage1_output(Storage(str(out)), names)
    result = _run(instance, source, out)

    assert result.asset_materializations_for_node("detections")[0].metadata["detections"].value == 11
    meta = result.asset_materializations_for_node("repeat_detections")[0].metadata
    assert (meta["places"].value, meta["suppressed_places"].value, meta["suppressed_detections"].value,
            meta["kept_by_user"].value, meta["keep_file"].value) == (1, 1, 6, 0, "none")
    assert "preview" in meta
    [place] = _table(out, "repeat_detections")
    assert {k: place[k] for k in ("label", "detections", "triggers", "days", "suppressed", "reason", "example_file_path")} == {
        "label": "sheep", "detections": 6, "triggers": 6, "days": 3, "suppressed": True,
        "reason": "same box (IoU >= 0.7) in 6 triggers on 3 days", "example_file_path": "rock0.jpg"}
    # Stage 1's output stays whole; nothing downstream carries the rock; the heron's one burst is one event.
    assert _labels_of(out, "detections") == ["bird", "sheep"]
    assert _labels_of(out, "crops") == ["bird"] and _labels_of(out, "species_labels") == ["bird"]
    events = _table(out, "events")
    assert [(e["species"], e["n_media"]) for e in events if e["category"] == "animal"] == [("bird", 5)]
    assert sorted(e["representative_file_path"] for e in events if e["category"] == "blank") == [f"rock{t}.jpg" for t in range(6)]

    _run(instance, source, out, assets=[stage3_database], partition=None)
    store = Storage(str(out))
    _, rows = query(store, "SELECT count(*), bool_and(suppressed) FROM repeat_detections")
    assert rows == [(1, True)]
    _, rows = query(store, "SELECT species, count(*) FROM observations WHERE level = 'media' GROUP BY species")
    assert rows == [("bird", 5)]
    assert export_command("megadetector", str(out), str(tmp_path / "md.json")) == 0
    exported = json.loads((tmp_path / "md.json").read_text())
    assert sorted(im["file"] for im in exported["images"] if im.get("detections")) == [f"{CAMERA}/heron{k}.jpg" for k in range(5)]

    # The user keeps the place: a row of the table pasted into the keep file, as it is.
    keep = {k: place[k] for k in ("camera_id", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "label")}
    (source / "repeat_detections_keep.csv").write_text(",".join(keep) + "\n" + ",".join(str(v) for v in keep.values()) + "\n")
    result = _run(instance, source, out)
    meta = result.asset_materializations_for_node("repeat_detections")[0].metadata
    assert (meta["suppressed_places"].value, meta["kept_by_user"].value, meta["keep_file"].value) == (0, 1, "repeat_detections_keep.csv")
    [place] = _table(out, "repeat_detections")
    assert (place["suppressed"], place["reason"]) == (False, "same box (IoU >= 0.7) in 6 triggers on 3 days; kept by repeat_detections_keep.csv")
    assert _labels_of(out, "crops") == ["bird", "sheep"]
    events = _table(out, "events")
    assert sorted((e["category"], e["species"], e["n_media"]) for e in events) == [("animal", "bird", 5)] + [("animal", "domestic sheep", 1)] * 6
