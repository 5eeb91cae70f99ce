"""Stage 1's detection on the real frames of ``../shared/realdata``, per part of the committed split.

    python -m bench.evaluate --manifest ../shared/realdata/manifest.json [--part holdout] [--json out.json]

Every method runs on the same frames (decoded at ``DETECT_SIDE``, as Stage 1's draft decode does):

- ``detector``: the default YOLOv3-tiny COCO model alone, best class per box (today's default);
- ``+bursts``: with today's burst fusion (:mod:`gpu_ops.fusion`, default ``BurstConfig``) on the
  manifest's triggers of 3+ frames;
- ``+animal_sum``: animal-ness summed over all animal classes (:mod:`gpu_ops.animalness`);
- ``+animal_sum+bursts``: both.

Tried and not kept (README, "Other second looks"; :mod:`bench.realdata_second_look`): a zoom on weak
small candidates (a second detector run on a full-resolution crop), other input sizes, a mirrored
frame. The infrared second look that was kept (:mod:`gpu_ops.second_look`) is scored by
:mod:`bench.realdata_background`, as Stage 1 runs it.

Figures per part (``tune``, ``holdout``) and for infrared and daylight apart: ``image_recall``
(animal frames with an animal box at or above ``--min-confidence``, the events threshold),
``located_recall`` (those whose box lies on one of the frame's animals, IoU >= 0.3), box recall
and precision at IoU 0.3 (boxes by eye are approximate; all categories, matched greedily by score),
and the boxes on empty frames. Person frames count in the box figures only; frames labelled
``uncertain`` count nowhere (:mod:`bench.realdata`). Times are milliseconds per image on this machine,
each addition's own (the detector's runs on crops included), next to the detector's.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from bench.evaluate import Tally
from bench.realdata import Frame, read_manifest, read_split
from gpu_ops import media as media_io
from gpu_ops.boxes import iou
from gpu_ops.fusion import BurstConfig, fuse_burst

DETECT_SIDE = 1024
METHODS = ("detector", "+bursts")
SLICES = ("all", "infrared", "daylight")


class _Score:
    def __init__(self) -> None:
        self.box = Tally()
        self.animal_frames = 0
        self.animal_frames_found = 0
        self.animal_frames_located = 0  # with an animal box on one of the frame's animals (IoU >= 0.3)
        self.empty_frames = 0

    def add(self, frame: Frame, detections: list, min_confidence: float) -> None:
        if frame.kind == "uncertain":
            return
        counted = [d for d in detections if d.conf >= min_confidence]
        self.box.add([(d.conf, d.bbox) for d in counted], list(frame.boxes))
        if frame.kind == "animal":
            self.animal_frames += 1
            self.animal_frames_found += any(d.category == "animal" for d in counted)
            self.animal_frames_located += any(d.category == "animal" and any(iou(d.bbox, t) >= 0.3 for t in frame.boxes)
                                              for d in counted)
        if frame.kind == "empty":
            self.empty_frames += 1

    def summary(self) -> dict:
        r = self.box.summary()
        return {
            "animal_frames": self.animal_frames,
            "animal_frames_boxed": self.animal_frames_found, "animal_frames_located": self.animal_frames_located,
            "image_recall": self.animal_frames_found / self.animal_frames if self.animal_frames else None,
            "located_recall": self.animal_frames_located / self.animal_frames if self.animal_frames else None,
            "box_recall": r["iou0.3"]["recall"], "precision": r["iou0.3"]["precision"],
            "empty_frames": self.empty_frames, "boxes_on_empty": r["boxes_on_empty_images"],
        }


def run_methods(frames: list[Frame], root: Path, detector, *, bursts: BurstConfig,
                seconds: dict) -> dict[str, dict[str, list]]:
    """{method: {file: detections}} for one detector, the frames grouped by trigger."""
    by_trigger: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        by_trigger[f.trigger].append(f)
    out: dict[str, dict[str, list]] = {m: {} for m in METHODS}
    for members in by_trigger.values():
        images = [media_io.load_image(root / f.file, max_side=DETECT_SIDE) for f in members]
        started = time.perf_counter()
        detections = detector.detect(images)
        seconds["detector"] += time.perf_counter() - started

        started = time.perf_counter()
        fused = fuse_burst(images, detections, detector, config=bursts).detections
        seconds["bursts"] += time.perf_counter() - started
        for k, f in enumerate(members):
            out["detector"][f.file] = detections[k]
            out["+bursts"][f.file] = fused[k]
    return out


def evaluate_realdata(root: Path, detectors: dict, *, parts=("tune",), min_confidence: float = 0.3,
                      bursts: BurstConfig | None = None, split: dict[str, str] | None = None) -> dict:
    """The report for each named detector (``{"": best-class, "+animal_sum": ...}``) on the parts asked;
    ``split`` (trigger -> part) in place of the committed one (bench.realdata_finetune's folds)."""
    split = split if split is not None else read_split()
    frames = [f for f in read_manifest(root) if split.get(f.trigger) in parts]
    unsplit = [f.trigger for f in read_manifest(root) if f.trigger not in split]
    if unsplit:
        raise ValueError(f"{len(unsplit)} manifest triggers are in no part of bench/realdata_split.json "
                         "(the manifest changed): rerun python -m bench.realdata --write-split and commit it")
    bursts = bursts or BurstConfig()
    results, ms = {}, {}
    for suffix, detector in detectors.items():
        seconds = defaultdict(float)
        per_method = run_methods(frames, root, detector, bursts=bursts, seconds=seconds)
        ms[suffix or "best-class"] = {k: round(1000 * v / max(len(frames), 1), 1) for k, v in seconds.items()}
        for method, by_file in per_method.items():
            name = method if not suffix else ("detector" + suffix if method == "detector" else suffix + method)
            for part in parts:
                scores = {s: _Score() for s in SLICES}
                for f in frames:
                    if split[f.trigger] != part:
                        continue
                    for s in ("all", "infrared" if f.infrared else "daylight"):
                        scores[s].add(f, by_file[f.file], min_confidence)
                results.setdefault(part, {})[name] = {s: sc.summary() for s, sc in scores.items()}
    return {"frames": len(frames), "parts": list(parts), "min_confidence": min_confidence, "results": results,
            "ms_per_image": ms}


def format_realdata(report: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"{report['frames']} real frames, boxes counted at conf >= {report['min_confidence']}"]
    for part, methods in report["results"].items():
        lines.append(f"[{part}] {'method':<26}" + "".join(
            f" | {s}: img-recall located box-recall prec empty-boxes" for s in SLICES))
        for name, slices in methods.items():
            row = f"[{part}] {name:<26}"
            for s in SLICES:
                r = slices[s]
                row += (f" | {s}: {fmt(r['image_recall'])} ({r['animal_frames']}) {fmt(r['located_recall'])} {fmt(r['box_recall'])} "
                        f"{fmt(r['precision'])} {r['boxes_on_empty']}/{r['empty_frames']}")
            lines.append(row)
    for name, ms in report["ms_per_image"].items():
        lines.append(f"ms per image ({name}): " + ", ".join(f"{k} {v}" for k, v in ms.items()))
    return "\n".join(lines)
