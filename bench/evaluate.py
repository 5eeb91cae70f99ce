"""Measure detector alone, motion alone and fused against ground-truth boxes.

    python -m bench.evaluate --truth observations.csv --images DIR [--min-confidence 0.3]
    python -m bench.evaluate --manifest ../shared/realdata/manifest.json [--part holdout]

The second form reads the realdata manifest (labels and approximate boxes by eye) and reports per
part of the committed split, infrared and daylight apart (:mod:`bench.realdata_eval`).

``observations.csv`` is in the Camtrap DP observations format: one row per observation with
``bboxX, bboxY, bboxWidth, bboxHeight`` (normalized, origin top-left, the MegaDetector convention) and
the media it belongs to in ``filePath`` (or ``fileName``, ``filename``, ``file_path``, else ``mediaID``),
relative to ``--images``. Rows without a box (blank observations) mark a media as annotated and empty.
Every image under ``--images`` is evaluated; an image that no row names counts as empty too, so
evaluate a folder that is fully annotated. The first folder level under ``--images`` is the camera.

Bursts are formed as the pipeline forms them (:mod:`gpu_ops.bursts`, EXIF time and maker counters).
Matching is class-agnostic (a box is right if it lies on a true box, whatever its label), greedy by
confidence, one prediction per true box, at IoU 0.3 and 0.5. Boxes count at or above
``--min-confidence`` for the detector and fused results (the threshold events use); motion alone has
no calibrated score, so all its proposals count. Times are per image on this machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from gpu_ops import media as media_io
from gpu_ops.bursts import assign_bursts, read_maker_sequence
from gpu_ops.boxes import iou
from gpu_ops.fusion import BurstConfig, fuse_burst

IOUS = (0.3, 0.5)
_PATH_COLUMNS = ("filePath", "fileName", "filename", "file_path", "mediaID")


@dataclass
class Tally:
    tp: dict[float, int] = field(default_factory=lambda: dict.fromkeys(IOUS, 0))
    fp: dict[float, int] = field(default_factory=lambda: dict.fromkeys(IOUS, 0))
    fn: dict[float, int] = field(default_factory=lambda: dict.fromkeys(IOUS, 0))
    boxes_on_empty: int = 0  # predictions on images without any true box

    def add(self, predictions: list[tuple[float, tuple]], truth: list[tuple]) -> None:
        if not truth:
            self.boxes_on_empty += len(predictions)
        for threshold in IOUS:
            matched: set[int] = set()
            for _, box in sorted(predictions, key=lambda p: -p[0]):
                best, best_iou = None, threshold
                for j, true_box in enumerate(truth):
                    overlap = iou(box, true_box)
                    if j not in matched and overlap >= best_iou:
                        best, best_iou = j, overlap
                if best is None:
                    self.fp[threshold] += 1
                else:
                    matched.add(best)
                    self.tp[threshold] += 1
            self.fn[threshold] += len(truth) - len(matched)

    def summary(self) -> dict:
        out = {"boxes_on_empty_images": self.boxes_on_empty}
        for t in IOUS:
            tp, fp, fn = self.tp[t], self.fp[t], self.fn[t]
            out[f"iou{t}"] = {
                "tp": tp, "fp": fp, "fn": fn,
                "recall": tp / (tp + fn) if tp + fn else None,
                "precision": tp / (tp + fp) if tp + fp else None,
            }
        return out


def read_truth(path: Path, images: Path) -> dict[str, list[tuple]]:
    """True boxes per image path (relative to ``images``, POSIX); blank rows give empty lists."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path} has no observation rows")
    column = next((c for c in _PATH_COLUMNS if c in rows[0]), None)
    if column is None:
        raise ValueError(f"{path} names no media: it needs one of the columns {', '.join(_PATH_COLUMNS)}")
    missing = {"bboxX", "bboxY", "bboxWidth", "bboxHeight"} - set(rows[0])
    if missing:
        raise ValueError(f"{path} lacks the Camtrap DP box columns {sorted(missing)}")
    by_name = defaultdict(list)
    for p in images.rglob("*"):
        if p.is_file():
            by_name[p.name].append(p.relative_to(images).as_posix())
    truth: dict[str, list[tuple]] = {}
    for row in rows:
        ref = row[column].strip().replace("\\", "/")
        if not (images / ref).is_file():
            # mediaIDs and bare file names: resolve by name when that is unambiguous.
            candidates = by_name.get(Path(ref).name, [])
            if len(candidates) != 1:
                raise ValueError(f"observation media '{ref}' is not a file under {images} (or its name is ambiguous)")
            ref = candidates[0]
        boxes = truth.setdefault(ref, [])
        values = [row[k].strip() for k in ("bboxX", "bboxY", "bboxWidth", "bboxHeight")]
        if all(values):
            boxes.append(tuple(float(v) for v in values))
    return truth


def _images(root: Path) -> list[tuple[str, str, Path]]:
    found = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and media_io.media_type_for(p) == "image":
            rel = p.relative_to(root)
            camera = rel.parts[0] if len(rel.parts) > 1 else "."
            found.append((camera, rel.as_posix(), p))
    return found


def _media_table(images: list[tuple[str, str, Path]]) -> pa.Table:
    rows = []
    for camera, rel, path in images:
        row = media_io.probe_media(path, camera_id=camera, file_path=rel)
        sequence = read_maker_sequence(path)
        row["maker_sequence"] = sequence.index if sequence else None
        row["maker_sequence_length"] = sequence.length if sequence else None
        row["maker_event"] = sequence.event if sequence else None
        rows.append(row)
    return pa.Table.from_pylist(rows)


def evaluate(truth_csv: Path, images_dir: Path, *, detector, config: BurstConfig, min_confidence: float,
             max_side: int | None = None, log=print) -> dict:
    truth = read_truth(truth_csv, images_dir)
    images = _images(images_dir)
    if not images:
        raise ValueError(f"no images under {images_dir}")
    media = _media_table(images)
    media = media.append_column("burst_id", assign_bursts(media, max_gap_s=config.max_gap_s, max_frames=config.max_frames)["burst_id"])
    paths = {rel: path for _, rel, path in images}
    bursts: dict[str, list[dict]] = defaultdict(list)
    for row in media.to_pylist():
        if row["status"] == "ok":
            bursts[row["burst_id"]].append(row)

    tallies = {"detector": Tally(), "motion": Tally(), "fused": Tally()}
    by_source = defaultdict(Tally)
    seconds = defaultdict(float)
    n_images = crops = 0
    for members in bursts.values():
        members.sort(key=lambda r: (r["timestamp"], r["file_path"]))
        frames = [media_io.load_image(paths[r["file_path"]], max_side=max_side) for r in members]
        started = time.perf_counter()
        detections = detector.detect(frames)
        seconds["detector"] += time.perf_counter() - started
        result = fuse_burst(frames, detections, detector, config=config)
        seconds["motion"] += result.motion_s
        seconds["verify"] += result.verify_s
        crops += result.verified_crops
        n_images += len(frames)
        for t, row in enumerate(members):
            true_boxes = truth.get(row["file_path"], [])
            tallies["detector"].add([(d.conf, d.bbox) for d in detections[t] if d.conf >= min_confidence], true_boxes)
            proposals = result.motion.proposals[t] if result.motion is not None else []
            tallies["motion"].add([(p.score, p.bbox) for p in proposals], true_boxes)
            fused = [d for d in result.detections[t] if d.conf >= min_confidence]
            tallies["fused"].add([(d.conf, d.bbox) for d in fused], true_boxes)
            for source in ("detector", "motion", "detector+motion"):
                # Each source matched on its own: its precision says how far its boxes can be trusted.
                by_source[source].add([(d.conf, d.bbox) for d in fused if d.source == source], true_boxes)
    report = {
        "images": n_images,
        "bursts": len(bursts),
        "bursts_with_motion": sum(1 for m in bursts.values() if config.applies_to(len(m))),
        "true_boxes": sum(len(v) for v in truth.values()),
        "min_confidence": min_confidence,
        "results": {name: tally.summary() for name, tally in tallies.items()},
        "fused_precision_by_source": {
            s: {"boxes": t.tp[0.3] + t.fp[0.3], "precision_iou0.3": t.summary()["iou0.3"]["precision"]}
            for s, t in by_source.items()
        },
        "ms_per_image": {k: 1000 * v / max(n_images, 1) for k, v in seconds.items()},
        "verify_crops": crops,
    }
    return report


def format_report(report: dict) -> str:
    lines = [
        f"{report['images']} images in {report['bursts']} bursts ({report['bursts_with_motion']} long enough for motion), "
        f"{report['true_boxes']} true boxes; boxes counted at conf >= {report['min_confidence']} (motion: all)",
        f"{'method':<10} {'IoU':>4} {'recall':>7} {'precision':>9} {'TP':>5} {'FP':>5} {'FN':>5} {'boxes on empty images':>22}",
    ]
    for name, result in report["results"].items():
        for t in IOUS:
            r = result[f"iou{t}"]
            fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(f"{name:<10} {t:>4} {fmt(r['recall']):>7} {fmt(r['precision']):>9} {r['tp']:>5} {r['fp']:>5} {r['fn']:>5} "
                         f"{result['boxes_on_empty_images']:>22}")
    sources = ", ".join(
        f"{k} {v['boxes']} boxes (precision {'-' if v['precision_iou0.3'] is None else format(v['precision_iou0.3'], '.3f')})"
        for k, v in sorted(report["fused_precision_by_source"].items()))
    lines.append(f"fused boxes by source, IoU 0.3: {sources}")
    ms = report["ms_per_image"]
    lines.append(f"time per image: detector {ms.get('detector', 0):.1f} ms, motion {ms.get('motion', 0):.1f} ms, "
                 f"crop verification {ms.get('verify', 0):.1f} ms ({report['verify_crops']} crops)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--truth", type=Path, help="Camtrap DP observations.csv with bbox columns")
    parser.add_argument("--images", type=Path, help="folder of the images (one sub-folder per camera)")
    parser.add_argument("--manifest", type=Path, help="a realdata manifest.json instead of --truth/--images")
    parser.add_argument("--part", choices=("tune", "holdout", "both"), default="tune",
                        help="which part of bench/realdata_split.json to report (--manifest); tune on 'tune' only")
    parser.add_argument("--model", default="default", help="detector model, as in the profile's stage1.model")
    parser.add_argument("--image-size", type=int, default=640, help="detector input size")
    parser.add_argument("--detector-threshold", type=float, default=0.1, help="detector output threshold (stage1.confidence_threshold)")
    parser.add_argument("--min-confidence", type=float, default=0.3, help="boxes below this do not count (events.min_confidence)")
    parser.add_argument("--max-side", type=int, default=None, help="decode images at most this large (draft mode)")
    parser.add_argument("--no-bursts", action="store_true", help="switch burst-aware detection off (fused = detector)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if args.manifest is None and (args.truth is None or args.images is None):
        parser.error("give --truth and --images, or --manifest")

    from gpu_ops.detector_loader import load_detector  # torch is heavy: only load it to run

    if args.manifest is not None:
        return _main_realdata(args, load_detector)
    try:
        detector = load_detector(args.model, image_size=args.image_size, conf_threshold=args.detector_threshold)
        config = BurstConfig(enabled=not args.no_bursts)
        report = evaluate(args.truth, args.images, detector=detector, config=config,
                          min_confidence=args.min_confidence, max_side=args.max_side)
    except (ValueError, FileNotFoundError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _main_realdata(args, load_detector) -> int:
    from bench.realdata_eval import evaluate_realdata, format_realdata
    parts = ("tune", "holdout") if args.part == "both" else (args.part,)
    try:
        detectors = {name: load_detector(args.model, image_size=args.image_size, conf_threshold=args.detector_threshold,
                                         animal_score=score) for name, score in (("", "best"), ("+animal_sum", "sum"))}
        report = evaluate_realdata(args.manifest.parent, detectors, parts=parts, min_confidence=args.min_confidence,
                                   bursts=BurstConfig(enabled=not args.no_bursts))
    except (ValueError, FileNotFoundError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    print(format_realdata(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
