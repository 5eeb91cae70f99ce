"""Builders for small contract tables (gpu_ops.schemas) used by the Hugin tests."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from gpu_ops import schemas

T0 = datetime(2024, 6, 1, 4, 0, 0)


def table(schema: pa.Schema, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows with only some columns given; the rest are null."""
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


class Shots:
    """A camera's media, detections and species labels, built shot by shot."""

    def __init__(self, camera_id: str = "cam-a"):
        self.camera_id = camera_id
        self.media: list[dict] = []
        self.detections: list[dict] = []
        self.labels: list[dict] = []

    def shot(self, minutes: float | None, *animals: tuple, file_path: str | None = None,
             status: str = "ok", lat: float | None = None, lon: float | None = None) -> str:
        """One image at T0 + minutes; each animal is (species, conf[, category[, score]])."""
        n = len(self.media)
        path = file_path or f"IMG_{n:04d}.JPG"
        # distinct per camera and shot, like real content hashes of distinct files
        sha = hashlib.sha256(f"{self.camera_id}/{n}".encode()).hexdigest()
        ts = None if minutes is None else T0 + timedelta(minutes=minutes)
        self.media.append({
            "camera_id": self.camera_id, "file_path": path, "media_type": "image", "sha256": sha,
            "timestamp": ts, "status": status, "latitude": lat, "longitude": lon,
            "gps_status": "ok" if lat is not None else "missing", "frame_count": 1,
        })
        for i, animal in enumerate(animals):
            species, conf = animal[0], animal[1]
            category = animal[2] if len(animal) > 2 else "animal"
            score = animal[3] if len(animal) > 3 else 0.9
            det_id = f"{sha[:16]}-0-{i}"
            self.detections.append({
                "camera_id": self.camera_id, "detection_id": det_id, "file_path": path, "sha256": sha,
                "frame_number": 0, "timestamp": ts, "category": category, "label": species, "conf": conf,
                # each animal of a shot stands apart from the others, as distinct animals do
                "bbox_x": 0.1 + 0.22 * (i % 4), "bbox_y": 0.1 + 0.3 * (i // 4 % 3), "bbox_w": 0.2, "bbox_h": 0.2,
                "source": "detector",
                "model": "test",
            })
            if species is not None and category == "animal":
                self.labels.append({
                    "camera_id": self.camera_id, "detection_id": det_id, "file_path": path,
                    "crop_path": f"crops/camera_id={self.camera_id}/{det_id}.jpg", "category": category,
                    "detector_label": species, "species": species,
                    "scientific_name": f"Sci {species}", "taxon_rank": "species",
                    "taxon_class": "Mammalia", "score": score, "classification_source": "test",
                })
        return path

    def tables(self) -> tuple[pa.Table, pa.Table, pa.Table]:
        return (table(schemas.MEDIA, self.media), table(schemas.DETECTIONS, self.detections),
                table(schemas.SPECIES_LABELS, self.labels))
