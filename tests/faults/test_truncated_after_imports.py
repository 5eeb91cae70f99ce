"""A truncated JPEG stays a failed file whatever was imported before it.

speciesnet and megadetector set ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` when imported; in a process
that had imported either (Stage 2 with SpeciesNet, the MegaDetector validator in these tests), a truncated
photo decoded as "ok" with a grey bottom half: found by the full suite, where the order of imports varies.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from gpu_ops.media import probe_media
from gpu_ops.engine import decode_for_detection


def _truncated(tmp_path):
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@pytest.mark.parametrize("module", ["speciesnet.utils", "megadetector.postprocessing.validate_batch_results"])
def test_a_truncated_jpeg_fails_after_a_library_relaxed_pillow(tmp_path, module):
    __import__(module)
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as the import leaves it, whatever order the suite ran in
    path = _truncated(tmp_path)
    row = probe_media(path, camera_id="cam-a", file_path="cut.jpg")
    assert row["status"] == "failed" and "truncated" in row["failure"]
    with pytest.raises(OSError, match="truncated"):
        decode_for_detection(path.read_bytes(), _Detector())


class _Detector:
    """The two things decode_for_detection asks of a detector (no model needed to decode)."""

    image_size = 416

    def decode_reduction(self, width, height):
        return 1

    def prepare(self, image):
        return np.asarray(image), None
