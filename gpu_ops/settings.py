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
import math
import os
import zipfile
import types
import typing
from dataclasses import dataclass, field

# The project's home region and the team's price sheet for it (USD per hour): the defaults of every
# setting and resource that needs one, written once.
HOME_REGION = "eu-north-1"
PRIORITIES = ("normal", "high")  # of a run: which Batch queue its GPU jobs go to
ON_DEMAND_PRICES = {"g4dn.xlarge": 0.526, "g4dn.2xlarge": 0.752, "g4dn.4xlarge": 1.204, "p3.2xlarge": 3.06}
SPOT_PRICES = {"g4dn.xlarge": 0.158, "g4dn.2xlarge": 0.226, "g4dn.4xlarge": 0.361, "p3.2xlarge": 0.918}
# vCPUs and MiB of each GPU instance type: what a right-sized job requests (memory less ECS's reserve).
INSTANCE_SHAPES = {"g4dn.xlarge": (4, 16384), "g4dn.2xlarge": (8, 32768), "g4dn.4xlarge": (16, 65536), "p3.2xlarge": (8, 62464)}
# The seeds' optimize_resources as the default right-sizing rule: the first rule whose max_images the
# stage's pending media stay under picks the instance type and Stage 1's batch size.
RIGHT_SIZING_RULES = (
    {"max_images": 100, "instance_type": "g4dn.xlarge", "batch_size": 16},
    {"max_images": 1000, "instance_type": "g4dn.2xlarge", "batch_size": 32},
    {"instance_type": "g4dn.4xlarge", "batch_size": 64},
)


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Bounds:
    """The allowed values of a number setting, checked when the profile loads: a value out of range
    fails there with one line, not after Stages 1 and 2 ran (or never, giving silently wrong results)."""

    low: float | None = None
    high: float | None = None
    above: bool = False  # ``low`` itself is not allowed
    step: int | None = None  # the value must be a multiple of this

    def allows(self, value) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return (self.high is None or value <= self.high) and (self.step is None or value % self.step == 0)

    def __str__(self) -> str:
        low = None if self.low is None else f"{'>' if self.above else '>='} {self.low:g}"
        if low and self.high is not None:
            text = f"from {self.low:g} to {self.high:g}" if not self.above else f"{low} and <= {self.high:g}"
        else:
            text = low or f"<= {self.high:g}"
        return text + (f", a multiple of {self.step}" if self.step else "")


def bounded(default, low=None, high=None, *, above: bool = False, step: int | None = None):
    """A dataclass field whose value must lie in the given range (see :class:`Bounds`)."""
    return field(default=default, metadata={"bounds": Bounds(low, high, above, step)})


@dataclass(frozen=True)
class StorageSettings:
    endpoint_url: str | None = None  # any S3-compatible endpoint; AWS_ENDPOINT_URL wins when set
    region: str = HOME_REGION


@dataclass(frozen=True)
class RunnerSettings:
    type: str = "local"  # local: a subprocess on this machine | batch: AWS Batch jobs
    device: str = "auto"  # auto | cpu | cuda
    python: str | None = None  # interpreter for local GPU stages; default: the one running Dagster


@dataclass(frozen=True)
class Stage1Settings:
    model: str = "default"  # default | path to .pt/.onnx/.engine | megadetector:/path/to/weights.pt
    backend: str = "auto"  # auto | torch | onnx | tensorrt
    batch_size: int = bounded(16, 1)
    # None: the model's own input size (gpu_ops.detector_loader.load_detector); the YOLO stride is 32
    image_size: int | None = bounded(None, 32, 4096, step=32)
    confidence_threshold: float = bounded(0.1, 0.0, 1.0)  # detections below are not written at all
    iou_threshold: float = bounded(0.45, 0.0, 1.0, above=True)
    # The default model's animal-ness: sum of all its animal classes (gpu_ops.animalness; on the
    # realdata tune split 36 % of animal frames boxed against 27 % for the best class) | best
    animal_score: str = "sum"
    # A second look at infrared frames the first found nothing on, contrast stretched
    # (gpu_ops.second_look): auto = with default-camtrap, where it was measured to help | always | never
    infrared_second_look: str = "auto"
    decode_workers: int = bounded(2, 1)
    video_every_seconds: float = bounded(1.0, 0.0, above=True)
    video_max_frames: int = bounded(10, 1)
    max_images_per_job: int = bounded(1000, 1)  # one Batch job (shard) at most


@dataclass(frozen=True)
class CropSettings:
    min_confidence: float = bounded(0.2, 0.0, 1.0)
    pad_fraction: float = bounded(0.1, 0.0, 1.0)
    jpeg_quality: int = bounded(90, 1, 100)
    # Longer side of a stored crop, at most: a frame-filling animal in a 12 MP photo would otherwise
    # make a 6-9 MP crop, and need a second full-size decode (2.7x slower Stage 1, bench/stage1.py).
    # A classifier needs some pixels: below 32 a crop is a smudge.
    max_side: int | None = bounded(1024, 32)


@dataclass(frozen=True)
class Stage2Settings:
    classifier: str = "coco-taxonomy"  # coco-taxonomy | speciesnet[-vX] or its folder | ultralytics -cls .pt | torchscript:/m.pt
    labels: str | None = None  # labels file (one per line) for a TorchScript classifier
    # SpeciesNet's geofence where deployments.csv names no place: ISO 3166-1 alpha-3 and admin-1 (US state "CA").
    country: str | None = None
    admin1_region: str | None = None
    geofence: bool = True  # SpeciesNet: species outside the country/region are rolled up to one that lives there
    batch_size: int = bounded(32, 1)
    image_size: int = bounded(224, 32, 1024)


@dataclass(frozen=True)
class EventSettings:
    compression_window: float = bounded(10.0, 0.0, above=True)  # minutes between detections that still belong to one event
    min_confidence: float = bounded(0.3, 0.0, 1.0)
    per_camera: dict = field(default_factory=dict)  # camera_id -> {compression_window, min_confidence}
    # A file's modification time counts as its capture time (hugin.deployments: off, it is the copy's time)
    use_file_mtime: bool = False
    # Label smoothing within frames and sequences (hugin.events): taxonomy | vote (the sequence vote
    # alone) | off
    smoothing: str = "taxonomy"
    # Roll a species whose mean classifier score in a sequence is below this up to its lowest
    # confident taxon (hugin.taxonomy); None: off
    rollup_below: float | None = bounded(None, 0.0, 1.0, above=True)
    # The detector audit (hugin.detector_audit) judges against this the detector's recall of animal
    # media and the share of them the counts hold, from the camera's reviews: below it, the counts
    # are lower bounds
    target_recall: float = bounded(0.9, 0.0, 1.0, above=True)


@dataclass(frozen=True)
class RepeatDetectionSettings:
    """Repeat-detection elimination per camera (gpu_ops.repeat_detections says why these defaults)."""

    enabled: bool = True
    iou: float = bounded(0.7, 0.0, 1.0, above=True)  # boxes this close are the same place
    min_triggers: int = bounded(4, 2)  # distinct triggers (bursts) a place must recur in...
    min_days: int = bounded(2, 1)  # ...on at least this many days
    min_conf: float = bounded(0.1, 0.0, 1.0)  # detections below are not counted


@dataclass(frozen=True)
class BackgroundSettings:
    """The camera-level background (gpu_ops.background says what it is, how it was measured and why
    these defaults): boxes where a frame differs from the same camera's other triggers."""

    enabled: bool = True
    neighbours: int = bounded(24, 3)  # triggers of the same mode, nearest in time, that make a background
    k_sigma: float = bounded(3.0, 0.0, above=True)  # robust noise units a pixel must differ by
    conf: float = bounded(0.3, 0.0, 1.0, above=True)  # the confidence its boxes carry (no detector saw them)


@dataclass(frozen=True)
class EffortSettings:
    """Camera effort (hugin.effort) and the dates of deployments.csv and camera_operation.csv."""

    # A camera silent for longer is a suspected outage, left out of effort (a camera with a daily
    # timelapse photo: 1.5); null: silences never count as outages. deployments.csv can set it per deployment.
    max_silence_days: float | None = bounded(14.0, 0.0, above=True)
    # How 03/04/2024 reads: auto (the file's other dates decide; else day first, flagged) | day_first | month_first
    date_format: str = "auto"


@dataclass(frozen=True)
class ClusterSettings:
    min_cluster_size: int = bounded(2, 2)  # HDBSCAN's smallest cluster
    min_samples: int = bounded(1, 1)
    # HDBSCAN has no distance scale: a site wider than this sheds its farthest cameras.
    max_site_radius_m: float | None = bounded(2000.0, 0.0, above=True)


@dataclass(frozen=True)
class PipelineSettings:
    stage1: Stage1Settings = field(default_factory=Stage1Settings)
    crops: CropSettings = field(default_factory=CropSettings)
    stage2: Stage2Settings = field(default_factory=Stage2Settings)
    events: EventSettings = field(default_factory=EventSettings)
    effort: EffortSettings = field(default_factory=EffortSettings)
    repeat_detections: RepeatDetectionSettings = field(default_factory=RepeatDetectionSettings)
    background: BackgroundSettings = field(default_factory=BackgroundSettings)
    clusters: ClusterSettings = field(default_factory=ClusterSettings)
    sensitive_species: list = field(default_factory=list)  # scientific names generalized in exports
    # Burst-aware detection (gpu_ops.fusion.BurstConfig): on for bursts of 3+ frames; {enabled: false} turns it off.
    bursts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ComputeSettings:
    spot_instances: bool = True
    bid_percentage: int = bounded(70, 1, 100)
    fallback_to_ondemand: bool = True
    fallback_timeout: int = bounded(300, 0)  # seconds RUNNABLE on spot before moving to the on-demand queue
    instance_types: list = field(default_factory=lambda: ["g4dn.xlarge", "g4dn.2xlarge"])
    min_vcpus: int = bounded(0, 0)
    max_vcpus: int = bounded(100, 1)
    desired_vcpus: int = bounded(0, 0)
    vcpu: int = bounded(4, 1)
    memory: int = bounded(16384, 512)  # MiB
    gpu_count: int = bounded(1, 0)


@dataclass(frozen=True)
class RightSizingSettings:
    """Instance type and batch size by workload (resources.stage_plan.right_size); off: the profile's own."""

    enabled: bool = True
    rules: list = field(default_factory=lambda: [dict(r) for r in RIGHT_SIZING_RULES])


@dataclass(frozen=True)
class AwsSettings:
    job_queue: str = "odins-ravne-gpu-spot"
    ondemand_job_queue: str = "odins-ravne-gpu-ondemand"
    high_priority_job_queue: str = "odins-ravne-gpu-high"  # ahead of the others, on-demand first
    priority: str = "normal"  # normal | high: a run's default; the run tag odins-ravne/priority overrides it
    regions: list = field(default_factory=list)  # where infra deploy/status/teardown act without --region; empty: storage.region
    job_definition: str = "odins-ravne-gpu"
    bucket: str | None = None  # Pipes context/messages and Stage 3 outputs
    compute: ComputeSettings = field(default_factory=ComputeSettings)
    max_parallel_jobs: int = bounded(10, 1)
    right_sizing: RightSizingSettings = field(default_factory=RightSizingSettings)
    # process: one packed Stage 1 pre-pass over the small cameras, one cold start a job, not one a camera
    pack_small_cameras: bool = True


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
    region: str = HOME_REGION
    monthly_budget_usd: float = bounded(1000.0, 0.0)
    # USD per hour in eu-north-1 from the team's cost sheet; live spot prices replace these when reachable.
    on_demand_prices: dict = field(
        default_factory=lambda: dict(ON_DEMAND_PRICES)
    )
    spot_prices: dict = field(
        default_factory=lambda: dict(SPOT_PRICES)
    )
    cloudwatch_metrics: bool = True  # what the stack's dashboard and alarms read (OdinsRavne/Processing)


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
    "pipeline.stage1.animal_score": ("sum", "best"),
    "pipeline.stage1.infrared_second_look": ("auto", "always", "never"),
    "pipeline.effort.date_format": ("auto", "day_first", "month_first"),
    "cloud.queue.adapter": ("s3", "sqs"),
    "pipeline.events.smoothing": ("taxonomy", "vote", "off"),
    "cloud.aws.priority": PRIORITIES,
}


def _build(cls, data, where: str, source: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: '{where or 'the profile'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else f" Known keys: {', '.join(fields)}."
            raise ProfileError(f"{source}: unknown key '{path}'.{hint}")
        values[key] = _coerce(hints[key], value, path, source)
        bounds = fields[key].metadata.get("bounds")
        if bounds is not None and values[key] is not None and not bounds.allows(values[key]):
            raise ProfileError(f"{source}: '{path}' is {value!r}; allowed: {bounds}")
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
    _check_compute(profile.cloud.aws.compute, source)
    _check_right_sizing(profile, source)
    for name in ("on_demand_prices", "spot_prices"):
        for instance_type, price in getattr(profile.cost, name).items():
            if isinstance(price, bool) or not isinstance(price, (int, float)) or not Bounds(0.0).allows(price):
                raise ProfileError(f"{source}: 'cost.{name}.{instance_type}' is {price!r}; allowed: a number >= 0 (USD per hour)")
    _check_model_file(profile, "pipeline.stage1.model", profile.pipeline.stage1.model, source)
    _check_model_file(profile, "pipeline.stage2.classifier", profile.pipeline.stage2.classifier, source)
    return profile


def _check_compute(compute: ComputeSettings, source: str) -> None:
    if not compute.min_vcpus <= compute.desired_vcpus <= compute.max_vcpus:
        raise ProfileError(
            f"{source}: 'cloud.aws.compute' has min_vcpus {compute.min_vcpus}, desired_vcpus {compute.desired_vcpus}, "
            f"max_vcpus {compute.max_vcpus}; allowed: min_vcpus <= desired_vcpus <= max_vcpus"
        )
    if not compute.instance_types:
        raise ProfileError(f"{source}: 'cloud.aws.compute.instance_types' is empty; name at least one instance type")


def _check_right_sizing(profile: Profile, source: str) -> None:
    """Each rule names a priced instance type and a batch size; max_images rise, and only the last may omit it."""
    where = f"{source}: 'cloud.aws.right_sizing.rules"
    rules = profile.cloud.aws.right_sizing.rules
    if profile.cloud.aws.right_sizing.enabled and not rules:
        raise ProfileError(f"{where}' is empty; give at least one rule or set right_sizing.enabled: false")
    known, previous = {"max_images", "instance_type", "batch_size", "vcpu", "memory"}, 0
    for index, rule in enumerate(rules):
        at = f"{where}[{index}]'"
        if not isinstance(rule, dict) or not {"instance_type", "batch_size"} <= set(rule) or set(rule) - known:
            raise ProfileError(f"{at} is {rule!r}; use {{max_images: N, instance_type: T, batch_size: B}} (optional vcpu, memory)")
        for key in ("max_images", "batch_size", "vcpu", "memory"):
            value = rule.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ProfileError(f"{at} has {key} {value!r}; allowed: a whole number >= 1")
        if rule["instance_type"] not in profile.cost.on_demand_prices:
            raise ProfileError(f"{at} names {rule['instance_type']!r}, which has no price in cost.on_demand_prices: add its price")
        if rule["instance_type"] not in INSTANCE_SHAPES and not {"vcpu", "memory"} <= set(rule):
            raise ProfileError(f"{at} names {rule['instance_type']!r}, whose size is not known: give its vcpu and memory (MiB)")
        last = index == len(rules) - 1
        if "max_images" not in rule and not last or "max_images" in rule and rule["max_images"] <= previous:
            raise ProfileError(f"{at}: max_images must rise from rule to rule, and only the last rule may leave it out")
        previous = rule.get("max_images", previous)


MODEL_SUFFIXES = (".pt", ".onnx", ".engine")


def _check_model_file(profile: Profile, path: str, spec: str, source: str) -> None:
    """A model the profile names by file must be there and be a model, checked at load, not after Stage 1.

    Decision: only files are checked (names resolve through the model registry when a stage runs).
    On a Batch runner a path names a file inside the GPU image, which this machine cannot see, so
    only its form is checked there.
    """
    from gpu_ops.model_registry import KNOWN_MODELS
    from gpu_ops.weights import FINE_TUNED, builtin_models

    if spec in ("default", "coco-taxonomy") or spec in FINE_TUNED or spec in KNOWN_MODELS:
        return
    file = spec.split(":", 1)[1] if spec.startswith(("megadetector:", "torchscript:")) else spec
    suffix = file.rsplit(".", 1)[-1].lower() if "." in file else ""
    if f".{suffix}" not in MODEL_SUFFIXES:
        if path == "pipeline.stage2.classifier":
            return  # SpeciesNet releases and folders: the classifier loader knows them
        raise ProfileError(
            f"{source}: '{path}' is {spec!r}; use {builtin_models()}, a known model name (odins-ravne models list), "
            "'megadetector:<file>' or a .pt/.onnx/.engine file"
        )
    if profile.runner.type != "local":
        return
    local = os.path.expanduser(file)
    if not os.path.isfile(local):
        raise ProfileError(f"{source}: '{path}' names {file}, which does not exist: fix the path or fetch the model (odins-ravne models fetch)")
    if not _looks_like_model(local, suffix):
        raise ProfileError(f"{source}: '{path}' names {file}, which is not a .{suffix} model (empty, truncated or another kind of file)")


def _looks_like_model(file: str, suffix: str) -> bool:
    """A cheap look at the first bytes: a PyTorch file is a zip (or a legacy pickle), an ONNX model
    a protobuf that starts with its ir_version field; a TensorRT engine has no stable magic."""
    with open(file, "rb") as handle:
        head = handle.read(4)
    if not head:
        return False
    if suffix == "pt":
        return zipfile.is_zipfile(file) or head[:1] == b"\x80"
    if suffix == "onnx":
        return head[:1] == b"\x08"
    return True


def profile_from_dict(data: dict) -> Profile:
    """Rebuild a profile from ``Profile.to_dict()`` (how the GPU entrypoint receives it)."""
    return parse_profile(data, source="<pipes context>")
