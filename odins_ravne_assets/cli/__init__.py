"""``odins-ravne``: process camera folders, query the results, run the demo.

One module per command family: :mod:`.process` (process, demo), :mod:`.batch` (batch), :mod:`.results`
(query, export, import) and :mod:`.odin` (infra, cost, stage3). Each command is a function that takes plain values
and returns the exit code; this module only parses arguments. Heavy imports (Dagster, DuckDB, boto3
clients) happen inside the commands, so ``--help`` and ``query`` start fast.
"""

from __future__ import annotations

import argparse
import os

from odins_ravne_assets.cli import batch, console, models, odin, process, results, review


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="odins-ravne", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("process", help="process every camera folder under INPUT")
    p.add_argument("input", help="folder or s3:// prefix with one folder per camera")
    p.add_argument("--out", required=True, help="output folder or s3:// prefix")
    p.add_argument("--camera", action="append", dest="cameras", help="only this camera (repeatable)")
    p.add_argument("--profile", help="profile name or YAML path (default: $ODINS_RAVNE_PROFILE or local)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--priority", choices=["normal", "high"], help="Batch runner: the high-priority queue (on-demand, ahead of others); default: cloud.aws.priority")

    b = sub.add_parser("batch", help="stage local camera cards to S3 and process them on AWS Batch")
    b.add_argument("cards", nargs="+", help="folder(s) of camera folders, or one camera's folder")
    b.add_argument("--out", required=True, help="s3://BUCKET/PREFIX for the results (the cards go to PREFIX/cards/)")
    b.add_argument("--local-output", help="download Stage 3 to this folder when the run is done")
    b.add_argument("--download-stage3", action="store_true", help="download Stage 3 (to --local-output)")
    b.add_argument("--cost-report", action="store_true", help="print the cost report at the end")
    b.add_argument("--priority", choices=["normal", "high"], help="this run's Batch priority (default: cloud.aws.priority)")
    b.add_argument("--compression-window", type=float, help="minutes between detections of one event (this run)")
    b.add_argument("--min-confidence", type=float, help="events' minimum detection confidence (this run)")
    b.add_argument("--spot-bid-percentage", type=int, help="spot bid, percent of on-demand (this run's profile)")
    b.add_argument("--max-vcpus", type=int, help="vCPUs of Batch jobs in flight at most (this run)")
    b.add_argument("--profile", default="cloud", help="a Batch profile name or YAML path (default: cloud)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")

    q = sub.add_parser("query", help="run SQL read-only against the Stage 3 database")
    q.add_argument("sql", nargs="?", help="the statement; '-' reads it from stdin")
    q.add_argument("--file", help="read the statement from this file (quotes and newlines as written)")
    q.add_argument("--out", default=os.environ.get("ODINS_RAVNE_OUTPUT", "demo_output"), help="what process wrote")

    d = sub.add_parser("demo", help="build the sample cameras and process them")
    d.add_argument("--samples", default="sample_data")
    d.add_argument("--out", default="demo_output")

    e = sub.add_parser("export", help="standard exports of what process wrote")
    e.add_argument("format", choices=["camtrap-dp", "megadetector", "detection-history"])
    e.add_argument("dest", help="a folder for camtrap-dp, a .json file for megadetector, a .csv for detection-history")
    e.add_argument("--out", required=True, help="what process wrote (OUTPUT)")
    e.add_argument("--camera", help="megadetector: one camera's file, paths relative to its folder")
    e.add_argument("--species", help="detection-history: the species (common or scientific name)")
    e.add_argument("--occasion-days", type=int, help="detection-history: days per occasion, from each station's setup day")
    e.add_argument("--by", choices=["site", "camera"], default="site", help="detection-history: the stations (default site)")
    e.add_argument("--top-k", type=int, default=3, help="megadetector: classifications per detection, at most (default 3)")
    e.add_argument("--profile")

    i = sub.add_parser("import", help="join results computed elsewhere (MegaDetector batch output) at Stage 2")
    i.add_argument("format", choices=["megadetector"])
    i.add_argument("json", help="the MegaDetector batch output file of one camera")
    i.add_argument("input", help="the folder holding the camera folders")
    i.add_argument("--camera", required=True, help="the camera the file belongs to (paths relative to its folder)")
    i.add_argument("--out", required=True)
    i.add_argument("--profile")

    rv = sub.add_parser("review", help="reviewed labels: import them (Timelapse, Camtrap DP, MegaDetector), sample media to review")
    rv.add_argument("action", choices=["import", "sample"])
    rv.add_argument("file", nargs="?", help="import: the Timelapse CSV, Camtrap DP observations.csv or MegaDetector JSON")
    rv.add_argument("--format", choices=["timelapse", "camtrap-dp", "megadetector"], help="import: what the file is")
    rv.add_argument("--results", default=os.environ.get("ODINS_RAVNE_OUTPUT", "demo_output"), help="what process wrote (OUTPUT)")
    rv.add_argument("--camera", help="import: the file covers this camera, paths relative to its folder")
    rv.add_argument("--species-field", default="Species", help="import timelapse: the data field holding the label")
    rv.add_argument("--count-field", default="Count", help="import timelapse: the data field holding the count")
    rv.add_argument("--per-camera", type=int, default=20, help="sample: media per camera (half positives, half negatives)")
    rv.add_argument("--seed", type=int, default=0, help="sample: the random seed")
    rv.add_argument("--out", help="sample: the folder to write the sample into")
    rv.add_argument("--input", help="sample: the input root, to copy the sampled media too")
    rv.add_argument("--profile")

    infra = sub.add_parser("infra", help="the AWS stack: deploy, status, teardown (run from a checkout)")
    infra.add_argument("action", choices=["deploy", "status", "teardown"])
    infra.add_argument("--profile", default="cloud")
    infra.add_argument("--stack", default="odins-ravne")
    infra.add_argument("--region", action="append", default=[], dest="regions",
                       help="act in this region (repeatable; default: the profile's cloud.aws.regions, else storage.region)")
    infra.add_argument("--image", help="deploy: the GPU image URI (ECR)")
    infra.add_argument("--subnet", action="append", default=[], help="deploy: subnet id (repeatable; default VPC when left out)")
    infra.add_argument("--security-group", action="append", default=[], help="deploy: security group id (repeatable)")
    infra.add_argument("--budget-email", help="deploy: who the AWS Budget alerts")
    infra.add_argument("--no-wait", action="store_true", help="deploy: do not wait for the stack")
    infra.add_argument("--force", action="store_true", help="teardown: even while jobs are queued or running")

    cost = sub.add_parser("cost", help="what the GPU stages cost")
    cost.add_argument("action", choices=["report"])
    cost.add_argument("--out", required=True, help="what process wrote (OUTPUT)")
    cost.add_argument("--profile", default="cloud")
    cost.add_argument("--by", default="camera_id", choices=["camera_id", "run_id", "stage", "capacity", "priority"])
    cost.add_argument("--suggest", action="store_true", help="what the measured costs say to change: spot, instance type, batch size, job size")
    cost.add_argument("--next", type=int, dest="next_n", metavar="N", help="the projected cost of the next N images")

    mdl = sub.add_parser("models", help="the models a profile can name, and what the model cache holds")
    mdl.add_argument("action", choices=["list", "fetch"])
    mdl.add_argument("name", nargs="?", help="fetch: the model's name")

    st3 = sub.add_parser("stage3", help="the Stage 3 outputs")
    st3.add_argument("action", choices=["download"])
    st3.add_argument("s3_uri", help="the s3:// OUTPUT that process wrote")
    st3.add_argument("local_dir")
    st3.add_argument("--with-crops", action="store_true", help="also copy the crop JPEGs")
    return parser


def main(argv: list[str] | None = None) -> int:
    from gpu_ops.settings import ProfileError

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except ProfileError as err:  # a profile is the user's file: what is wrong in it, in one line
        return console.error(str(err))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "process":
        tags = None
        if args.priority:
            from odins_ravne_assets.jobs import priority_tags  # Dagster: imported only when needed

            tags = priority_tags(args.priority)
        return process.process(args.input, args.out, camera_ids=args.cameras, profile=args.profile, quiet=args.quiet, tags=tags)
    if args.command == "batch":
        return batch.batch_command(
            args.cards, args.out, local_output=args.local_output, download_stage3=args.download_stage3, cost_report=args.cost_report,
            priority=args.priority, compression_window=args.compression_window, min_confidence=args.min_confidence,
            spot_bid_percentage=args.spot_bid_percentage, max_vcpus=args.max_vcpus, profile=args.profile, quiet=args.quiet,
        )
    if args.command == "demo":
        return process.demo(args.samples, args.out)
    if args.command == "query":
        return results.query_command(args.sql, args.out, sql_file=args.file)
    if args.command == "export" and args.format == "detection-history":
        return results.detection_history_command(args.out, args.dest, species=args.species, occasion_days=args.occasion_days,
                                                 by=args.by, profile=args.profile)
    if args.command == "export":
        return results.export_command(args.format, args.out, args.dest, camera_id=args.camera, profile=args.profile,
                                      top_k=args.top_k)
    if args.command == "import":
        return results.import_command(args.json, args.input, args.out, args.camera, profile=args.profile)
    if args.command == "review" and args.action == "import":
        if not args.file or not args.format:
            parser.error("review import needs the FILE and --format timelapse|camtrap-dp|megadetector")
        return review.import_command(args.file, args.format, args.results, camera_id=args.camera,
                                     species_field=args.species_field, count_field=args.count_field, profile=args.profile)
    if args.command == "review":
        if not args.out:
            parser.error("review sample needs --out DIR (where the sample goes)")
        return review.sample_command(args.results, args.out, per_camera=args.per_camera, seed=args.seed,
                                     input_root=args.input, profile=args.profile)
    if args.command == "infra" and args.action == "deploy":
        if not args.image:
            parser.error("infra deploy needs --image URI (the GPU image pushed to ECR)")
        return odin.infra_deploy(
            profile=args.profile, image_uri=args.image, subnet_ids=args.subnet, security_group_ids=args.security_group,
            budget_email=args.budget_email or "", stack_name=args.stack, wait=not args.no_wait, regions=args.regions,
        )
    if args.command == "infra" and args.action == "status":
        return odin.infra_status(profile=args.profile, stack_name=args.stack, regions=args.regions)
    if args.command == "infra":
        return odin.infra_teardown(profile=args.profile, stack_name=args.stack, force=args.force, regions=args.regions)
    if args.command == "models" and args.action == "list":
        return models.list_command()
    if args.command == "models":
        if not args.name:
            parser.error("models fetch needs the model's name (odins-ravne models list)")
        return models.fetch_command(args.name)
    if args.command == "cost":
        return odin.cost_report(output_root=args.out, profile=args.profile, by=args.by, suggest=args.suggest, next_n=args.next_n)
    return odin.stage3_download(s3_uri=args.s3_uri, local_dir=args.local_dir, with_crops=args.with_crops)
