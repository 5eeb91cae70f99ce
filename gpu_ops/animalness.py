"""Animal-ness from all of a COCO model's animal classes, not the single best one.

A daylight COCO model that sees a grey, blurred paca at night spreads its belief over dog, cat,
sheep and bear; the best single class then falls under the threshold although the model is fairly
sure *some* animal is there. With ``animal_score: sum`` each anchor's animal probability is the sum
of its animal class probabilities (clipped to 1; YOLOv3's classes are independent sigmoids, so the
sum can pass 1) and is written on the best animal class, the other animal classes set to 0: NMS and
the label then see one animal class per anchor, named after the best guess. Person and vehicle
classes stay as they are, so an anchor that is more a person than any animal stays a person.
"""

from __future__ import annotations

from typing import Sequence

import torch

ANIMAL_SCORES = ("best", "sum")


def pool_animal_classes(prediction: torch.Tensor, animal_ids: Sequence[int], floor: float = 0.0) -> torch.Tensor:
    """``(anchors, 5 + classes)`` raw YOLO predictions with the animal classes pooled (module doc).

    Anchors with objectness at or below ``floor`` (the detector's threshold) are dropped first: a
    score is objectness times a probability of at most 1, so NMS would drop them anyway, and most
    anchors of a frame are such (pooling all of them cost 16 ms an image, a sixth of the detector).
    """
    if not len(animal_ids):
        return prediction
    prediction = prediction[prediction[:, 4] > floor]
    columns = torch.as_tensor([5 + i for i in animal_ids], device=prediction.device)
    animal = prediction[:, columns]
    best = animal.argmax(dim=1)
    pooled = torch.zeros_like(animal)
    pooled[torch.arange(len(animal), device=animal.device), best] = animal.sum(dim=1).clamp(max=1.0)
    out = prediction.clone()
    out[:, columns] = pooled
    return out
