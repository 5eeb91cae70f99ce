"""The whole Definitions load, and every profile validates: a broken import or knob fails here."""

from __future__ import annotations

import pytest

from gpu_ops.settings import ProfileError, parse_profile
from resources.profiles import PROFILE_DIR, load_profile


def test_definitions_load_with_placeholder_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ODINS_RAVNE_INPUT", str(tmp_path / "in"))
    monkeypatch.setenv("ODINS_RAVNE_OUTPUT", str(tmp_path / "out"))
    from odins_ravne_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"raw_images", "detections", "crops", "species_labels", "condensed_reports", "gps_clusters", "reports", "stage3_database"}
    assert defs.resolve_job_def("camera_job").partitions_def.name == "cameras"
    assert defs.resolve_job_def("project_job")
    assert {s.name for s in defs.sensors} >= {"new_media_sensor", "project_after_camera_sensor"}


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
def test_every_shipped_profile_loads(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.pipeline.stage1.batch_size == 16
    assert profile.pipeline.stage1.image_size == (416 if name == "local" else 640)
    assert profile.pipeline.stage2.batch_size == 32 and profile.pipeline.stage2.image_size == 224
    assert profile.pipeline.stage1.max_images_per_job == 1000


def test_a_mistyped_key_names_the_key_and_the_likely_meaning():
    with pytest.raises(ProfileError, match=r"unknown key 'pipeline.stage1.batchsize'.*batch_size"):
        parse_profile({"pipeline": {"stage1": {"batchsize": 8}}})


def test_a_wrong_type_or_choice_is_an_error():
    with pytest.raises(ProfileError, match="'pipeline.stage1.batch_size' must be int"):
        parse_profile({"pipeline": {"stage1": {"batch_size": "sixteen"}}})
    with pytest.raises(ProfileError, match="'runner.type' is 'lambda'; use one of local, batch"):
        parse_profile({"runner": {"type": "lambda"}})
    with pytest.raises(ProfileError, match="unknown key 'pipeline.events.per_camera.cam-1.window'"):
        parse_profile({"pipeline": {"events": {"per_camera": {"cam-1": {"window": 3}}}}})


def test_an_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match="known profiles: cloud, cloud-cost-optimized, local"):
        load_profile("nope")
