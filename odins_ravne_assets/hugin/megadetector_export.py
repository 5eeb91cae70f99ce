"""Export to MegaDetector batch output 1.6, the file Timelapse and AddaxAI open.

The format itself (categories, failure strings, rounding, reading back) is
:mod:`gpu_ops.megadetector_format`; this chooses what goes in: the whole run or one camera. The
format carries no coordinates, so sensitive species need no generalizing here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

from gpu_ops.megadetector_format import DEFAULT_THRESHOLDS, TOP_K, to_batch_output, write_batch_output


def export_megadetector(
    dest: str | Path | None,
    *,
    media: pa.Table,
    detections: pa.Table,
    species_labels: pa.Table | None = None,
    camera_id: str | None = None,
    info: Mapping[str, Any] | None = None,
    top_k: int = TOP_K,
    settings=None,
) -> dict[str, Any]:
    """MegaDetector batch output as a dict, also written to ``dest`` when given.

    With ``camera_id``, one camera's file with paths relative to its folder; without, the whole run
    with paths ``<camera_id>/<file_path>`` relative to the input root. ``info`` entries override the
    generated ones (use an imported file's ``info`` to reproduce it exactly). ``top_k``:
    classifications per detection, at most (the label and the classifier's next best). ``settings``
    (the profile): its events' and Stage 1's confidence thresholds go in ``detector_metadata`` where
    the detector is not a MegaDetector with published thresholds.
    """
    def of_camera(table: pa.Table | None) -> list[dict[str, Any]]:
        rows = table.to_pylist() if table is not None else []
        return rows if camera_id is None else [r for r in rows if r["camera_id"] == camera_id]

    thresholds = DEFAULT_THRESHOLDS if settings is None else (
        settings.pipeline.events.min_confidence, settings.pipeline.stage1.confidence_threshold)
    doc = to_batch_output(of_camera(media), of_camera(detections), of_camera(species_labels),
                          camera_id=camera_id, info=info, top_k=top_k, thresholds=thresholds)
    if dest is not None:
        write_batch_output(doc, dest)
    return doc
