"""A camera through Dagster with ``classifier: speciesnet``: its species reach events and exports.

Real Dagster instance, real Stage 1 (the default detector on a sample camera), Stage 2 in the
entrypoint subprocess through the speciesnet package, with a random classifier in a released-layout
model folder (tests/speciesnet_support.py) that scores every crop "lion" at 0.95. The camera's
deployments.csv row puts it in Norway, where the geofence allows no lions: SpeciesNet rolls the
label up to the cat family, and that is what events and exports must carry.
"""

from __future__ import annotations

import csv
import json
import shutil

import pyarrow.parquet as pq
import pytest
import yaml
from dagster_support import materialize_camera
from speciesnet_support import ANCESTORS, LABELS, VERSION, write_model_folder

from odins_ravne_assets.cli.results import export_command

CAMERA = "cam-north-01"
LION = {"lion": 0.95}


@pytest.mark.slow
def test_a_camera_materialized_with_speciesnet_carries_its_species_into_events_and_exports(sample_cards, tmp_path):
    source = tmp_path / "in"
    shutil.copytree(sample_cards[0] / CAMERA, source / CAMERA)
    (source / "deployments.csv").write_text(f"camera_id,country\n{CAMERA},NOR\n")
    model = write_model_folder(tmp_path / "speciesnet", {c: LION for c in ("red", "green", "blue", "black")})
    profile = tmp_path / "speciesnet.yaml"
    profile.write_text(yaml.safe_dump({"name": "speciesnet", "pipeline": {"stage2": {"classifier": str(model)}}}))
    out = tmp_path / "out"
    result = materialize_camera(CAMERA, source, out, profile=profile)

    labels = pq.read_table(out / "species_labels" / f"camera_id={CAMERA}").to_pylist()
    animals = [r for r in labels if r["category"] == "animal"]
    assert animals, "the sample camera's animals were not detected"
    assert {(r["species"], r["scientific_name"], r["taxon_rank"], r["classifier_label"], r["prediction_source"],
             r["rollup_level"], r["geofenced"], r["country"], r["classification_source"]) for r in animals} == {
        ("cat family", "Felidae", "family", ANCESTORS["felidae"], "classifier+geofence+rollup_to_family", "family", True,
         "NOR", f"speciesnet:{VERSION}")}
    assert {r["raw_label"] for r in animals} == {LABELS["lion"]}

    events = pq.read_table(out / "events" / f"camera_id={CAMERA}").to_pylist()
    assert {(e["species"], e["scientific_name"]) for e in events if e["category"] == "animal"} == {("cat family", "Felidae")}

    assert export_command("camtrap-dp", str(out), str(tmp_path / "dp"), profile=str(profile)) == 0
    with open(tmp_path / "dp" / "observations.csv", newline="") as handle:
        observed = {(r["scientificName"], r["classifiedBy"]) for r in csv.DictReader(handle) if r["classifiedBy"].startswith("speciesnet")}
    # Detections below the crop threshold have no crop and so no species; every classified one is SpeciesNet's.
    assert observed == {("Felidae", f"speciesnet:{VERSION}")}
    assert export_command("megadetector", str(out), str(tmp_path / "md.json"), profile=str(profile)) == 0
    doc = json.loads((tmp_path / "md.json").read_text())
    assert "cat family" in doc["classification_categories"].values()
