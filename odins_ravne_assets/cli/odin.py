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
    echo: Echo = print,
) -> int:
    from resources import infra
    from gpu_ops.settings import ProfileError
    from resources.profiles import load_profile

    try:
        settings = load_profile(profile)
        region = settings.storage.region
        if not subnet_ids or not security_group_ids:
            default_subnets, default_groups = infra.default_network(aws_client("ec2", region=region))
            subnet_ids = subnet_ids or default_subnets
            security_group_ids = security_group_ids or default_groups
            echo(f"using the default VPC: subnets {', '.join(subnet_ids)}, security group {', '.join(security_group_ids)}")
        params = infra.stack_parameters(settings, image_uri=image_uri, subnet_ids=subnet_ids, security_group_ids=security_group_ids, project_name=stack_name)
        outputs = infra.deploy(aws_client("cloudformation", region=region), params, stack_name=stack_name, wait=wait, echo=echo)
        account = aws_client("sts", region=region).get_caller_identity()["Account"]
        echo(infra.ensure_budget(
            aws_client("budgets", region="us-east-1"), account_id=account, name=infra.budget_name(stack_name),
            monthly_usd=settings.cost.monthly_budget_usd, email=budget_email,
        ))
    except (infra.InfraError, ProfileError) as err:
        return error(str(err))
    except botocore.exceptions.NoCredentialsError:
        return error("no AWS credentials: run `aws configure` (or set AWS_PROFILE), or point AWS_ENDPOINT_URL at moto")
    for key, value in sorted(outputs.items()):
        echo(f"  {key}: {value}")
    if outputs:
        echo(f"set cloud.aws.bucket to {outputs['BucketName']} in the profile (or export ODINS_RAVNE_BUCKET={outputs['BucketName']})")
    return 0


def infra_status(*, profile: str = "cloud", stack_name: str = "odins-ravne", echo: Echo = print) -> int:
    from resources import infra
    from resources.profiles import load_profile

    region = load_profile(profile).storage.region
    report = infra.status(aws_client("cloudformation", region=region), stack_name=stack_name, batch=aws_client("batch", region=region))
    echo(f"stack {report['stack']}: {report['status']}")
    for key, value in sorted(report.get("outputs", {}).items()):
        echo(f"  {key}: {value}")
    for name, env in report.get("compute_environments", {}).items():
        echo(f"  compute {name}: {env['state']}/{env['status']}, {env['desired_vcpus']} of max {env['max_vcpus']} vCPUs up")
    for queue, counts in report.get("jobs", {}).items():
        echo(f"  queue {queue}: " + (", ".join(f"{n} {state}" for state, n in counts.items()) or "idle"))
    return 0


def infra_teardown(*, profile: str = "cloud", stack_name: str = "odins-ravne", force: bool = False, echo: Echo = print) -> int:
    from resources import infra
    from resources.profiles import load_profile

    region = load_profile(profile).storage.region
    try:
        message = infra.teardown(aws_client("cloudformation", region=region), stack_name=stack_name, batch=aws_client("batch", region=region), force=force, echo=echo)
    except infra.InfraError as err:
        return error(str(err))
    echo(message)
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

    if by not in ("camera_id", "run_id", "stage", "capacity"):
        return error(f"--by {by!r}: use camera_id, run_id, stage or capacity")
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
