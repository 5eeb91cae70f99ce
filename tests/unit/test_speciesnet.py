"""SpeciesNet at Stage 2: the speciesnet package's own classifier and ensemble on our crops.

The model folder is the released layout with a random classifier whose outputs each test sets
(tests/speciesnet_support.py): a crop of one colour scores a given distribution, so labels, sources
and rollups are exact. Stage 2 runs on real Parquet tables and real JPEG crops cut by the cropper.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest
from speciesnet_support import LABELS, VERSION, crop, write_model_folder

from gpu_ops import schemas
from gpu_ops.classifier_loader import load_classifier
from gpu_ops.classifier_speciesnet import check_geography, taxon_of
from gpu_ops.cropper import crop_detection, encode_jpeg
from gpu_ops.settings import parse_profile
from gpu_ops.stage2 import run_stage2, stage2_signature, stage2_state
from gpu_ops.storage import Storage
from gpu_ops.workstate import signature

OUTPUTS = {
    "red": {"lion": 0.9, "leopard": 0.05},  # a confident lion
    "green": {"lion": 0.5, "leopard": 0.3},  # unsure which Panthera: 0.8 at genus
    "blue": {"lion": 0.4, "wildcat": 0.35},  # unsure even of the genus: 0.75 at family
    "black": {"red fox": 0.95},
}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return write_model_folder(tmp_path_factory.mktemp("speciesnet") / "v4.0.1a", OUTPUTS)


@pytest.fixture(scope="module")
def speciesnet(model_folder):
    return load_classifier(str(model_folder), device="cpu")


def _label(classifier, colour, *, category="animal", conf=0.9, country=None, region=None):
    row = {"detection_id": "d0", "category": category, "conf": conf, "box": (0.0, 0.0, 1.0, 1.0),
           "country": country, "admin1_region": region}
    (label,) = classifier.label_rows([row], [crop(colour)])
    return label


def test_a_released_folder_loads_without_fetching_the_detector_it_names(model_folder, speciesnet):
    """info.json names MegaDetector by URL (a closed port here); the package would download it on load."""
    assert speciesnet.name == f"speciesnet:{VERSION}"
    assert sorted(p.name for p in model_folder.iterdir()) == [
        "always_crop_random.labels.txt", "always_crop_random.pt", "geofence_release.json", "info.json", "taxonomy_release.txt",
    ]


def test_a_confident_species_inside_its_range_is_kept(speciesnet):
    label = _label(speciesnet, "red", country="KEN")
    assert (label["species"], label["scientific_name"], label["taxon_rank"], label["taxon_class"]) == (
        "lion", "Panthera leo", "species", "Mammalia")
    assert (label["prediction_source"], label["rollup_level"], label["geofenced"]) == ("classifier", None, False)
    assert label["classifier_label"] == LABELS["lion"] and label["score"] == pytest.approx(0.9, abs=1e-5)
    assert label["classification_source"] == f"speciesnet:{VERSION}" and label["country"] == "KEN"


def test_a_species_outside_the_countrys_geofence_is_rolled_up_to_a_family_that_lives_there(speciesnet):
    label = _label(speciesnet, "red", country="NOR")
    assert (label["species"], label["scientific_name"], label["taxon_rank"]) == ("cat family", "Felidae", "family")
    assert (label["prediction_source"], label["rollup_level"], label["geofenced"]) == (
        "classifier+geofence+rollup_to_family", "family", True)
    # The family's score sums its members in the top five: lion, leopard and the wildcat's share.
    assert label["score"] == pytest.approx(0.9 + 0.05 + 0.05 / 7, abs=1e-5)
    assert (label["raw_label"], label["raw_score"]) == (LABELS["lion"], pytest.approx(0.9, abs=1e-5))


def test_geofence_off_keeps_the_species_anywhere(model_folder):
    label = _label(load_classifier(str(model_folder), device="cpu", geofence=False), "red", country="NOR")
    assert (label["species"], label["prediction_source"], label["geofenced"]) == ("lion", "classifier", False)


def test_an_admin1_region_block_applies_only_in_that_region(speciesnet):
    blocked = _label(speciesnet, "black", country="AUS", region="TA")
    elsewhere = _label(speciesnet, "black", country="AUS", region="NS")
    assert (blocked["species"], blocked["prediction_source"]) == ("dog family", "classifier+geofence+rollup_to_family")
    assert (elsewhere["species"], elsewhere["prediction_source"]) == ("red fox", "classifier")


def test_low_confidence_species_roll_up_to_genus_or_family(speciesnet):
    genus, family = _label(speciesnet, "green"), _label(speciesnet, "blue")
    assert (genus["species"], genus["scientific_name"], genus["taxon_rank"], genus["rollup_level"]) == (
        "panthera species", "Panthera", "genus", "genus")
    assert genus["prediction_source"] == "classifier+rollup_to_genus" and genus["score"] == pytest.approx(0.8, abs=1e-5)
    assert (family["species"], family["scientific_name"], family["rollup_level"]) == ("cat family", "Felidae", "family")
    assert family["prediction_source"] == "classifier+rollup_to_family" and family["score"] == pytest.approx(0.75, abs=1e-5)


def test_confident_people_and_vehicles_are_decided_by_the_stage1_detection(speciesnet):
    person = _label(speciesnet, "red", category="person", conf=0.9)
    vehicle = _label(speciesnet, "red", category="vehicle", conf=0.8)
    assert (person["species"], person["scientific_name"], person["prediction_source"]) == ("human", "Homo sapiens", "detector")
    assert person["score"] == pytest.approx(0.9)
    assert (vehicle["species"], vehicle["scientific_name"], vehicle["prediction_source"]) == ("vehicle", None, "detector")


def test_speciesnet_labels_become_taxa():
    assert taxon_of(LABELS["blank"]).species == "blank"
    assert taxon_of("1f689929-883d-4dae-958c-3d57ab5b6c16;;;;;;animal").scientific_name == "Animalia"
    assert taxon_of("f2efdae9-efb8-48fb-8a91-eccf79ab4ffb;no cv result;no cv result;no cv result;no cv result;"
                    "no cv result;no cv result").species == "unknown"


def test_a_full_image_release_or_an_incomplete_folder_is_refused_with_one_line(tmp_path):
    folder = write_model_folder(tmp_path / "b", OUTPUTS)
    (folder / "info.json").write_text((folder / "info.json").read_text().replace("always_crop\"", "full_image\""))
    with pytest.raises(ValueError, match="classifies whole frames: Stage 2 classifies crops, use an always_crop release"):
        load_classifier(str(folder), device="cpu")
    (folder / "geofence_release.json").unlink()
    with pytest.raises(FileNotFoundError, match="geofence in info.json\\) is missing: the model folder is incomplete"):
        load_classifier(str(folder), device="cpu", geofence=False)


def test_a_release_name_loads_from_the_model_cache(model_folder, tmp_path, monkeypatch):
    import shutil

    from gpu_ops.model_registry import KNOWN_MODELS, RELEASE_MARKER

    monkeypatch.setenv("ODINS_RAVNE_MODEL_DIR", str(tmp_path))
    target = KNOWN_MODELS["speciesnet-v4.0.1a"].target()
    shutil.copytree(model_folder, target)
    (target / RELEASE_MARKER).write_text('{"sha256": null}')
    assert load_classifier("speciesnet-v4.0.1a", device="cpu").name == f"speciesnet:{VERSION}"


def test_places_are_checked_as_the_geofence_reads_them():
    assert check_geography(" ken ", None, "x") == ("KEN", None)
    assert check_geography("usa", "ca", "x") == ("USA", "CA")
    with pytest.raises(ValueError, match="deployments.csv line 2: country 'NO' is not an ISO 3166-1 alpha-3 code"):
        check_geography("NO", None, "deployments.csv line 2")
    with pytest.raises(ValueError, match="admin1_region 'US-CA' is not a two-character region code"):
        check_geography("USA", "US-CA", "x")
    with pytest.raises(ValueError, match="admin1_region 'CA' needs a country as well"):
        check_geography(None, "CA", "x")


def test_deployments_csv_carries_country_and_region():
    from odins_ravne_assets.hugin.deployments import DeploymentsError, read_deployments_csv

    (row,) = read_deployments_csv(b"camera_id,country,admin1_region\ncam-a,usa,ca\n").to_pylist()
    assert (row["country"], row["admin1_region"]) == ("USA", "CA")
    with pytest.raises(DeploymentsError, match="deployments.csv line 2: country 'NORWAY' is not an ISO 3166-1 alpha-3"):
        read_deployments_csv(b"camera_id,country\ncam-a,Norway\n")


# -- Stage 2 on a camera's tables -------------------------------------------------------------------

CAMERA = "cam-a"


def _profile(model_folder, **stage2):
    return parse_profile({"pipeline": {"stage2": {"classifier": str(model_folder), **stage2}}})


def _camera(output: Storage, deployments: list[dict]):
    """Two photos, 200x100 black, each with two animals (a red and a green patch) and one person (blue),
    a year apart: the camera stood in Kenya, then in Norway."""
    media, detections, crops = [], [], []
    boxes = {"red": (0.1, 0.2, 0.2, 0.6), "green": (0.45, 0.2, 0.2, 0.6), "blue": (0.75, 0.1, 0.2, 0.8)}
    for name, when in (("a.jpg", datetime(2025, 6, 1, 12)), ("b.jpg", datetime(2026, 6, 1, 12))):
        image = crop("black", (100, 200)).copy()
        for colour, (x, y, w, h) in boxes.items():
            image[int(y * 100):int((y + h) * 100), int(x * 200):int((x + w) * 200)] = crop(colour, (1, 1))[0, 0]
        media.append({"camera_id": CAMERA, "file_path": name, "width": 200, "height": 100, "status": "ok"})
        for index, (colour, box) in enumerate(boxes.items()):
            det_id = f"{name[0] * 16}-0-{index}"
            category = "person" if colour == "blue" else "animal"
            detections.append({"camera_id": CAMERA, "detection_id": det_id, "file_path": name, "frame_number": 0,
                               "timestamp": when, "category": category, "label": category, "conf": 0.9,
                               "bbox_x": box[0], "bbox_y": box[1], "bbox_w": box[2], "bbox_h": box[3]})
            crop_path = f"crops/camera_id={CAMERA}/{det_id}.jpg"
            output.write_bytes(crop_path, encode_jpeg(crop_detection(image, box, pad_fraction=0.1), quality=95))
            crops.append({"camera_id": CAMERA, "detection_id": det_id, "file_path": name, "frame_number": 0,
                          "crop_path": crop_path, "category": category, "label": category, "conf": 0.9})
    for table, rows in (("media", media), ("detections", detections), ("crops", crops), ("deployments", deployments)):
        output.write_parquet(schemas.camera_key(table, CAMERA), pa.Table.from_pylist(rows, schema=schemas.TABLES[table]))


MOVED = [
    {"camera_id": CAMERA, "deployment_id": "kenya", "start": datetime(2025, 1, 1), "end": datetime(2025, 12, 31),
     "clock_offset_s": 0.0, "country": "KEN"},
    {"camera_id": CAMERA, "deployment_id": "norway", "start": datetime(2026, 1, 1), "end": datetime(2026, 12, 31),
     "clock_offset_s": 0.0, "country": "NOR"},
]


def test_stage2_classifies_every_crop_of_a_frame_with_the_place_of_its_deployment(tmp_path, model_folder):
    output = Storage(str(tmp_path / "out"))
    _camera(output, MOVED)
    profile = _profile(model_folder)
    stats = run_stage2(camera_id=CAMERA, output_storage=output, profile=profile,
                       classifier_factory=lambda: load_classifier(str(model_folder), device="cpu"), log=lambda _: None)
    assert (stats.media_total, stats.media_processed, stats.media_failed) == (6, 6, 0)
    rows = {r["detection_id"]: r for r in stage2_state(output, CAMERA, profile).results().to_pylist()}
    got = {k: (r["species"], r["prediction_source"], r["country"]) for k, r in rows.items()}
    assert got == {
        "aaaaaaaaaaaaaaaa-0-0": ("lion", "classifier", "KEN"),
        "aaaaaaaaaaaaaaaa-0-1": ("panthera species", "classifier+rollup_to_genus", "KEN"),
        "aaaaaaaaaaaaaaaa-0-2": ("human", "detector", "KEN"),
        "bbbbbbbbbbbbbbbb-0-0": ("cat family", "classifier+geofence+rollup_to_family", "NOR"),
        "bbbbbbbbbbbbbbbb-0-1": ("panthera species", "classifier+rollup_to_genus", "NOR"),
        "bbbbbbbbbbbbbbbb-0-2": ("human", "detector", "NOR"),
    }
    # The classifier saw the detection's own box, not the padded crop with its black border
    # (which would dilute red and move the score far from 0.9).
    assert rows["aaaaaaaaaaaaaaaa-0-0"]["raw_score"] == pytest.approx(0.9, abs=0.01)


def test_the_profile_country_is_the_default_and_places_are_part_of_the_signature(tmp_path, model_folder):
    output = Storage(str(tmp_path / "out"))
    _camera(output, [{"camera_id": CAMERA, "deployment_id": CAMERA, "clock_offset_s": 0.0}])
    profile = _profile(model_folder, country="NOR")
    run_stage2(camera_id=CAMERA, output_storage=output, profile=profile,
               classifier_factory=lambda: load_classifier(str(model_folder), device="cpu"), log=lambda _: None)
    rows = stage2_state(output, CAMERA, profile).results().to_pylist()
    assert {r["country"] for r in rows} == {"NOR"}
    assert {r["species"] for r in rows if r["detection_id"].endswith("-0")} == {"cat family"}
    # Moving the camera to Kenya is new work; a profile and camera without a place keep the old signature.
    assert stage2_state(output, CAMERA, _profile(model_folder, country="KEN")).done() == {}
    coco = parse_profile({})
    assert stage2_signature(coco) == signature({"classifier": "coco-taxonomy", "labels": None, "image_size": 224})
