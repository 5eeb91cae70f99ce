"""Taxonomy-aware smoothing and rollup in events, on bursts whose right answer is known by construction."""

import pytest
from hugin_tables import Shots

from gpu_ops.settings import ProfileError, parse_profile
from odins_ravne_assets.hugin.events import condense_events
from odins_ravne_assets.hugin.taxonomy import lineage_of, speciesnet_lineage

# SpeciesNet labels as its classifier writes them: uuid;class;order;family;genus;species;common name
RED_DEER = "u1;mammalia;artiodactyla;cervidae;cervus;elaphus;red deer"
SIKA_DEER = "u2;mammalia;artiodactyla;cervidae;cervus;nippon;sika deer"
ROE_DEER = "u3;mammalia;artiodactyla;cervidae;capreolus;capreolus;western roe deer"
DEER_FAMILY = "u4;mammalia;artiodactyla;cervidae;;;deer family"
RED_FOX = "u5;mammalia;carnivora;canidae;vulpes;vulpes;red fox"
BADGER = "u6;mammalia;carnivora;mustelidae;meles;meles;european badger"


def burst(*frames: tuple[str, float]) -> Shots:
    """One animal per frame, a minute apart, labelled by SpeciesNet with the given label and score."""
    s = Shots()
    for minute, (label, score) in enumerate(frames):
        common = label.rsplit(";", 1)[1]
        s.shot(minute, (common, 0.9, "animal", score))
        lineage = speciesnet_lineage(label)
        s.labels[-1].update(classifier_label=label, scientific_name=lineage[0][1] if lineage else None)
    return s


def events(shots: Shots, **kwargs) -> list[dict]:
    media, detections, labels = shots.tables()
    return [e for e in condense_events(labels, detections, window_minutes=10, min_confidence=0.3, **kwargs).to_pylist()]


def test_lineages_come_from_the_classifier_in_use():
    assert speciesnet_lineage(RED_DEER) == (
        ("species", "Cervus elaphus"), ("genus", "Cervus"), ("family", "Cervidae"), ("order", "Artiodactyla"),
        ("class", "Mammalia"), ("kingdom", "Animalia"))
    assert speciesnet_lineage(DEER_FAMILY)[0] == ("family", "Cervidae")
    assert speciesnet_lineage("u;;;;;;blank") == ()
    # The default classifier's taxonomy (gpu_ops.classifier.HIGHER_TAXA).
    assert lineage_of({"species": "domestic dog", "scientific_name": "Canis familiaris", "taxon_rank": "species"}) == (
        ("species", "Canis familiaris"), ("genus", "Canis"), ("family", "Canidae"), ("order", "Carnivora"),
        ("class", "Mammalia"), ("kingdom", "Animalia"))
    assert lineage_of({"species": "bird", "scientific_name": "Aves", "taxon_rank": "class"}) == (
        ("class", "Aves"), ("kingdom", "Animalia"))
    # Another classifier's label knows its class, and its genus from a binomial.
    assert lineage_of({"scientific_name": "Alces alces", "taxon_rank": "species", "taxon_class": "Mammalia"}) == (
        ("species", "Alces alces"), ("genus", "Alces"), ("class", "Mammalia"), ("kingdom", "Animalia"))


def test_two_deer_species_at_low_confidence_roll_up_to_the_family():
    # 0.45 red deer, 0.40 roe deer: neither species is sure, the deer family is (0.85).
    s = burst((RED_DEER, 0.45), (ROE_DEER, 0.40), (RED_DEER, 0.45), (ROE_DEER, 0.40))
    (event,) = events(s, rollup_below=0.6)
    assert (event["species"], event["scientific_name"], event["rollup_level"]) == ("Cervidae", "Cervidae", "family")
    assert event["n_media"] == 4 and event["max_count"] == 1
    # Without rollup they are two species, as the model said.
    assert sorted(e["species"] for e in events(s)) == ["red deer", "western roe deer"]


def test_two_species_of_one_genus_roll_up_to_the_genus():
    s = burst((RED_DEER, 0.40), (SIKA_DEER, 0.35), (RED_DEER, 0.40), (SIKA_DEER, 0.35))
    (event,) = events(s, rollup_below=0.6)
    assert (event["species"], event["rollup_level"]) == ("Cervus", "genus")


def test_the_rolled_up_taxon_takes_the_classifiers_common_name():
    # A label SpeciesNet itself rolled up names the family elsewhere on the camera.
    s = burst((RED_DEER, 0.45), (ROE_DEER, 0.40))
    s.shot(300, ("deer family", 0.9, "animal", 0.9))
    s.labels[-1].update(classifier_label=DEER_FAMILY, scientific_name="Cervidae", rollup_level="family")
    rolled, family = events(s, rollup_below=0.6)
    assert (rolled["species"], rolled["scientific_name"], rolled["rollup_level"]) == ("deer family", "Cervidae", "family")
    assert (family["species"], family["rollup_level"]) == ("deer family", "family")  # SpeciesNet's own rollup, recorded


def test_a_confident_species_stays():
    s = burst((RED_DEER, 0.92), (RED_DEER, 0.88), (RED_DEER, 0.95))
    (event,) = events(s, rollup_below=0.6)
    assert (event["species"], event["scientific_name"], event["rollup_level"]) == ("red deer", "Cervus elaphus", None)


def test_a_confident_species_beside_an_unsure_relative_keeps_its_name():
    # Two animals in each frame: a sure fox and an unsure roe deer; only the deer is rolled up, and
    # only as far as the evidence for it goes (nothing but itself, 0.3: to the kingdom).
    s = Shots()
    for minute in range(3):
        s.shot(minute, ("red fox", 0.9, "animal", 0.95), ("western roe deer", 0.9, "animal", 0.3))
        s.labels[-2].update(classifier_label=RED_FOX, scientific_name="Vulpes vulpes")
        s.labels[-1].update(classifier_label=ROE_DEER, scientific_name="Capreolus capreolus")
    found = {(e["species"], e["rollup_level"]) for e in events(s, rollup_below=0.6, label_smoothing=None)}
    assert found == {("red fox", None), ("animal", "kingdom")}


def test_a_less_precise_label_in_a_burst_is_the_precise_one():
    # SpeciesNet said "deer family" for one frame of a red deer: the same animal named less precisely.
    s = burst((RED_DEER, 0.9), (DEER_FAMILY, 0.8), (RED_DEER, 0.9), (DEER_FAMILY, 0.8))
    (event,) = events(s)
    assert (event["species"], event["n_media"]) == ("red deer", 4)
    # The plain vote keeps them apart (neither has a small share); off does nothing at all.
    assert sorted(e["species"] for e in events(s, smoothing="vote")) == ["deer family", "red deer"]
    assert sorted(e["species"] for e in events(s, smoothing="off")) == ["deer family", "red deer"]


def test_an_ancestor_of_two_species_stays_itself():
    # The deer family has one descendant here (the roe deer): it is that deer.
    s = burst((RED_FOX, 0.9), (DEER_FAMILY, 0.8), (ROE_DEER, 0.9), (BADGER, 0.9))
    assert sorted(e["species"] for e in events(s)) == ["european badger", "red fox", "western roe deer"]
    # Beside a red deer and a roe deer, it could be either: it stays the deer family.
    s = burst((RED_DEER, 0.9), (DEER_FAMILY, 0.8), (ROE_DEER, 0.9))
    assert sorted(e["species"] for e in events(s)) == ["deer family", "red deer", "western roe deer"]


def test_smoothing_within_one_frame():
    # Five animals in one frame, one of them mislabelled: the frame's vote fixes it even where the
    # sequence holds other species enough to have no majority.
    s = Shots()
    s.shot(0, *[("red deer", 0.9)] * 4, ("sika deer", 0.5))
    s.shot(1, ("red fox", 0.9), ("red fox", 0.9), ("red fox", 0.9))
    s.shot(2, ("european badger", 0.9), ("european badger", 0.9), ("european badger", 0.9))
    found = {e["species"]: e["max_count"] for e in events(s)}
    assert found == {"red deer": 5, "red fox": 3, "european badger": 3}
    assert "sika deer" in {e["species"] for e in events(s, smoothing="vote")}


def test_rollup_with_the_default_classifiers_taxonomy():
    # coco-taxonomy: score is the detector's; an unsure cat beside an unsure dog is a carnivore.
    s = Shots()
    s.shot(0, ("domestic cat", 0.9, "animal", 0.35))
    s.shot(1, ("domestic dog", 0.9, "animal", 0.3))
    for label, sci in zip(s.labels, ("Felis catus", "Canis familiaris")):
        label.update(scientific_name=sci)
    (event,) = events(s, rollup_below=0.6)
    assert (event["species"], event["rollup_level"]) == ("Carnivora", "order")


def test_the_profile_switches_both():
    events_settings = parse_profile({"pipeline": {"events": {"smoothing": "vote", "rollup_below": 0.6}}}).pipeline.events
    assert (events_settings.smoothing, events_settings.rollup_below) == ("vote", 0.6)
    defaults = parse_profile({}).pipeline.events
    assert (defaults.smoothing, defaults.rollup_below) == ("taxonomy", None)
    with pytest.raises(ProfileError, match="'pipeline.events.smoothing' is 'bayes'; use one of taxonomy, vote, off"):
        parse_profile({"pipeline": {"events": {"smoothing": "bayes"}}})
    with pytest.raises(ProfileError, match=r"'pipeline.events.rollup_below' is 0; allowed: > 0 and <= 1"):
        parse_profile({"pipeline": {"events": {"rollup_below": 0}}})
    with pytest.raises(ValueError, match="smoothing is 'bayes'"):
        events(Shots(), smoothing="bayes")
