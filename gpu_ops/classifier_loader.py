"""The classifier a profile names: the dispatch over every Stage 2 adapter.

Its own module because the adapters build on :mod:`gpu_ops.classifier` (as the detector adapters
build on :mod:`gpu_ops.detector` and :mod:`gpu_ops.detector_loader` dispatches); SpeciesNet and
torch are imported only when chosen.
"""

from __future__ import annotations

from pathlib import Path

from gpu_ops.classifier import Classifier, CocoTaxonomyClassifier, TorchScriptClassifier, UltralyticsClassifier
from gpu_ops.classifier_speciesnet import is_speciesnet, load_speciesnet

_CACHE: dict = {}


def load_classifier(spec: str = "coco-taxonomy", *, labels: str | None = None, image_size: int = 224, device: str = "auto",
                    geofence: bool = True) -> Classifier:
    """The classifier a profile names, loaded once per process."""
    if device == "auto" and spec != "coco-taxonomy":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    key = (spec, labels, image_size, device, geofence)
    if key not in _CACHE:
        if spec == "coco-taxonomy":
            _CACHE[key] = CocoTaxonomyClassifier()
        elif is_speciesnet(spec):
            _CACHE[key] = load_speciesnet(spec, device=device, geofence=geofence)
        elif spec.startswith("torchscript:"):
            _CACHE[key] = TorchScriptClassifier(spec.split(":", 1)[1], labels, image_size, device)
        elif Path(spec).suffix in (".pt", ".onnx", ".engine"):
            if not Path(spec).exists():
                raise FileNotFoundError(f"classifier model {spec} does not exist: fix pipeline.stage2.classifier")
            _CACHE[key] = UltralyticsClassifier(spec, image_size, device)
        else:
            raise ValueError(
                f"unknown classifier {spec!r}: use 'coco-taxonomy', 'speciesnet' (or a SpeciesNet release name or "
                "model folder), a path to an ultralytics classification model (.pt/.onnx/.engine), or "
                "'torchscript:/path/model.pt' with a labels file"
            )
    return _CACHE[key]
