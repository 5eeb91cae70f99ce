"""The realdata manifest reader, the committed split and the real-frame evaluation.

Constructed manifests always run; the checks on ../shared/realdata skip where it is absent (CI
machines may not have it: it lives outside the repository on purpose)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench.realdata import REALDATA, read_manifest, read_split, make_split
from bench.realdata_eval import evaluate_realdata
from gpu_ops.detector import Detection

needs_realdata = pytest.mark.skipif(not (REALDATA / "manifest.json").is_file(),
                                    reason=f"no real camera-trap frames at {REALDATA} (outside the repository)")


def _entry(file, label, group=None, infrared=False, boxes=(), width=640):
    return {"file": file, "media_type": "image", "width": width, "height": width * 3 // 4, "infrared": infrared,
            "label": label, "group_id": group, "boxes_approx": [{"bbox_xywh_norm": list(b), "approx": True} for b in boxes]}


def test_manifest_kinds_thumbnails_and_videos(tmp_path):
    entries = [_entry("a/1.jpg", "animal: fox", boxes=[(0.1, 0.1, 0.2, 0.2)]), _entry("a/2.jpg", "empty"),
               _entry("a/3.jpg", "uncertain (looks empty)"), _entry("t/4.jpg", "animal: cat", width=100),
               {"file": "v/5.mp4", "media_type": "video", "label": "animal: chimp"}]
    (tmp_path / "manifest.json").write_text(json.dumps({"files": entries}))
    frames = read_manifest(tmp_path)
    assert [(f.file, f.kind, f.camera, f.trigger) for f in frames] == [
        ("a/1.jpg", "animal", "a", "a/1.jpg"), ("a/2.jpg", "empty", "a", "a/2.jpg"), ("a/3.jpg", "uncertain", "a", "a/3.jpg")]


def test_split_keeps_bursts_whole_and_is_deterministic(tmp_path):
    entries = [_entry(f"c/{g}_{k}.jpg", "animal: deer", group=f"g{g}") for g in range(10) for k in range(3)]
    entries += [_entry(f"c/e{g}.jpg", "empty", group=f"e{g}") for g in range(2)]
    (tmp_path / "manifest.json").write_text(json.dumps({"files": entries}))
    frames = read_manifest(tmp_path)
    split = make_split(frames)
    assert split == make_split(list(reversed(frames)))
    assert sorted(split["tune"] + split["holdout"]) == sorted({f.trigger for f in frames})
    assert len([g for g in split["holdout"] if g.startswith("g")]) == 4  # 40 % of the animal triggers
    assert len([g for g in split["holdout"] if g.startswith("e")]) == 1  # both parts get an empty trigger


class _BoxOnAnimal:
    """Puts a box where the bright square is: a stand-in model, so the metrics are exact."""

    def detect(self, images):
        out = []
        for image in images:
            ys, xs = np.nonzero(image[..., 0] > 200)
            h, w = image.shape[:2]
            out.append([] if not len(xs) else [Detection("animal", "dog", 0.9, (xs.min() / w, ys.min() / h,
                                                                               (np.ptp(xs) + 1) / w, (np.ptp(ys) + 1) / h))])
        return out


def test_evaluation_scores_infrared_and_daylight_apart(tmp_path, monkeypatch):
    entries = []
    for name, infrared, animal in (("ir.jpg", True, True), ("day.jpg", False, True), ("empty.jpg", False, False)):
        image = np.full((480, 640, 3), 60, np.uint8)
        if animal:
            image[120:240, 160:320] = 255
        Image.fromarray(image).save(tmp_path / name, quality=95)
        entries.append(_entry(name, "animal: fox" if animal else "empty", infrared=infrared,
                              boxes=[(0.25, 0.25, 0.25, 0.25)] if animal else ()))
    (tmp_path / "manifest.json").write_text(json.dumps({"files": entries}))
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"tune": ["ir.jpg", "empty.jpg"], "holdout": ["day.jpg"]}))
    monkeypatch.setattr("bench.realdata_eval.read_split", lambda: read_split(split_file))
    report = evaluate_realdata(tmp_path, {"": _BoxOnAnimal()}, parts=("tune", "holdout"))
    tune, holdout = report["results"]["tune"]["detector"], report["results"]["holdout"]["detector"]
    assert (tune["infrared"]["image_recall"], tune["infrared"]["box_recall"], tune["daylight"]["animal_frames"]) == (1.0, 1.0, 0)
    assert (tune["all"]["empty_frames"], tune["all"]["boxes_on_empty"]) == (1, 0)
    assert (holdout["daylight"]["image_recall"], holdout["all"]["precision"]) == (1.0, 1.0)


@needs_realdata
def test_committed_split_covers_the_manifest():
    split = read_split()
    triggers = {f.trigger for f in read_manifest()}
    assert triggers == set(split)
    assert make_split(read_manifest()) == {part: sorted(k for k, p in split.items() if p == part) for part in ("tune", "holdout")}


def test_a_box_beside_the_animal_boxes_the_frame_but_does_not_locate_the_animal():
    """Image recall alone hid this on the held-out part: boxes added on animal frames, none on the animal."""
    from bench.realdata import Frame
    from bench.realdata_eval import _Score

    fox = Frame("c/1.jpg", "c", "c/1.jpg", True, "animal", ((0.10, 0.10, 0.20, 0.20),), 640, 480)
    score = _Score()
    score.add(fox, [Detection("animal", "animal", 0.5, (0.60, 0.60, 0.20, 0.20))], 0.3)
    score.add(fox, [Detection("animal", "animal", 0.5, (0.12, 0.10, 0.20, 0.20))], 0.3)
    score.add(fox, [Detection("animal", "animal", 0.2, (0.10, 0.10, 0.20, 0.20))], 0.3)  # below the threshold
    summary = score.summary()
    assert (summary["animal_frames"], summary["image_recall"], summary["located_recall"]) == (3, 2 / 3, 1 / 3)


def test_the_cross_validation_folds_cut_the_tune_part_alone_and_keep_triggers_whole():
    from bench.realdata_finetune import folds

    split = {f"burst-{i}": ("tune" if i % 3 else "holdout") for i in range(60)}
    cut = folds(split)
    assert cut == folds(split)  # by the trigger's sha256: the same each run
    assert {t for t, p in cut.items() if p == "holdout"} == {t for t, p in split.items() if p == "holdout"}
    tune = [p for t, p in cut.items() if split[t] == "tune"]
    assert set(tune) == {"fold0", "fold1"} and 10 <= tune.count("fold0") <= 30


def test_composites_for_the_recipe_are_seeded_and_keep_the_real_frames():
    from bench.realdata_finetune import with_composites
    from gpu_ops.finetune import Sample

    frame = np.full((120, 160, 3), 90, np.uint8)
    cutout = np.zeros((40, 40, 4), np.uint8)
    cutout[5:35, 5:35] = (200, 150, 100, 255)
    samples = [Sample(frame, ((0.1, 0.1, 0.2, 0.2),), ("animal",)), Sample(frame)]
    made = with_composites(samples, 5, seed=0, cutouts=[cutout])
    again = with_composites(samples, 5, seed=0, cutouts=[cutout])
    assert made[:2] == samples and len(made) == 7
    assert all(np.array_equal(a.image, b.image) and a.boxes == b.boxes for a, b in zip(made, again))
    assert all(len(m.boxes) >= len(samples[i % 2].boxes) + 1 for i, m in enumerate(made[2:]))
    assert with_composites(samples, 0, seed=0, cutouts=[cutout]) == samples


def test_the_composites_contact_sheet_draws_each_box(tmp_path):
    from bench.realdata_finetune import contact_sheet
    from gpu_ops.finetune import Sample
    from odins_ravne_assets.munin.preview import CAPTION_HEIGHT, COLORS, GUTTER

    frame = np.full((300, 400, 3), 60, np.uint8)
    samples = [Sample(frame, ((0.25, 0.25, 0.5, 0.5),), ("animal",)), Sample(frame, ((0.1, 0.1, 0.2, 0.2),), ("person",))]
    with Image.open(contact_sheet(samples, tmp_path / "sheet.png", columns=2, width=200)) as sheet:
        pixels = np.asarray(sheet.convert("RGB")).astype(int)
    # The UI's layout: two 4:3 tiles filling 2 x 200 px and the gutter, 150 px high, a caption under them.
    assert pixels.shape == (150 + CAPTION_HEIGHT, 400 + GUTTER, 3)

    def drawn(color):
        return np.nonzero(np.abs(pixels - np.array(color)).sum(axis=2) < 30)

    rows, cols = drawn(COLORS["animal"])  # the animal's box (50..150 x 37..112 in tile 1) and its tag above it
    assert cols.min() >= 48 and cols.max() <= 152 and rows.min() >= 15 and rows.max() <= 114
    assert {112, 113} & set(rows[(cols > 60) & (cols < 140)])  # its bottom edge, across the box
    rows, cols = drawn(COLORS["person"])  # the person's (tile 2 starts at 204: 224..264 x 15..45)
    assert cols.min() >= 222 and cols.max() <= 320 and rows.max() <= 47


def test_the_audit_bench_scores_the_audit_against_the_labels_by_eye():
    """bench.realdata_audit without its detector: constructed frames, the boxed ones given."""
    import random

    from bench.realdata import Frame
    from bench.realdata_audit import audit, sample, true_recall

    frames = [Frame(file=f"c/{i}.jpg", camera="c", trigger=f"c/{i}.jpg", infrared=i % 2 == 0,
                    kind="animal" if i < 30 else "empty", boxes=(), width=640, height=480) for i in range(40)]
    boxed = {f.file for f in frames[:12]} | {"c/39.jpg"}  # 12 of 30 animals and one empty frame
    truth = true_recall(frames, boxed)
    assert truth == {"infrared": 6 / 15, "daylight": 6 / 15, "all": 12 / 30}
    full = audit(frames, boxed, frames)
    assert full["all"]["recall"] == pytest.approx(0.4) and full["all"]["recall_low"] == pytest.approx(0.4)
    drawn = sample(frames, boxed, 10, random.Random(0))
    assert sum(f.file in boxed for f in drawn) == 5 and len(set(drawn)) == 10
    row = audit(frames, boxed, drawn)["all"]
    assert row["reviewed_positives"] + row["reviewed_negatives"] == 10
