"""``odins-ravne batch``: from the cards on this machine to answers on AWS Batch, in one command.

``odins-ravne batch CARDS... --out s3://BUCKET/PREFIX`` stages the camera folders to
``s3://BUCKET/PREFIX/cards/`` (:mod:`resources.staging`: multipart, resumable, content-addressed),
processes the cameras it staged with ``process`` (the same Dagster jobs, the input root the staged
S3 prefix, so a Batch job never gets a path of this machine), then downloads Stage 3 and prints the
cost report when asked. A second run of the same cards uploads nothing and launches no job.

Decisions the issue leaves open:

* CARDS are one or more folders; each is a folder of camera folders, or one camera's folder (media
  directly in it: the camera is named by the folder). Two cards of one camera merge into its folder.
* The results are ``--out`` itself, the staged cards ``--out``/cards/ beside them (the Stage 3
  download leaves them out). Staging sits in the output prefix so the stack's bucket rules (expiry,
  encryption) cover the cards and a team sharing an output shares its staged cards.
* ``--local-output DIR`` is where Stage 3 is downloaded to; giving it downloads, and
  ``--download-stage3`` needs it.
* Profile settings given as options (``--compression-window``, ``--min-confidence`` for events,
  ``--spot-bid-percentage``, ``--max-vcpus``) make a derived profile for this run, written to
  ``$DAGSTER_HOME/profiles/`` (a run's config names it, so a re-execution from the UI uses the same
  settings), never the environment. ``--max-vcpus`` also caps the run's Batch jobs in flight at
  max_vcpus // the vCPUs of one job; the spot bid is the compute environment's, deployed by
  ``infra deploy``: the derived profile carries it for that and for the record.
* ``--priority`` tags every run ``odins-ravne/priority`` (``normal`` or ``high``, visible in the UI),
  the tag the Batch runner reads; left out, the profile's ``cloud.aws.priority`` decides.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Callable

import yaml

from gpu_ops.settings import PRIORITIES
from odins_ravne_assets.cli.console import error

CARDS_FOLDER = "cards"
Echo = Callable[[str], None]


def batch_command(
    cards: list[str],
    out: str,
    *,
    local_output: str | None = None,
    download_stage3: bool = False,
    cost_report: bool = False,
    priority: str | None = None,
    compression_window: float | None = None,
    min_confidence: float | None = None,
    spot_bid_percentage: int | None = None,
    max_vcpus: int | None = None,
    profile: str = "cloud",
    quiet: bool = False,
    echo: Echo = print,
) -> int:
    """Stage ``cards`` under ``out``, process them on Batch, then download and report; returns the exit code."""
    import botocore.exceptions

    from gpu_ops.storage import is_s3, join
    from odins_ravne_assets.cli.odin import cost_report as print_cost_report, stage3_download
    from odins_ravne_assets.cli.process import ensure_dagster_home, process
    from odins_ravne_assets.jobs import priority_tags
    from resources.profiles import load_profile
    from resources.staging import StagingError, stage_cards

    if not is_s3(out) or not out[len("s3://") :].split("/", 1)[0]:
        return error(f"--out {out}: Batch jobs read and write S3 only: give --out s3://BUCKET/PREFIX")
    if priority is not None and priority not in PRIORITIES:
        return error(f"--priority {priority!r}: use {' or '.join(PRIORITIES)}")
    if download_stage3 and not local_output:
        return error("--download-stage3 needs --local-output DIR: the folder Stage 3 is downloaded to")
    settings = load_profile(profile)
    if settings.runner.type != "batch":
        return error(f"profile {profile!r} runs the GPU stages on this machine (runner.type {settings.runner.type}): "
                     "use a Batch profile (--profile cloud), or odins-ravne process for a local run")
    cameras, problem = camera_folders(cards, skip=Path(local_output) if local_output else None)
    if problem:
        return error(problem)
    ensure_dagster_home()
    run_profile = derived_profile(profile, compression_window=compression_window, min_confidence=min_confidence,
                                  spot_bid_percentage=spot_bid_percentage, max_vcpus=max_vcpus)

    staged_root = join(out, CARDS_FOLDER)
    try:
        with _progress(quiet) as progress:
            summary = stage_cards(cameras, staged_root, region=settings.storage.region, progress=progress)
    except StagingError as err:
        return error(str(err))
    except KeyboardInterrupt:
        print("stopped while staging the cards; what was staged is kept: run the same command again to resume", file=sys.stderr)
        return 130
    except botocore.exceptions.NoCredentialsError:
        return error("no AWS credentials: run `aws configure` (or set AWS_PROFILE), or point AWS_ENDPOINT_URL at moto")
    except botocore.exceptions.ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        hint = "deploy the stack (odins-ravne infra deploy) or give --out in a bucket you can write" if code in ("NoSuchBucket", "AccessDenied") else "check the bucket and your credentials"
        return error(f"staging the cards to {staged_root} failed ({code or err}): {hint}; what was staged is kept, run again to resume")
    echo(summary.line())

    camera_ids = sorted({camera for camera, _ in cameras})
    code = process(staged_root, out, camera_ids=camera_ids, profile=run_profile, quiet=quiet, tags=priority_tags(priority) if priority else None)
    if code != 0:
        return code
    if local_output:
        code = stage3_download(s3_uri=out, local_dir=local_output, echo=echo)
        if code != 0:
            return code
    if cost_report:
        echo("")
        return print_cost_report(output_root=out, profile=run_profile, echo=echo)
    return 0


def camera_folders(cards: list[str], *, skip: Path | None = None) -> tuple[list[tuple[str, Path]], str | None]:
    """(camera, folder) for every camera on the cards, or one line saying why there is none.

    A card's folders are its cameras (invalid names and ``skip``, the local output, are left out with
    a line on stderr); a card holding media but no folders is one camera, named by the card's folder.
    """
    from gpu_ops.media import media_type_for
    from odins_ravne_assets.partitions import split_valid

    skip = skip.expanduser().resolve() if skip else None
    found: list[tuple[str, Path]] = []
    for card in cards:
        root = Path(card.removeprefix("file://")).expanduser().resolve()
        if not root.is_dir():
            return [], f"{card} is not a folder: give the folder of the camera folders (or one camera's folder)"
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.resolve() != skip)
        loose = sorted(p.name for p in root.iterdir() if p.is_file() and media_type_for(p.name))
        if loose and not folders:
            folders = [root]
        elif loose:
            print(f"warning: {len(loose)} media files directly under {root} are in no camera folder and are not staged "
                  f"(e.g. {loose[0]!r}): put each camera's media in its own folder", file=sys.stderr)
        valid, invalid = split_valid([p.name for p in folders])
        for name, reason in invalid.items():
            print(f"skipping folder {name!r}: {reason}", file=sys.stderr)
        found.extend((p.name, p) for p in folders if p.name in valid)
    if not found:
        return [], f"no camera folders in {', '.join(cards)}: put each camera's media in its own folder"
    return found, None


def derived_profile(
    profile: str, *, compression_window: float | None = None, min_confidence: float | None = None,
    spot_bid_percentage: int | None = None, max_vcpus: int | None = None,
) -> str:
    """``profile``, or a profile file with the options applied, validated as any profile is."""
    from gpu_ops.settings import parse_profile
    from resources.profiles import load_profile

    base = load_profile(profile)
    data = base.to_dict()
    events, compute, aws = data["pipeline"]["events"], data["cloud"]["aws"]["compute"], data["cloud"]["aws"]
    changed = {}
    if compression_window is not None:
        changed["pipeline.events.compression_window"] = events["compression_window"] = compression_window
    if min_confidence is not None:
        changed["pipeline.events.min_confidence"] = events["min_confidence"] = min_confidence
    if spot_bid_percentage is not None:
        changed["cloud.aws.compute.bid_percentage"] = compute["bid_percentage"] = spot_bid_percentage
    if max_vcpus is not None:
        compute["max_vcpus"] = max_vcpus
        compute["min_vcpus"] = min(compute["min_vcpus"], max_vcpus)
        compute["desired_vcpus"] = min(compute["desired_vcpus"], max_vcpus)
        aws["max_parallel_jobs"] = max(1, min(aws["max_parallel_jobs"], max_vcpus // compute["vcpu"]))
        changed["cloud.aws.compute.max_vcpus"] = max_vcpus
    if not changed:
        return profile
    data["description"] = f"{base.name} with " + ", ".join(f"{k}={v}" for k, v in changed.items())
    text = yaml.safe_dump(data, sort_keys=True)
    parse_profile(yaml.safe_load(text), source=f"{profile} with the command's options")
    folder = Path(os.environ["DAGSTER_HOME"]) / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{base.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not path.exists():
        from gpu_ops.fileio import atomic_write

        atomic_write(path, text.encode())
    return str(path)


class _progress:
    """Two tqdm bars, hashing then staging, as ``resources.staging`` reports bytes; none when quiet."""

    def __init__(self, quiet: bool):
        self.quiet, self.bars = quiet, {}

    def __enter__(self):
        return None if self.quiet else self.update

    def update(self, phase: str, n: int, total: int) -> None:
        from tqdm import tqdm

        if phase not in self.bars:
            for bar in self.bars.values():  # hashing is done when staging starts
                bar.close()
            label = {"hash": "hashing the cards", "upload": "staging to S3"}[phase]
            self.bars[phase] = tqdm(total=total, unit="B", unit_scale=True, desc=label, dynamic_ncols=True)
        self.bars[phase].update(n)

    def __exit__(self, *exc) -> None:
        for bar in self.bars.values():
            bar.close()
