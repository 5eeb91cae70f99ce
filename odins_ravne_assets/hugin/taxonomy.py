"""The taxonomy of the classifier in use: each label's lineage, for smoothing and rollup in events.

A lineage is the label's taxon and its ancestors, most specific first, as ``(rank, scientific
name)`` pairs ending at the kingdom: red deer is ``species Cervus elaphus, genus Cervus, family
Cervidae, order Artiodactyla, class Mammalia, kingdom Animalia``.

Where the lineage comes from (decided, in this order):

- a SpeciesNet label (``classifier_label`` in ``species_labels``,
  ``uuid;class;order;family;genus;species;common name``): the lineage the label spells out, so a
  label SpeciesNet already rolled up (``;mammalia;artiodactyla;cervidae;;;deer family``) starts at
  its family;
- any other label: the lineage ``gpu_ops.classifier.lineage`` gives its taxon (the default
  ``coco-taxonomy`` classifier's orders and families, ``HIGHER_TAXA``; for another classifier's
  label its class, and its genus when it names a species by a binomial).

A label with no scientific name (``vehicle``, SpeciesNet's ``blank``) has no lineage: it is never
an ancestor of anything and never rolls up.

Common names of the higher taxa a rollup may name are those the classifier itself gave that taxon
in the labels at hand (SpeciesNet's ``deer family``), else the default classifier's, else none:
the event then says the scientific name (``Cervidae``).

:func:`smooth_and_roll_up` is the events' label smoothing and rollup over these lineages (the
rules are step 3 of :mod:`odins_ravne_assets.hugin.events`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any, Iterable, Mapping

import numpy as np

from gpu_ops.classifier import COCO_TAXONOMY, Taxon, lineage

Lineage = tuple[tuple[str, str], ...]
KINGDOM = ("kingdom", "Animalia")
_SPECIESNET_RANKS = ("class", "order", "family", "genus")

_COCO_COMMON = {t.scientific_name: t.species for t in COCO_TAXONOMY.values() if t.scientific_name}


def speciesnet_lineage(label: str) -> Lineage | None:
    """The lineage a SpeciesNet label spells out; None when ``label`` is not one (not 7 fields)."""
    parts = label.split(";")
    if len(parts) != 7:
        return None
    _, klass, order, family, genus, species, _common = (p.strip().lower() for p in parts)
    if not any((klass, order, family, genus)):
        return ((KINGDOM,) if _common == "animal" else ())
    path = [("species", f"{genus.capitalize()} {species}")] if genus and species else []
    for rank, name in zip(reversed(_SPECIESNET_RANKS), (genus, family, order, klass)):
        if name:
            path.append((rank, name.capitalize()))
    return tuple(path) + (KINGDOM,)


def lineage_of(label: Mapping[str, Any]) -> Lineage:
    """The lineage of one ``species_labels`` row (see the module docstring for the sources)."""
    classifier_label = label.get("classifier_label")
    if classifier_label:
        found = speciesnet_lineage(classifier_label)
        if found is not None:
            return found
    scientific = label.get("scientific_name")
    if not scientific:
        return ()
    # A reviewer's binomial comes without a rank: it names a species.
    rank = label.get("taxon_rank") or ("species" if len(scientific.split()) == 2 else None)
    taxon = Taxon(label.get("species") or "", scientific, rank, label.get("taxon_class"))
    return speciesnet_lineage(lineage(taxon)) or (KINGDOM,)


def common_names(labels: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Scientific name -> common name, as the classifier named each taxon in ``labels``."""
    names = dict(_COCO_COMMON)
    for label in labels:
        lineage = lineage_of(label)
        if lineage and label.get("species"):
            names[lineage[0][1]] = label["species"]
    return names


def is_ancestor(ancestor: Lineage, of: Lineage) -> bool:
    """Whether the taxon of ``ancestor`` is a strict ancestor of the taxon of ``of``."""
    return bool(ancestor) and bool(of) and ancestor[0] != of[0] and ancestor[0] in of


def smooth_and_roll_up(
    sequence: list, smoothing: str, share: float | None, rollup_below: float | None, names: Mapping[str, str]
) -> list:
    """Step 3 of :mod:`hugin.events` on one sequence of animal detections: smoothing within each
    frame and then the sequence, then rollup. Detections are the events' frozen dataclasses (species,
    scientific_name, weight, score, conf, lineage, rollup_level, reviewed, file_path, frame_number);
    the ones returned are copies with the new labels, in the same order."""
    if smoothing == "taxonomy" and share:
        frames: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, d in enumerate(sequence):
            frames[(d.file_path, d.frame_number)].append(i)
        out = list(sequence)
        for indices in frames.values():
            for i, d in zip(indices, _smooth([sequence[i] for i in indices], share, taxonomic=True)):
                out[i] = d
        sequence = out
    if smoothing != "off" and share:
        sequence = _smooth(sequence, share, taxonomic=smoothing == "taxonomy")
    return _roll_up(sequence, rollup_below, names) if rollup_below else sequence


def _relabel(d: Any, to: Any) -> Any:
    return replace(d, species=to.species, scientific_name=to.scientific_name, lineage=to.lineage,
                   rollup_level=to.rollup_level)


def _smooth(sequence: list, share: float, *, taxonomic: bool) -> list:
    """The sequence (or frame) with minority labels, and with the taxonomy ancestor labels, relabelled."""
    votes: dict[str, float] = defaultdict(float)
    for d in sequence:
        votes[d.species] += d.weight
    total = sum(votes.values())
    if len(votes) < 2 or total <= 0:
        return sequence
    # Ties broken by name so the outcome never depends on row order.
    majority = max(votes, key=lambda s: (votes[s], s))
    out = sequence
    if votes[majority] > 0.5 * total:
        named = max((d for d in sequence if d.species == majority), key=lambda d: d.weight)
        out = [_relabel(d, named) if not d.reviewed and d.species != majority and votes[d.species] < share * total else d
               for d in sequence]
    if not taxonomic:
        return out
    best: dict[str, Any] = {}
    for d in out:
        if d.species not in best or d.weight > best[d.species].weight:
            best[d.species] = d
    target = {}
    for species, d in best.items():
        below = [o for o in best.values() if is_ancestor(d.lineage, o.lineage)]
        if len(below) == 1:  # an ancestor of two labels could be either animal: it stays
            target[species] = below[0]
    # The most precise label: an ancestor of an ancestor goes all the way down.
    for species in list(target):
        while target[species].species in target:
            target[species] = target[target[species].species]
    return [_relabel(d, target[d.species]) if d.species in target and not d.reviewed else d for d in out]


def _roll_up(sequence: list, below: float, names: Mapping[str, str]) -> list:
    """Species the sequence is not sure of, relabelled to their lowest confident ancestor (step 3)."""
    scores: dict[str, list[float]] = defaultdict(list)
    lineage: dict[str, Lineage] = {}
    for d in sequence:
        scores[d.species].append(1.0 if d.reviewed else d.score if d.score is not None else d.conf)
        lineage.setdefault(d.species, d.lineage)
    mean = {s: sum(v) / len(v) for s, v in scores.items()}
    threshold = np.float32(below)
    target: dict[str, tuple[str, str]] = {}
    for species, score in mean.items():
        own = lineage[species]
        if np.float32(score) >= threshold or len(own) < 2 or any(d.reviewed for d in sequence if d.species == species):
            continue
        # A sure species is an animal of its own: only the unsure labels are evidence for this one.
        support = {node: min(1.0, sum(m for s, m in mean.items() if node in lineage[s] and np.float32(m) < threshold))
                   for node in own[1:]}
        target[species] = next((n for n in own[1:] if np.float32(support[n]) >= threshold), own[-1])
    out = []
    for d in sequence:
        if d.species in target and not d.reviewed:
            rank, scientific = target[d.species]
            own = lineage[d.species]
            d = replace(d, species=names.get(scientific, scientific), scientific_name=scientific,
                        lineage=own[own.index((rank, scientific)):], rollup_level=rank)
        out.append(d)
    return out
