"""Bad settings and bad roots fail when the profile loads, before any run, with one line that names
the key and what is allowed (issue 11, item 14).

Before, ``batch_size: -4``, ``decode_workers: 0``, a missing or garbage model file or
``compression_window: -5`` failed only after Stages 1 and 2 ran; ``confidence_threshold: 2.5``
(no detections), ``video_every_seconds: 0`` (a video became a blank event) and ``crops.max_side: 0``
(1x1 crops) were accepted and silently wrong; profile errors printed as tracebacks.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from gpu_ops.settings import ProfileError, parse_profile
from resources.profiles import load_profile

PREFIX = "<profile>: "


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("stage1", "batch_size", -4, "'pipeline.stage1.batch_size' is -4; allowed: >= 1"),
        ("stage1", "decode_workers", 0, "'pipeline.stage1.decode_workers' is 0; allowed: >= 1"),
        ("stage1", "confidence_threshold", 2.5, "'pipeline.stage1.confidence_threshold' is 2.5; allowed: from 0 to 1"),
        ("stage1", "iou_threshold", 0, "'pipeline.stage1.iou_threshold' is 0; allowed: > 0 and <= 1"),
        ("stage1", "video_every_seconds", 0, "'pipeline.stage1.video_every_seconds' is 0; allowed: > 0"),
        ("stage1", "video_max_frames", 0, "'pipeline.stage1.video_max_frames' is 0; allowed: >= 1"),
        ("stage1", "image_size", 500, "'pipeline.stage1.image_size' is 500; allowed: from 32 to 4096, a multiple of 32"),
        ("stage1", "max_images_per_job", 0, "'pipeline.stage1.max_images_per_job' is 0; allowed: >= 1"),
        ("crops", "max_side", 0, "'pipeline.crops.max_side' is 0; allowed: >= 32"),
        ("crops", "min_confidence", -0.1, "'pipeline.crops.min_confidence' is -0.1; allowed: from 0 to 1"),
        ("crops", "jpeg_quality", 101, "'pipeline.crops.jpeg_quality' is 101; allowed: from 1 to 100"),
        ("stage2", "batch_size", 0, "'pipeline.stage2.batch_size' is 0; allowed: >= 1"),
        ("events", "compression_window", -5, "'pipeline.events.compression_window' is -5; allowed: > 0"),
        ("events", "min_confidence", 1.5, "'pipeline.events.min_confidence' is 1.5; allowed: from 0 to 1"),
        ("clusters", "min_cluster_size", 1, "'pipeline.clusters.min_cluster_size' is 1; allowed: >= 2"),
        ("clusters", "max_site_radius_m", 0, "'pipeline.clusters.max_site_radius_m' is 0; allowed: > 0"),
    ],
)
def test_a_value_out_of_range_names_the_key_and_the_range(section, key, value, message):
    with pytest.raises(ProfileError) as caught:
        parse_profile({"pipeline": {section: {key: value}}})
    assert str(caught.value) == PREFIX + message


def test_not_a_number_is_out_of_every_range():
    with pytest.raises(ProfileError) as caught:
        parse_profile({"pipeline": {"stage1": {"confidence_threshold": float("nan")}}})
    assert str(caught.value) == PREFIX + "'pipeline.stage1.confidence_threshold' is nan; allowed: from 0 to 1"


def test_per_camera_overrides_and_cloud_settings_are_checked_too():
    with pytest.raises(ProfileError) as caught:
        parse_profile({"pipeline": {"events": {"per_camera": {"cam-1": {"compression_window": 0}}}}})
    assert str(caught.value) == PREFIX + "'pipeline.events.per_camera.cam-1.compression_window' is 0; allowed: > 0"
    with pytest.raises(ProfileError) as caught:
        parse_profile({"cloud": {"aws": {"compute": {"min_vcpus": 8, "max_vcpus": 4}}}})
    assert str(caught.value) == PREFIX + (
        "'cloud.aws.compute' has min_vcpus 8, desired_vcpus 0, max_vcpus 4; allowed: min_vcpus <= desired_vcpus <= max_vcpus"
    )
    with pytest.raises(ProfileError) as caught:
        parse_profile({"cost": {"spot_prices": {"g4dn.xlarge": -1}}})
    assert str(caught.value) == PREFIX + "'cost.spot_prices.g4dn.xlarge' is -1; allowed: a number >= 0 (USD per hour)"


def test_a_missing_or_garbage_model_file_fails_at_load(tmp_path):
    missing = tmp_path / "md_v5a.pt"
    with pytest.raises(ProfileError) as caught:
        parse_profile({"pipeline": {"stage1": {"model": f"megadetector:{missing}"}}})
    assert str(caught.value) == PREFIX + (
        f"'pipeline.stage1.model' names {missing}, which does not exist: fix the path or fetch the model (odins-ravne models fetch)"
    )
    garbage = tmp_path / "model.onnx"
    garbage.write_text("<html>404 Not Found</html>")
    with pytest.raises(ProfileError) as caught:
        parse_profile({"pipeline": {"stage1": {"model": str(garbage)}}})
    assert str(caught.value) == PREFIX + (
        f"'pipeline.stage1.model' names {garbage}, which is not a .onnx model (empty, truncated or another kind of file)"
    )
    empty = tmp_path / "classifier.pt"
    empty.write_bytes(b"")
    with pytest.raises(ProfileError, match=r"'pipeline.stage2.classifier' names .*classifier.pt, which is not a .pt model"):
        parse_profile({"pipeline": {"stage2": {"classifier": str(empty)}}})
    with pytest.raises(ProfileError) as caught:
        parse_profile({"pipeline": {"stage1": {"model": "/models/weights.bin"}}})
    assert str(caught.value) == PREFIX + (
        "'pipeline.stage1.model' is '/models/weights.bin'; use 'default', 'default-camtrap', 'default-camtrap-neck', a known model name (odins-ravne models list), "
        "'megadetector:<file>' or a .pt/.onnx/.engine file"
    )


def test_a_real_model_file_and_a_batch_image_path_are_accepted(tmp_path):
    checkpoint = tmp_path / "md.pt"
    with zipfile.ZipFile(checkpoint, "w") as archive:  # a torch.save file is a zip archive
        archive.writestr("md/data.pkl", b"\x80\x02}q\x00.")
    assert parse_profile({"pipeline": {"stage1": {"model": f"megadetector:{checkpoint}"}}}).pipeline.stage1.model.endswith("md.pt")
    # On Batch the path is inside the GPU image: only its form is checked here.
    profile = parse_profile({"runner": {"type": "batch"}, "pipeline": {"stage1": {"model": "megadetector:/models/md_v5a.0.0.pt"}}})
    assert profile.pipeline.stage1.model == "megadetector:/models/md_v5a.0.0.pt"


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "odins_ravne_assets.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_a_bad_profile_prints_one_line_and_no_traceback(tmp_path):
    profile = tmp_path / "mine.yaml"
    profile.write_text(yaml.safe_dump({"pipeline": {"events": {"compression_window": -5}}}))
    (tmp_path / "cards" / "cam-1").mkdir(parents=True)
    done = _cli("process", str(tmp_path / "cards"), "--out", str(tmp_path / "out"), "--profile", str(profile))
    assert done.returncode == 2
    assert done.stderr == f"error: {profile}: 'pipeline.events.compression_window' is -5; allowed: > 0\n"
    assert not (tmp_path / "out").exists()  # nothing ran


def test_a_file_instead_of_a_folder_is_one_line(tmp_path):
    photo = tmp_path / "some.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    done = _cli("process", str(photo), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr == (
        f"error: {photo} is a file: give the folder that holds the camera folders (or one camera's folder), "
        "e.g. odins-ravne process cards/ --out results/\n"
    )


def test_a_read_only_output_is_one_line(tmp_path):
    """A read-only file system, mounted for the test (tmpfs, ro): root ignores permission bits, so a
    chmod would not make one here. Skipped where mounting is not allowed."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        (tmp_path / "cards" / "cam-1").mkdir(parents=True)
        done = _cli("process", str(tmp_path / "cards"), "--out", str(mount / "results"))
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert done.returncode == 2
    assert done.stderr == (
        f"error: cannot write to the output {mount / 'results'}: Read-only file system: "
        "choose a writable folder with free space (--out)\n"
    )


def test_every_shipped_profile_passes_the_range_checks():
    for name in ("local", "cloud", "cloud-cost-optimized"):
        assert load_profile(name).name == name
