"""Typed settings: the shape of a profile, validated, with the local profile's defaults.

Everything a stage needs arrives as one :class:`Profile` of frozen dataclasses. Every key is checked:
an unknown or mistyped key, or a value of the wrong type, is an error that names the key, the source
and (for a typo) the key that was probably meant. Values left out take the defaults written here.

This is the compute kernel's half of the profiles: it parses a mapping (a YAML file read by
``resources.profiles``, or the dict the Pipes context carries into a Batch job) and imports nothing
above ``gpu_ops``, so the container needs neither Dagster nor the profile files.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field

class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class StorageSettings:
    endpoint_url: str | None = None  # any S3-compatible endpoint; AWS_ENDPOINT_URL wins when set
    region: str = "eu-north-1"


@dataclass(frozen=True)
class RunnerSettings:
    type: str = "local"  # local: a subprocess on this machine | batch: AWS Batch jobs
    device: str = "auto"  # auto | cpu | cuda
    python: str | None = None  # interpreter for local GPU stages; default: the one running Dagster


@dataclass(frozen=True)
class Stage1Settings:
    model: str = "default"  # default | path to .pt/.onnx/.engine | megadetector:/path/to/weights.pt
    backend: str = "auto"  # auto | torch | onnx | tensorrt
    batch_size: int = 16
    image_size: int = 640
    confidence_threshold: float = 0.1  # detections below are not written at all
    iou_threshold: float = 0.45
    decode_workers: int = 2
    video_every_seconds: float = 1.0
    video_max_frames: int = 10
    max_images_per_job: int = 1000  # one Batch job (shard) at most


@dataclass(frozen=True)
class CropSettings:
    min_confidence: float = 0.2
    pad_fraction: float = 0.1
    jpeg_quality: int = 90
    # Longer side of a stored crop, at most: a frame-filling animal in a 12 MP photo would otherwise
    # make a 6-9 MP crop, and need a second full-size decode (2.7x slower Stage 1, bench/stage1.py).
    max_side: int | None = 1024


@dataclass(frozen=True)
class Stage2Settings:
    classifier: str = "coco-taxonomy"  # coco-taxonomy | speciesnet[-vX] or its folder | ultralytics -cls .pt | torchscript:/m.pt
    labels: str | None = None  # labels file (one per line) for a TorchScript classifier
    # SpeciesNet's geofence where deployments.csv names no place: ISO 3166-1 alpha-3 and admin-1 (US state "CA").
    country: str | None = None
    admin1_region: str | None = None
    geofence: bool = True  # SpeciesNet: species outside the country/region are rolled up to one that lives there
    batch_size: int = 32
    image_size: int = 224


@dataclass(frozen=True)
class EventSettings:
    compression_window: float = 10.0  # minutes between detections that still belong to one event
    min_confidence: float = 0.3
    per_camera: dict = field(default_factory=dict)  # camera_id -> {compression_window, min_confidence}


@dataclass(frozen=True)
class ClusterSettings:
    min_cluster_size: int = 2
    min_samples: int = 1
    # HDBSCAN has no distance scale: a site wider than this sheds its farthest cameras.
    max_site_radius_m: float | None = 2000.0


@dataclass(frozen=True)
class PipelineSettings:
    stage1: Stage1Settings = field(default_factory=Stage1Settings)
    crops: CropSettings = field(default_factory=CropSettings)
    stage2: Stage2Settings = field(default_factory=Stage2Settings)
    events: EventSettings = field(default_factory=EventSettings)
    clusters: ClusterSettings = field(default_factory=ClusterSettings)
    sensitive_species: list = field(default_factory=list)  # scientific names generalized in exports
    # Burst-aware detection (gpu_ops.fusion.BurstConfig): on for bursts of 3+ frames; {enabled: false} turns it off.
    bursts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ComputeSettings:
    spot_instances: bool = True
    bid_percentage: int = 70
    fallback_to_ondemand: bool = True
    fallback_timeout: int = 300  # seconds RUNNABLE on spot before moving to the on-demand queue
    instance_types: list = field(default_factory=lambda: ["g4dn.xlarge", "g4dn.2xlarge"])
    min_vcpus: int = 0
    max_vcpus: int = 100
    desired_vcpus: int = 0
    vcpu: int = 4
    memory: int = 16384
    gpu_count: int = 1


@dataclass(frozen=True)
class AwsSettings:
    job_queue: str = "odins-ravne-gpu-spot"
    ondemand_job_queue: str = "odins-ravne-gpu-ondemand"
    job_definition: str = "odins-ravne-gpu"
    bucket: str | None = None  # Pipes context/messages and Stage 3 outputs
    compute: ComputeSettings = field(default_factory=ComputeSettings)
    max_parallel_jobs: int = 10


@dataclass(frozen=True)
class QueueSettings:
    adapter: str = "s3"  # s3: list new keys | sqs: S3 ObjectCreated notifications through SQS
    queue_url: str | None = None


@dataclass(frozen=True)
class CloudSettings:
    aws: AwsSettings = field(default_factory=AwsSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)


@dataclass(frozen=True)
class CostSettings:
    region: str = "eu-north-1"
    monthly_budget_usd: float = 1000.0
    # USD per hour in eu-north-1 from the team's cost sheet; live spot prices replace these when reachable.
    on_demand_prices: dict = field(
        default_factory=lambda: {"g4dn.xlarge": 0.526, "g4dn.2xlarge": 0.752, "p3.2xlarge": 3.06}
    )
    spot_prices: dict = field(
        default_factory=lambda: {"g4dn.xlarge": 0.158, "g4dn.2xlarge": 0.226, "p3.2xlarge": 0.918}
    )
    cloudwatch_metrics: bool = False


@dataclass(frozen=True)
class Profile:
    name: str = "local"
    description: str = ""
    storage: StorageSettings = field(default_factory=StorageSettings)
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    cost: CostSettings = field(default_factory=CostSettings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_CHOICES = {
    "runner.type": ("local", "batch"),
    "runner.device": ("auto", "cpu", "cuda"),
    "pipeline.stage1.backend": ("auto", "torch", "onnx", "tensorrt"),
    "cloud.queue.adapter": ("s3", "sqs"),
}


def _build(cls, data, where: str, source: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: '{where or 'the profile'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else f" Known keys: {', '.join(names)}."
            raise ProfileError(f"{source}: unknown key '{path}'.{hint}")
        values[key] = _coerce(hints[key], value, path, source)
    return cls(**values)


def _coerce(hint, value, path: str, source: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, source)
    origin = typing.get_origin(hint)
    allowed = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ProfileError(f"{source}: '{path}' must not be empty")
    for kind in allowed:
        kind = typing.get_origin(kind) or kind
        if kind is type(None):
            continue
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif kind is int and isinstance(value, bool):
            continue
        if isinstance(value, kind):
            if path in _CHOICES and value not in _CHOICES[path]:
                raise ProfileError(f"{source}: '{path}' is {value!r}; use one of {', '.join(_CHOICES[path])}")
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed if k is not type(None))
    raise ProfileError(f"{source}: '{path}' must be {names}, got {value!r}")


def parse_profile(data: dict, source: str = "<profile>") -> Profile:
    profile = _build(Profile, data or {}, "", source)
    for camera, overrides in profile.pipeline.events.per_camera.items():
        _build(EventSettings, overrides, f"pipeline.events.per_camera.{camera}", source)
    from gpu_ops.fusion import BurstConfig

    try:
        BurstConfig.from_mapping(profile.pipeline.bursts)
    except ValueError as err:
        raise ProfileError(f"{source}: pipeline.{err}") from None
    return profile


def profile_from_dict(data: dict) -> Profile:
    """Rebuild a profile from ``Profile.to_dict()`` (how the GPU entrypoint receives it)."""
    return parse_profile(data, source="<pipes context>")
