"""``odins-ravne review import|sample``: bring reviewed labels back, and draw a sample to review.

``--results`` is what ``process`` wrote (OUTPUT), for both commands: ``sample --out DIR`` is where
the sample goes. Importing writes only the ``reviews`` table (:mod:`hugin.review`); the exports
apply it at once, the events, sites and reports on the next ``odins-ravne process`` (a Dagster
materialization of the camera's events), which never overwrites it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from odins_ravne_assets.cli.console import error


def _results(results_root: str, profile: str | None):
    from gpu_ops import schemas
    from gpu_ops.storage import open_storage
    from resources.profiles import load_profile

    settings = load_profile(profile)
    output = open_storage(results_root, settings.storage)
    media = output.read_parquet("media", empty=schemas.MEDIA)
    if media.num_rows == 0:
        raise FileNotFoundError(f"no results under {results_root}: run `odins-ravne process INPUT --out {results_root}` first")
    return settings, output, media


def import_command(path: str, kind: str, results_root: str, *, camera_id: str | None = None,
                   species_field: str = "Species", count_field: str = "Count", profile: str | None = None) -> int:
    """Read reviewed labels from a Timelapse CSV, a Camtrap DP observations.csv or a MegaDetector file."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from gpu_ops import schemas
    from odins_ravne_assets.hugin import review
    from odins_ravne_assets.hugin.deployments import apply_clock_offsets

    try:
        settings, output, media = _results(results_root, profile)
        data = Path(path).read_bytes()
    except FileNotFoundError as err:
        return error(str(err))
    except OSError as err:
        return error(f"cannot read {path}: {err.strerror or err}")
    labels = output.read_parquet("species_labels", empty=schemas.SPECIES_LABELS)
    name = Path(path).name
    try:
        if kind == "timelapse":
            reviews, unknown = review.read_timelapse(data, media, labels, source_file=name, camera_id=camera_id,
                                                     species_field=species_field, count_field=count_field)
        elif kind == "camtrap-dp":
            deployments = output.read_parquet("deployments", empty=schemas.DEPLOYMENTS)
            # Event spans are on the corrected clock: compare detections on it too.
            detections = apply_clock_offsets(output.read_parquet("detections", empty=schemas.DETECTIONS), deployments,
                                             media=media).select(schemas.DETECTIONS.names)
            reviews, unknown = review.read_camtrap_observations(
                data, media, detections, labels, output.read_parquet("events", empty=schemas.EVENTS), source_file=name)
        else:
            reviews, unknown = review.read_megadetector_review(
                data, media, labels, source_file=name, camera_id=camera_id,
                min_confidence=settings.pipeline.events.min_confidence)
    except review.ReviewError as err:
        return error(str(err))
    for file in unknown[:5]:
        print(f"warning: {file} is not a media of these results: ignored", file=sys.stderr)
    if len(unknown) > 5:
        print(f"warning: {len(unknown) - 5} more unknown media ignored", file=sys.stderr)
    if not reviews:
        print(f"no reviewed labels in {path}: nothing imported")
        return 0
    cameras = {r["camera_id"] for r in reviews}
    merged = review.merge_reviews(output.read_parquet("reviews", empty=schemas.REVIEWS), reviews)
    # Only the cameras this file touched are rewritten; the others keep their files as they are.
    touched = merged.filter(pc.is_in(merged.column("camera_id"), value_set=pa.array(sorted(cameras))))
    written = review.write_reviews(output, touched)
    print(f"imported {len(reviews)} reviewed labels from {path} ({', '.join(f'{c}: {n} in all' for c, n in written.items())}); "
          f"run `odins-ravne process INPUT --out {results_root}` to apply them to events, sites and reports")
    return 0


def sample_command(results_root: str, dest: str, *, per_camera: int, seed: int = 0, input_root: str | None = None,
                   profile: str | None = None) -> int:
    """Write a seeded sample of each camera's positives and negatives for review."""
    from gpu_ops.storage import open_storage
    from odins_ravne_assets.hugin.review import SAMPLE_FILE, sample_for_review

    if per_camera < 1:
        return error(f"--per-camera is {per_camera}: give a number of media >= 1")
    try:
        settings, output, _ = _results(results_root, profile)
    except FileNotFoundError as err:
        return error(str(err))
    source = open_storage(input_root, settings.storage) if input_root else None
    drawn = sample_for_review(output, open_storage(dest, settings.storage), per_camera=per_camera, seed=seed,
                              min_confidence=settings.pipeline.events.min_confidence, media_source=source,
                              overrides=settings.pipeline.events.per_camera)
    total = sum(n["positives"] + n["negatives"] for n in drawn.values())
    print(f"wrote {Path(dest) / SAMPLE_FILE}: {total} media of {len(drawn)} cameras "
          f"({sum(n['positives'] for n in drawn.values())} positives, {sum(n['negatives'] for n in drawn.values())} negatives); "
          f"fill Species (and Count), then `odins-ravne review import {Path(dest) / SAMPLE_FILE} --format timelapse "
          f"--results {results_root}`")
    return 0
