"""The MegaDetector export of a camera with a failed video and a real one passes MegaDetector's own
validator (issue 11, item 17); the video's frame rate is the one ingest measured, never a guess.

Everything is real: ffmpeg-written videos, ingest, Stage 1 with the default detector, the published
detections, and ``megadetector.postprocessing.validate_batch_results`` (a test-only dependency).
"""

from __future__ import annotations

import json

from megadetector.postprocessing.validate_batch_results import validate_batch_results

from fault_media import write_video
from gpu_ops.detector_loader import load_detector
from gpu_ops.megadetector_format import read_batch_output
from gpu_ops.stage1 import run_stage1
from gpu_ops.storage import Storage
from media_support import ASSETS, write_jpeg
from odins_ravne_assets.hugin.megadetector_export import export_megadetector
from odins_ravne_assets.munin.ingest import build_manifest
from odins_ravne_assets.munin.publish import detections_table
from resources.profiles import load_profile


def test_failed_and_real_videos_pass_megadetectors_validator(tmp_path):
    profile = load_profile("local")
    root, out = tmp_path / "cam-v", Storage(str(tmp_path / "out"))
    write_video(root / "CLIP.MP4", frames=25, fps=12)
    (root / "BROKEN.MP4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)  # the camera lost power
    write_jpeg(ASSETS / "bus.jpg", root / "IMG_0001.JPG", when="2026:06:01 05:30:00", scale=0.3)
    manifest, _ = build_manifest(Storage(str(root)), "cam-v", out)
    out.write_parquet("media/camera_id=cam-v/data.parquet", manifest)
    media = {r["file_path"]: r for r in manifest.to_pylist()}
    assert media["CLIP.MP4"]["frame_rate"] == 12.0 and media["IMG_0001.JPG"]["frame_rate"] is None
    assert media["BROKEN.MP4"]["status"] == "failed"
    run_stage1(camera_id="cam-v", input_storage=Storage(str(root)), output_storage=out, profile=profile,
               detector_factory=load_detector, log=lambda m: None)
    detections, _, _ = detections_table(out, "cam-v", profile)

    doc = export_megadetector(tmp_path / "cam-v.json", media=manifest, detections=detections, camera_id="cam-v")
    result = validate_batch_results(str(tmp_path / "cam-v.json"))["validation_results"]
    assert result["errors"] == [] and result["warnings"] == []
    by_file = {i["file"]: i for i in doc["images"]}
    assert by_file["BROKEN.MP4"] == {"file": "BROKEN.MP4", "failure": media["BROKEN.MP4"]["failure"], "detections": None,
                                     "frame_rate": -1.0, "frames_processed": []}
    assert by_file["CLIP.MP4"]["frame_rate"] == 12.0
    assert "frame_rate" not in by_file["IMG_0001.JPG"]

    # Read back and written again: the same file (the failed video's -1 stays "unknown").
    again = read_batch_output(tmp_path / "cam-v.json", camera_id="cam-v", media=manifest)
    assert {r["file_path"]: r["frame_rate"] for r in again.media.to_pylist()}["BROKEN.MP4"] is None
    redone = export_megadetector(None, media=again.media, detections=again.detections, camera_id="cam-v", info=again.info)
    assert json.dumps(redone, sort_keys=True) == json.dumps(doc, sort_keys=True)
