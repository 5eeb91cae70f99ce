"""The camera-level background on constructed frames: the same scene with and without a still animal."""

from __future__ import annotations

import numpy as np

from gpu_ops.background import BackgroundConfig, Trigger, camera_proposals, is_infrared, missed_boxes, propose, reduce, thumbnail
from gpu_ops.boxes import iou

ANIMAL = (0.55, 0.40, 0.15, 0.20)  # normalized x, y, w, h


def _scene(seed: int, *, animal: bool = False, gain: float = 1.0, grey: bool = True, at=ANIMAL) -> np.ndarray:
    """A fixed textured scene (the same for every seed), camera noise and exposure per trigger."""
    yy, xx = np.mgrid[0:240, 0:320]
    base = 100 + 40 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    noisy = base * gain + np.random.default_rng(seed).normal(0, 3, base.shape)
    if animal:
        x, y, w, h = at
        noisy[int(y * 240): int((y + h) * 240), int(x * 320): int((x + w) * 320)] += 60
    image = np.clip(noisy, 0, 255).astype(np.uint8)
    rgb = np.stack([image] * 3, axis=2)
    if not grey:
        rgb[..., 0] = np.clip(rgb[..., 0].astype(int) + 40, 0, 255)
    return rgb


def _small(frames) -> list[np.ndarray]:
    return [thumbnail(f)[0] for f in frames]


def _background(triggers) -> np.ndarray:
    return np.median(np.stack([reduce(_small([f])) for f in triggers]), axis=0)


def test_an_animal_standing_still_differs_from_the_cameras_other_triggers():
    config = BackgroundConfig()
    others = [_scene(s, gain=g) for s, g in ((1, 0.8), (2, 1.0), (3, 1.3))]  # exposure varies by trigger
    burst = [_scene(10 + k, animal=True) for k in range(3)]  # the animal does not move: no burst motion
    [proposal] = propose(reduce(_small(burst)), _background(others), config)
    assert iou(proposal.bbox, ANIMAL) > 0.7


def test_the_empty_scene_proposes_nothing():
    config = BackgroundConfig()
    others = [_scene(s) for s in (1, 2, 3)]
    assert propose(reduce(_small([_scene(20, gain=1.2)])), _background(others), config) == []


def test_infrared_is_told_from_colour():
    assert is_infrared(_scene(1)) and not is_infrared(_scene(1, grey=False))
    assert thumbnail(_scene(1))[1] and not thumbnail(_scene(1, grey=False))[1]
    grey, _ = thumbnail(_scene(1))
    assert grey.dtype == np.uint8 and grey.shape == (144, BackgroundConfig.side)


def _trigger(key: str, t: float, frames, infrared: bool = True) -> Trigger:
    return Trigger(key, t, infrared, tuple(_small(frames)), tuple(f"{key}-{k}" for k in range(len(frames))))


def test_a_camera_finds_the_trigger_with_a_still_animal_and_nothing_in_the_empty_ones():
    """Ten empty triggers an hour apart (exposure varying) and one burst of a still animal among them."""
    triggers = [_trigger(f"empty-{k}", 3600.0 * k, [_scene(k, gain=0.8 + 0.05 * k)]) for k in range(10)]
    triggers.append(_trigger("animal", 3600.0 * 4.5, [_scene(100 + k, animal=True) for k in range(3)]))
    found = camera_proposals(triggers)
    assert sorted(found) == sorted(t.key for t in triggers)
    assert len(found["animal"]) == 3  # one list per frame: the animal in each
    for [proposal] in found["animal"]:
        assert iou(proposal.bbox, ANIMAL) > 0.7
    assert all(found[f"empty-{k}"] == [[]] for k in range(10))
    # Computed again with the triggers in another order (media arriving in other runs): the same.
    again = camera_proposals(list(reversed(triggers)))
    assert again == found


def test_what_stands_in_several_triggers_is_the_scene_and_another_mode_is_never_the_background():
    # The "animal" in four of eight triggers is part of the scene (a rock that came with a season)...
    triggers = [_trigger(f"t{k}", 600.0 * k, [_scene(k, animal=k % 2 == 0)]) for k in range(8)]
    assert all(p == [[]] for p in camera_proposals(triggers).values())
    # ...and a daylight trigger is not compared with infrared ones: too few of its own mode.
    night = [_trigger(f"n{k}", 600.0 * k, [_scene(k)]) for k in range(6)]
    day = _trigger("day", 650.0, [_scene(50, animal=True, grey=False)], infrared=False)
    assert camera_proposals(night + [day])["day"] == [[]]


def test_a_trigger_s_background_is_made_of_its_neighbours_in_time():
    """The camera is moved after five triggers: each trigger is compared with its own scene."""
    config = BackgroundConfig(neighbours=4)
    before = [_trigger(f"a{k}", 60.0 * k, [_scene(k)]) for k in range(5)]
    moved = [_trigger(f"b{k}", 1e6 + 60.0 * k, [np.roll(_scene(10 + k), 90, axis=1)]) for k in range(5)]
    moved.append(_trigger("b-animal", 1e6 + 150.0, [np.roll(_scene(30, animal=True), 90, axis=1)]))
    found = camera_proposals(before + moved, config)
    assert all(found[t.key] == [[]] for t in before + moved[:-1])
    [[proposal]] = found["b-animal"]
    x, y, w, h = ANIMAL
    assert iou(proposal.bbox, (x + 90 / 320, y, w, h)) > 0.7


def test_an_animal_walking_through_its_burst_is_boxed_where_it_is_in_each_frame():
    """The burst's median would erase it: each frame is compared with the background on its own."""
    steps = [(0.10 + 0.25 * k, 0.40, 0.15, 0.20) for k in range(3)]
    triggers = [_trigger(f"empty-{k}", 3600.0 * k, [_scene(k)]) for k in range(6)]
    triggers.append(_trigger("walk", 3600.0 * 2.5, [_scene(200 + k, animal=True, at=box) for k, box in enumerate(steps)]))
    found = camera_proposals(triggers)["walk"]
    for box, [proposal] in zip(steps, found):
        assert iou(proposal.bbox, box) > 0.6
    boxes = missed_boxes(triggers, {"walk-1"})  # the detector found the animal in frame 1
    assert "walk-1" not in boxes and iou(boxes["walk-0"].bbox, steps[0]) > 0.6 and iou(boxes["walk-2"].bbox, steps[2]) > 0.6


def test_a_camera_of_many_triggers_shares_backgrounds_by_blocks_and_still_finds_a_lingering_animal():
    """60 triggers: blocks of 8 share one background (never their own); an animal that stays through
    three consecutive triggers of a block is not part of their background."""
    triggers = [_trigger(f"t{k:02d}", 600.0 * k, [_scene(k, animal=k in (17, 18, 19))]) for k in range(60)]
    found = camera_proposals(triggers)
    for k in (17, 18, 19):
        [[proposal]] = found[f"t{k:02d}"]
        assert iou(proposal.bbox, ANIMAL) > 0.6
    assert sum(len(f[0]) for key, f in found.items() if key not in ("t17", "t18", "t19")) == 0


def _foliage(seed: int, *, shift: int = 0, animal: bool = False) -> np.ndarray:
    """A thumbnail-sized infrared scene with a patch of fine foliage (the same leaves in every
    trigger), camera noise per trigger, moved ``shift`` pixels to the right (a camera on a tree in the
    wind, a strap re-tightened)."""
    side = BackgroundConfig.side
    scene = np.full((144, side), 100.0)
    leaves = np.random.default_rng(0).normal(0, 50, (144, side // 3))
    scene[:, :side // 3] += leaves
    if animal:
        x, y, w, h = ANIMAL
        scene[int(y * 144): int((y + h) * 144), int(x * side): int((x + w) * side)] = 230.0
    scene = np.roll(scene, shift, axis=1) + np.random.default_rng(seed).normal(0, 2, scene.shape)
    return np.stack([np.clip(scene, 0, 255).astype(np.uint8)] * 3, axis=2)


def test_a_camera_shifted_by_a_pixel_proposes_nothing_and_an_animal_still_differs():
    """Every edge of a scene moved by one thumbnail pixel differs from the background: without the
    ``jitter`` guard that is a proposal, with it nothing; an animal in the moved scene is still found."""
    background = _background([_foliage(s) for s in (1, 2, 3)])
    moved = reduce(_small([_foliage(20, shift=1)]))
    assert propose(moved, background, BackgroundConfig(jitter=0)) != []  # the fault the guard is for
    assert propose(moved, background, BackgroundConfig()) == []
    [proposal] = propose(reduce(_small([_foliage(21, shift=1, animal=True)])), background, BackgroundConfig())
    assert iou(proposal.bbox, ANIMAL) > 0.6


def test_the_detectors_boxes_are_no_part_of_a_small_cameras_background():
    """Six triggers of a small camera, the same animal at the same place in four of them (boxed by the
    detector), two empty. Each empty trigger's background is its five neighbours, four of which show
    the animal: their median keeps it, and the empty frame gets a ghost box where the animal stood
    (the animal's own triggers propose nothing there, so the repeat guard cannot tell). With the
    detector's boxes left out of the background: nothing."""
    keys = ["animal-0", "empty-0", "animal-1", "animal-2", "empty-1", "animal-3"]
    triggers = [_trigger(key, 600.0 * k, [_scene(k, animal=key.startswith("animal"))]) for k, key in enumerate(keys)]
    ghost = camera_proposals(triggers)
    assert [iou(p.bbox, ANIMAL) > 0.6 for [p] in ghost["empty-0"] + ghost["empty-1"]] == [True, True]
    boxed = [Trigger(t.key, t.time, t.infrared, t.frames, t.images, ((ANIMAL,),) if t.key.startswith("animal") else ((),))
             for t in triggers]
    found = camera_proposals(boxed)
    assert found["empty-0"] == [[]] and found["empty-1"] == [[]]
    # Trigger.of takes the boxes per image, as the detections asset and the bench give them.
    thumbs = {t.images[0]: (t.frames[0], True) for t in triggers}
    built = [Trigger.of(t.key, list(t.images), thumbs, [t.time], {t.images[0]: [ANIMAL]} if t.key.startswith("animal") else None)
             for t in triggers]
    assert camera_proposals(built) == found
