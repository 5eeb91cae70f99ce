"""MegaDetector imports (issue 11, items 6 and 11): a file is validated whole before anything is committed,
a file listed twice or copied under another name counts once, and the file's classifications are kept.

Real media, a real manifest (build_manifest) and the real Stage 1 / Stage 2 checkpoints.
"""

from __future__ import annotations

import json
import shutil

import pytest

from gpu_ops.stage2 import stage2_state
from gpu_ops.storage import Storage
from media_support import ASSETS, write_jpeg
from odins_ravne_assets.munin.imports import import_megadetector
from odins_ravne_assets.munin.ingest import build_manifest
from odins_ravne_assets.munin.publish import stage1_state
from resources.profiles import load_profile

PROFILE = load_profile("local")


@pytest.fixture
def camera(tmp_path):
    root = tmp_path / "cam-i"
    write_jpeg(ASSETS / "bus.jpg", root / "a.jpg", when="2026:06:01 05:00:00", scale=0.3)
    write_jpeg(ASSETS / "zidane.jpg", root / "b.jpg", when="2026:06:01 06:00:00", scale=0.3)
    out = Storage(str(tmp_path / "out"))
    manifest, _ = build_manifest(Storage(str(root)), "cam-i", out)
    out.write_parquet("media/camera_id=cam-i/data.parquet", manifest)
    return root, out, {r["file_path"]: r["sha256"] for r in manifest.to_pylist()}


def _file(tmp_path, images, **extra):
    path = tmp_path / "md.json"
    path.write_text(json.dumps({"info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt"},
                                "detection_categories": {"1": "animal", "2": "person"}, "images": images, **extra}))
    return path


def _box(bbox, conf=0.9, **more):
    return {"category": "1", "conf": conf, "bbox": bbox, **more}


def _committed(out):
    return stage1_state(out, "cam-i", PROFILE).done(), stage1_state(out, "cam-i", PROFILE).results()


@pytest.mark.parametrize(
    "bbox, problem",
    [
        ([0.1, 0.2, 0.3], "bbox [0.1, 0.2, 0.3] has 3 numbers, expected [x, y, width, height]"),
        ([0.5, 0.5, 0.7, 0.2], "bbox [0.5, 0.5, 0.7, 0.2] is not inside the image (normalized [x, y, width, height], each in [0, 1])"),
        ([-0.2, 0.1, 0.3, 0.3], "bbox [-0.2, 0.1, 0.3, 0.3] is not inside the image (normalized [x, y, width, height], each in [0, 1])"),
        ([float("nan"), 0.1, 0.3, 0.3], "bbox [nan, 0.1, 0.3, 0.3] holds a value that is not a finite number"),
        ([0.1, 0.1, "0.3", 0.3], "bbox [0.1, 0.1, '0.3', 0.3] holds a value that is not a finite number"),
    ],
)
def test_a_bad_box_anywhere_commits_nothing_and_names_file_entry_and_problem(tmp_path, camera, bbox, problem):
    _, out, _ = camera
    path = _file(tmp_path, [{"file": "a.jpg", "detections": [_box([0.1, 0.1, 0.2, 0.2])]},
                            {"file": "b.jpg", "detections": [_box([0.1, 0.1, 0.2, 0.2]), _box(bbox)]}])
    with pytest.raises(ValueError) as raised:
        import_megadetector(out, "cam-i", path, PROFILE)
    assert str(raised.value) == f"MegaDetector JSON md.json: images[1] 'b.jpg' detection 1: {problem}; nothing was read: fix the file and try again"
    assert _committed(out) == ({}, None)


def test_every_problem_is_counted_and_a_bad_confidence_or_class_is_refused(tmp_path, camera):
    _, out, _ = camera
    path = _file(tmp_path, [{"file": "a.jpg", "detections": [_box([0.1, 0.1, 0.2, 0.2], conf=1.5)]},
                            {"file": "b.jpg", "detections": [_box([0.1, 0.1, 0.2, 0.2], classifications=[["9", 0.8]])]}],
                 classification_categories={"0": "elk"})
    with pytest.raises(ValueError, match=r"^MegaDetector JSON md.json: images\[0\] 'a.jpg' detection 0: conf 1.5 is not a number "
                                         r"in \[0, 1\] \(and 1 more problems\); nothing was read"):
        import_megadetector(out, "cam-i", path, PROFILE)
    assert _committed(out) == ({}, None)


def test_rounding_overshoot_is_clipped_into_the_image(tmp_path, camera):
    _, out, shas = camera
    import_megadetector(out, "cam-i", _file(tmp_path, [{"file": "a.jpg", "detections": [_box([0.6, 0.5, 0.4004, 0.5])]}]), PROFILE)
    row = _committed(out)[1].to_pylist()[0]
    assert row["bbox_x"] + row["bbox_w"] == pytest.approx(1.0)


def test_a_file_listed_twice_is_refused(tmp_path, camera):
    _, out, _ = camera
    entry = {"file": "a.jpg", "detections": [_box([0.1, 0.1, 0.2, 0.2])]}
    with pytest.raises(ValueError) as raised:
        import_megadetector(out, "cam-i", _file(tmp_path, [entry, {"file": "b.jpg", "detections": []}, entry]), PROFILE)
    assert str(raised.value) == ("MegaDetector JSON md.json: images[2] 'a.jpg' is listed twice (also images[0]): keep one entry "
                                 "per file; nothing was read: fix the file and try again")
    assert _committed(out) == ({}, None)


def test_a_copied_photo_counts_once(tmp_path, camera):
    """Two names, one content: Stage 1 detects it once; an import takes the first name's detections."""
    root, out, _ = camera
    shutil.copy(root / "a.jpg", root / "c.jpg")
    manifest, _ = build_manifest(Storage(str(root)), "cam-i", out)
    out.write_parquet("media/camera_id=cam-i/data.parquet", manifest)
    path = _file(tmp_path, [{"file": "a.jpg", "detections": [_box([0.1, 0.1, 0.2, 0.2])]},
                            {"file": "c.jpg", "detections": [_box([0.1, 0.1, 0.2, 0.2]), _box([0.5, 0.5, 0.2, 0.2])]}])
    done = import_megadetector(out, "cam-i", path, PROFILE)
    assert (done["media"], done["detections"]) == (1, 1)
    assert _committed(out)[1].num_rows == 1


def test_the_files_classifications_become_the_crops_species_labels(tmp_path, camera):
    _, out, shas = camera
    path = _file(tmp_path, [
        {"file": "a.jpg", "detections": [_box([0.1, 0.1, 0.2, 0.2], classifications=[["0", 0.3], ["1", 0.85]]),
                                         _box([0.5, 0.5, 0.2, 0.2], conf=0.95)]},
        {"file": "b.jpg", "detections": [_box([0.3, 0.3, 0.2, 0.2], conf=0.01, classifications=[["0", 0.9]])]},
    ], classification_categories={"0": "red deer", "1": "elk"}, classification_category_descriptions={"1": "Alces alces"})
    done = import_megadetector(out, "cam-i", path, PROFILE)
    assert (done["detections"], done["labels"]) == (3, 1)  # b.jpg's box is under the crop threshold: no crop, no label
    labels = stage2_state(out, "cam-i", PROFILE).results().to_pylist()
    assert [(r["detection_id"], r["species"], r["scientific_name"], r["score"], r["classification_source"]) for r in labels] == [
        (f"{shas['a.jpg'][:16]}-0-0", "elk", "Alces alces", pytest.approx(0.85), "megadetector-json")]
    # Stage 2 still has the unclassified crop to do, and only that one.
    assert set(stage2_state(out, "cam-i", PROFILE).done()) == {f"{shas['a.jpg'][:16]}-0-0"}
