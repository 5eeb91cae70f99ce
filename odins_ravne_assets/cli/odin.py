"""``odins-ravne infra|cost|stage3``: the AWS stack, the GPU cost report, the Stage 3 download.

Each function takes plain values, prints through ``echo`` and returns the exit code, so ``main`` only
parses arguments. Errors a user can fix (no stack, over budget, unsafe key) are one clear line on
stderr and exit code 2; nothing here prints a traceback for them.
"""

from __future__ import annotations

from typing import Callable, Sequence

import botocore.exceptions

from odins_ravne_assets.cli.console import error, format_table
from resources.aws import aws_client

Echo = Callable[[str], None]


def infra_deploy(
    *,
    profile: str = "cloud",
    image_uri: str,
    subnet_ids: Sequence[str] = (),
    security_group_ids: Sequence[str] = (),
    budget_email: str = "",
    stack_name: str = "odins-ravne",
    wait: bool = True,
    regions: Sequence[str] = (),
    echo: Echo = print,
) -> int:
    """Deploy the stack, its dashboard and alarms in each region (:func:`resources.infra.regions_for`), then the budget.

    ``subnet_ids`` and ``security_group_ids`` belong to one region's VPC: with several regions, each
    uses its default VPC unless they are given (then deploy one region at a time).
    """
    from resources import infra
    from gpu_ops.settings import ProfileError
    from resources.profiles import load_profile

    buckets = {}
    try:
        settings = load_profile(profile)
        regions = infra.regions_for(settings, regions)
        if len(regions) > 1 and (subnet_ids or security_group_ids):
            raise infra.InfraError("--subnet and --security-group belong to one region's VPC: deploy one --region at a time with them")
        for region in regions:
            if len(regions) > 1:
                echo(f"region {region}:")
            subnets, groups = subnet_ids, security_group_ids
            if not subnets or not groups:
                default_subnets, default_groups = infra.default_network(aws_client("ec2", region=region))
                subnets, groups = subnets or default_subnets, groups or default_groups
                echo(f"using the default VPC: subnets {', '.join(subnets)}, security group {', '.join(groups)}")
            params = infra.stack_parameters(
                settings, image_uri=image_uri, subnet_ids=subnets, security_group_ids=groups, project_name=stack_name, alarm_email=budget_email
            )
            outputs = infra.deploy(aws_client("cloudformation", region=region), params, stack_name=stack_name, wait=wait, echo=echo)
            for key, value in sorted(outputs.items()):
                echo(f"  {key}: {value}")
            if outputs:
                buckets[region] = outputs["BucketName"]
                echo("  " + infra.ensure_monitoring(
                    aws_client("cloudwatch", region=region), stack_name=stack_name, monthly_budget_usd=settings.cost.monthly_budget_usd,
                    alarm_topic_arn=outputs.get("AlarmTopicArn"),
                ))
            else:
                echo("  not waiting for the stack: run deploy again once it is up to add its dashboard and alarms")
        account = aws_client("sts", region=regions[0]).get_caller_identity()["Account"]
        echo(infra.ensure_budget(
            aws_client("budgets", region="us-east-1"), account_id=account, name=infra.budget_name(stack_name),
            monthly_usd=settings.cost.monthly_budget_usd, email=budget_email,
        ))
    except (infra.InfraError, ProfileError) as err:
        return error(str(err))
    except botocore.exceptions.NoCredentialsError:
        return error("no AWS credentials: run `aws configure` (or set AWS_PROFILE), or point AWS_ENDPOINT_URL at moto")
    if len(buckets) == 1:
        bucket = next(iter(buckets.values()))
        echo(f"set cloud.aws.bucket to {bucket} in the profile (or export ODINS_RAVNE_BUCKET={bucket})")
    elif buckets:
        echo("one bucket per region: " + ", ".join(f"{r} s3://{b}" for r, b in buckets.items())
             + "; a run works in the region of its --out bucket")
    return 0


def infra_status(*, profile: str = "cloud", stack_name: str = "odins-ravne", regions: Sequence[str] = (), echo: Echo = print) -> int:
    """The stack in each region: state, outputs, compute, queued jobs, dashboard and alarms."""
    from resources import infra
    from resources.profiles import load_profile

    try:
        regions = infra.regions_for(load_profile(profile), regions)
    except infra.InfraError as err:
        return error(str(err))
    for region in regions:
        report = infra.status(
            aws_client("cloudformation", region=region), stack_name=stack_name,
            batch=aws_client("batch", region=region), cloudwatch=aws_client("cloudwatch", region=region),
        )
        echo(f"stack {report['stack']}: {report['status']}")
        echo(f"  region: {region}")
        for key, value in sorted(report.get("outputs", {}).items()):
            echo(f"  {key}: {value}")
        for name, env in report.get("compute_environments", {}).items():
            echo(f"  compute {name}: {env['state']}/{env['status']}, {env['desired_vcpus']} of max {env['max_vcpus']} vCPUs up")
        for queue, counts in report.get("jobs", {}).items():
            echo(f"  queue {queue}: " + (", ".join(f"{n} {state}" for state, n in counts.items()) or "idle"))
        if "alarms" in report:
            echo("  alarms: " + (", ".join(f"{name} {state}" for name, state in sorted(report["alarms"].items())) or "none (deploy again to add them)"))
            echo(f"  dashboard: {report['dashboard'] or 'none (deploy again to add it)'}")
    return 0


def infra_teardown(
    *, profile: str = "cloud", stack_name: str = "odins-ravne", force: bool = False, regions: Sequence[str] = (), echo: Echo = print
) -> int:
    """Tear the stack, its dashboard and alarms down in each region; the buckets and the budget stay."""
    from resources import infra
    from resources.profiles import load_profile

    try:
        for region in infra.regions_for(load_profile(profile), regions):
            message = infra.teardown(
                aws_client("cloudformation", region=region), stack_name=stack_name, batch=aws_client("batch", region=region),
                cloudwatch=aws_client("cloudwatch", region=region), force=force, echo=echo,
            )
            echo(f"{region}: {message}")
    except infra.InfraError as err:
        return error(str(err))
    return 0


def cost_report(
    *, output_root: str, profile: str = "cloud", by: str = "camera_id", suggest: bool = False, next_n: int | None = None, echo: Echo = print
) -> int:
    """Spend per camera (or run, stage, capacity); with ``suggest``, what to change and what the next ``next_n`` images cost."""
    from resources import cost as costs_module
    from resources.cost import COSTS, CostResource, report_rows, summarize, usd
    from resources.stage_plan import right_size
    from resources.profiles import load_profile
    from gpu_ops.storage import open_storage

    if by not in ("camera_id", "run_id", "stage", "capacity", "priority"):
        return error(f"--by {by!r}: use camera_id, run_id, stage, capacity or priority")
    settings = load_profile(profile)
    output = open_storage(output_root, settings.storage)
    resource = CostResource.from_profile(settings)
    costs = resource.read_costs(output)
    if costs is None or costs.num_rows == 0:
        echo(f"no costs recorded under {output.uri('costs')}: they are written when GPU stages run on AWS Batch")
        return 0
    costs = costs.select(COSTS.names)
    rows = report_rows(costs, by=by)
    columns = [by, "jobs", "n_media", "runtime_hours", "usd", "on_demand_usd", "saving_usd", "saving_pct", "usd_per_media"]
    # Per-image spend is a few micro-dollars for small jobs: significant digits, not four decimals.
    echo(format_table(columns, [[usd(row[c]) if c == "usd_per_media" else row.get(c) for c in columns] for row in rows], float_format=".4f"))
    total = summarize(costs)
    echo(
        f"\ntotal ${total['usd']:.4f} for {total['jobs']} job(s), {total['runtime_hours']:.3f} GPU hours; "
        f"spot saved ${total['saving_usd']:.4f} ({total['saving_pct']:.0f}% of ${total['on_demand_usd']:.4f} on-demand)"
    )
    spent, source = resource.spent_this_month(output)
    echo(f"this month: ${spent:.2f} of ${resource.monthly_budget_usd:,.2f} budget spent ({source})")
    if suggest or next_n:
        compute = settings.cloud.aws.compute
        lines = costs_module.suggest(
            costs, max_images_per_job=settings.pipeline.stage1.max_images_per_job, right_size=lambda n: right_size(settings, n),
            next_n=next_n, prices=resource.price_book(), default_instance_type=right_size(settings, next_n or 0).instance_type,
            capacity="spot" if compute.spot_instances else "on-demand",
        )
        echo("\nsuggestions:" if suggest else "")
        for line in lines if suggest else lines[-1:]:
            echo(f"  {line}")
    return 0


def stage3_download(*, s3_uri: str, local_dir: str, with_crops: bool = False, echo: Echo = print) -> int:
    from resources.stage3 import connect
    from resources.stage3_download import UnsafeKeyError, download_stage3

    try:
        path = download_stage3(s3_uri, local_dir, with_crops=with_crops, echo=echo)
    except (UnsafeKeyError, FileNotFoundError, ValueError) as err:
        return error(str(err))
    con = connect(path)
    try:
        views = [r[0] for r in con.execute("select view_name from duckdb_views() where not internal order by 1").fetchall()]
    finally:
        con.close()
    echo(f"Stage 3 database: {path}")
    echo(f"views: {', '.join(views)}")
    echo(f"query it: odins-ravne query \"SELECT * FROM events\" --out {local_dir}")
    return 0
