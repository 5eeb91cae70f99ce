"""Infrastructure lifecycle: deploy, inspect and tear down the Batch stack (``infra/cloudformation.yaml``).

Batch work here is batch-shaped: set the stack up when a season's media arrive, let the compute
environments scale from zero while jobs run, tear the compute down when done. ``teardown`` keeps the
data bucket (the template retains it): results outlive the machines that made them.

Parameters come from the profile (instance types, vCPU bounds, spot bid, retry attempts, job size,
and the budget), so the stack and the client that submits to it agree. The monthly budget is made through the
Budgets API (:func:`ensure_budget`) because CloudFormation lacks it in eu-north-1. Every call goes through boto3 and
honours ``AWS_ENDPOINT_URL``. This module does not import Dagster.

Regions (:func:`regions_for`): one stack per region, all from one profile (``--region``, else the profile's
``cloud.aws.regions``, else ``storage.region``). Decision: regional names (stack, queues, job definition, SQS,
SNS, alarms) are the same in every region, so one profile's ``cloud.aws`` names hold everywhere; what lives in
a global namespace carries the region (the bucket ``<project>-<account>-<region>``, the dashboard
``<project>-<region>``); every stack is tagged ``odins-ravne/region``. The budget is one per account: AWS
Budgets measures the account's spend, whatever the region.

Monitoring (:func:`ensure_monitoring`): the region's dashboard (jobs by status, images processed, GPU hours,
spend against the budget) and two alarms (a failed job; this month's spend over ``BUDGET_ALARM_PERCENT`` of
the budget), put through the CloudWatch API by ``deploy`` as the budget is, and removed by ``teardown``.
Decision: not in the template, so the names they read come from :mod:`resources.cost`, which puts the
metrics, in one place; and moto's CloudFormation has no ``AWS::CloudWatch::Alarm``, so the path the tests
run is the one AWS gets. They notify the stack's ``AlarmTopic`` (SNS, with ``--budget-email`` subscribed).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import botocore.exceptions

from resources.batch_retry import retry_strategy_from_profile
from resources.cost import METRIC_GPU_SECONDS, METRIC_JOBS, METRIC_MEDIA, METRIC_SPEND_THIS_MONTH, METRIC_USD, METRICS_NAMESPACE

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "infra" / "cloudformation.yaml"
DEFAULT_STACK = "odins-ravne"
_FAILED = ("CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_FAILED")
_ACTIVE_JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
_QUEUE_OUTPUTS = ("JobQueue", "OnDemandJobQueue", "HighPriorityJobQueue")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
REGION_TAG = "odins-ravne/region"
BUDGET_ALARM_PERCENT = 80.0  # as the Budget's own e-mail at 80 % of actual spend


class InfraError(RuntimeError):
    pass


def template_body() -> str:
    if not TEMPLATE_PATH.exists():
        raise InfraError(f"{TEMPLATE_PATH} is missing: run the infra commands from a checkout of the repository")
    return TEMPLATE_PATH.read_text()


def stack_parameters(
    profile: Any,
    *,
    image_uri: str,
    subnet_ids: Sequence[str],
    security_group_ids: Sequence[str],
    project_name: str = DEFAULT_STACK,
    alarm_email: str = "",
) -> dict[str, str]:
    """CloudFormation parameters from a profile plus what only the account knows (image, network, who hears alarms)."""
    if not subnet_ids or not security_group_ids:
        raise InfraError("deploy needs --subnet (at least one) and --security-group (at least one) of the account's VPC")
    compute = profile.cloud.aws.compute
    return {
        "ProjectName": project_name,
        "ImageUri": image_uri,
        "SubnetIds": ",".join(subnet_ids),
        "SecurityGroupIds": ",".join(security_group_ids),
        "InstanceTypes": ",".join(compute.instance_types),
        "MaxVcpus": str(compute.max_vcpus),
        "SpotBidPercentage": str(compute.bid_percentage),
        "JobVcpus": str(compute.vcpu),
        "JobMemoryMiB": str(compute.memory),
        "JobGpus": str(compute.gpu_count),
        "RetryAttempts": str(retry_strategy_from_profile(profile)["attempts"]),
        "AlarmEmail": alarm_email,
    }


def regions_for(profile: Any, requested: Sequence[str] = ()) -> list[str]:
    """The regions an infra command acts on: ``requested`` (``--region``), else ``cloud.aws.regions``, else ``storage.region``."""
    regions = list(dict.fromkeys(requested or profile.cloud.aws.regions or [profile.storage.region]))
    for region in regions:
        if not isinstance(region, str) or not _REGION.match(region):
            raise InfraError(f"region {region!r} is not an AWS region name: use one like eu-north-1 (--region or cloud.aws.regions)")
    return regions


def budget_name(project_name: str = DEFAULT_STACK) -> str:
    return f"{project_name}-monthly"


def ensure_budget(budgets: Any, *, account_id: str, name: str, monthly_usd: float, email: str = "") -> str:
    """Create the monthly cost budget, or set its limit when it exists; returns what was done.

    Through the Budgets API rather than the stack: CloudFormation has no AWS::Budgets::Budget in
    eu-north-1. Budgets is global, so the client's region does not matter. With ``email``, a new
    budget tells that address at 80 % of actual and 100 % of forecast spend.
    """
    budget = {
        "BudgetName": name,
        "BudgetLimit": {"Amount": f"{monthly_usd:.2f}", "Unit": "USD"},
        "TimeUnit": "MONTHLY",
        "BudgetType": "COST",
    }
    try:
        budgets.describe_budget(AccountId=account_id, BudgetName=name)
    except budgets.exceptions.NotFoundException:
        notifications = []
        if email:
            for kind, threshold in (("ACTUAL", 80.0), ("FORECASTED", 100.0)):
                notifications.append(
                    {
                        "Notification": {"NotificationType": kind, "ComparisonOperator": "GREATER_THAN", "Threshold": threshold, "ThresholdType": "PERCENTAGE"},
                        "Subscribers": [{"SubscriptionType": "EMAIL", "Address": email}],
                    }
                )
        budgets.create_budget(AccountId=account_id, Budget=budget, NotificationsWithSubscribers=notifications)
        return f"budget {name} created: ${monthly_usd:,.2f} a month" + (f", alerts to {email}" if email else "")
    try:
        budgets.update_budget(AccountId=account_id, NewBudget=budget)
    except botocore.exceptions.ClientError as err:
        # The stack is up by now; a budget that cannot be changed is worth a warning, not a failed deploy.
        return f"warning: budget {name} exists but its limit could not be set to ${monthly_usd:,.2f}: {err}"
    return f"budget {name} set to ${monthly_usd:,.2f} a month"


def default_network(ec2: Any) -> tuple[list[str], list[str]]:
    """Subnets and the default security group of the region's default VPC, when no network is given.

    Fine for a first try (and what moto provides); production should pass private subnets.
    """
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise InfraError("this region has no default VPC: pass --subnet and --security-group of the VPC to run the GPU instances in")
    vpc = vpcs[0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    if not subnets or not groups:
        raise InfraError(f"default VPC {vpc} has no subnets or no default security group: pass --subnet and --security-group")
    return sorted(subnets), [groups[0]["GroupId"]]


def deploy(
    cfn: Any,
    parameters: Mapping[str, str],
    *,
    stack_name: str = DEFAULT_STACK,
    wait: bool = True,
    poll_seconds: float = 10.0,
    timeout_seconds: float = 3600.0,
    echo: Callable[[str], None] = print,
) -> dict[str, str]:
    """Create the stack, or update it when it exists; returns its outputs."""
    kwargs = dict(
        StackName=stack_name,
        TemplateBody=template_body(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
        Tags=[{"Key": "project", "Value": parameters.get("ProjectName", DEFAULT_STACK)}, {"Key": REGION_TAG, "Value": cfn.meta.region_name}],
    )
    existing = _stack(cfn, stack_name)
    if existing is not None and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        raise InfraError(
            f"stack {stack_name} is in ROLLBACK_COMPLETE (its creation failed) and cannot be updated: "
            "run `odins-ravne infra teardown` and deploy again"
        )
    if existing is None:
        echo(f"creating stack {stack_name}")
        cfn.create_stack(**kwargs, OnFailure="ROLLBACK")
    else:
        echo(f"updating stack {stack_name}")
        try:
            cfn.update_stack(**kwargs)
        except botocore.exceptions.ClientError as err:
            if "No updates are to be performed" not in str(err):
                raise
            echo("stack is already up to date")
            return _outputs(_stack(cfn, stack_name))
    if not wait:
        return {}
    stack = _wait(cfn, stack_name, poll_seconds, timeout_seconds, echo)
    if stack["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise InfraError(f"stack {stack_name} ended {stack['StackStatus']}:\n{_failure_events(cfn, stack_name)}")
    return _outputs(stack)


def status(cfn: Any, *, stack_name: str = DEFAULT_STACK, batch: Any = None, cloudwatch: Any = None) -> dict[str, Any]:
    """Stack state and outputs in the client's region, and (with a Batch client) how much compute is up and
    what is queued, (with a CloudWatch client) the dashboard and each alarm's state."""
    region = cfn.meta.region_name
    stack = _stack(cfn, stack_name)
    if stack is None:
        return {"stack": stack_name, "region": region, "status": "NOT_DEPLOYED"}
    outputs = _outputs(stack)
    report: dict[str, Any] = {"stack": stack_name, "region": region, "status": stack["StackStatus"], "outputs": outputs}
    if cloudwatch is not None:
        names = list(alarm_names(stack_name).values())
        report["alarms"] = {a["AlarmName"]: a["StateValue"] for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]}
        dashboards = cloudwatch.list_dashboards(DashboardNamePrefix=dashboard_name(stack_name, region))["DashboardEntries"]
        report["dashboard"] = dashboard_url(stack_name, region) if dashboards else None
    if batch is not None and stack["StackStatus"].endswith("_COMPLETE"):
        environments = [outputs[k] for k in ("SpotComputeEnvironment", "OnDemandComputeEnvironment") if k in outputs]
        if environments:
            described = batch.describe_compute_environments(computeEnvironments=environments)["computeEnvironments"]
            report["compute_environments"] = {
                e["computeEnvironmentName"]: {
                    "state": e.get("state"),
                    "status": e.get("status"),
                    "desired_vcpus": (e.get("computeResources") or {}).get("desiredvCpus"),
                    "max_vcpus": (e.get("computeResources") or {}).get("maxvCpus"),
                }
                for e in described
            }
        report["jobs"] = {outputs[k]: _job_counts(batch, outputs[k]) for k in _QUEUE_OUTPUTS if k in outputs}
    return report


def teardown(
    cfn: Any,
    *,
    stack_name: str = DEFAULT_STACK,
    batch: Any = None,
    cloudwatch: Any = None,
    force: bool = False,
    wait: bool = True,
    poll_seconds: float = 10.0,
    timeout_seconds: float = 3600.0,
    echo: Callable[[str], None] = print,
) -> str:
    """Delete the stack (the bucket stays) and, with a CloudWatch client, its dashboard and alarms.
    Refuses while jobs are queued or running unless ``force``."""
    stack = _stack(cfn, stack_name)
    if stack is None:
        return f"stack {stack_name} is not deployed: nothing to tear down"
    if batch is not None and not force:
        outputs = _outputs(stack)
        busy = {outputs[k]: n for k in _QUEUE_OUTPUTS if k in outputs for n in [sum(_job_counts(batch, outputs[k]).values())] if n}
        if busy:
            raise InfraError(
                f"jobs are still queued or running ({busy}): wait for them, or tear down with --force "
                "(their work so far is checkpointed and a re-run resumes it)"
            )
    bucket = _outputs(stack).get("BucketName")
    echo(f"deleting stack {stack_name}")
    cfn.delete_stack(StackName=stack_name)
    if wait:
        final = _wait(cfn, stack_name, poll_seconds, timeout_seconds, echo)
        if final is not None and final["StackStatus"] != "DELETE_COMPLETE":
            raise InfraError(f"stack {stack_name} ended {final['StackStatus']}:\n{_failure_events(cfn, stack_name)}")
    if cloudwatch is not None:
        remove_monitoring(cloudwatch, stack_name=stack_name)
    kept = f"; bucket {bucket} is kept with its data" if bucket else ""
    return f"stack {stack_name} deleted{kept}; budget {budget_name(stack_name)} stays (delete them yourself when no longer needed)"


# -- monitoring -------------------------------------------------------------------------------------
def dashboard_name(stack_name: str, region: str) -> str:
    return f"{stack_name}-{region}"  # dashboards share one namespace across an account's regions


def dashboard_url(stack_name: str, region: str) -> str:
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards:name={dashboard_name(stack_name, region)}"


def alarm_names(stack_name: str) -> dict[str, str]:
    return {"failed_jobs": f"{stack_name}-failed-jobs", "budget": f"{stack_name}-budget"}


def dashboard_body(region: str, monthly_budget_usd: float, namespace: str = METRICS_NAMESPACE) -> dict:
    """The dashboard: jobs by status, images processed (Stage 1's media), GPU hours, spend against the budget.

    The per-camera metrics are summed with SEARCH, so a new camera needs no change here.
    """

    def total(metric: str, where: str = "") -> str:
        return f"SUM(SEARCH('{{{namespace},camera_id,stage}} MetricName=\"{metric}\"{where}', 'Sum', 3600))"

    def widget(x: int, y: int, title: str, metrics: list, **extra: Any) -> dict:
        properties = {"title": title, "region": region, "view": "timeSeries", "period": 3600, "stat": "Sum", "metrics": metrics, **extra}
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": properties}

    alarm_at = monthly_budget_usd * BUDGET_ALARM_PERCENT / 100
    return {
        "widgets": [
            widget(0, 0, "Batch jobs by status (per hour)", [
                [namespace, METRIC_JOBS, "status", "SUCCEEDED", {"label": "succeeded", "color": "#2ca02c"}],
                [namespace, METRIC_JOBS, "status", "FAILED", {"label": "failed", "color": "#d62728"}],
            ], stacked=True),
            widget(12, 0, "Images processed (Stage 1, per hour)", [[{"expression": total(METRIC_MEDIA, ' stage=\"detect\"'), "label": "images", "id": "images"}]]),
            widget(0, 6, "GPU hours (per hour)", [
                [{"expression": f"{total(METRIC_GPU_SECONDS)} / 3600", "label": "GPU hours", "id": "gpu_hours"}],
                [{"expression": total(METRIC_USD), "label": "USD", "id": "usd", "yAxis": "right"}],
            ]),
            widget(12, 6, "Spend this month against the budget (USD)", [[namespace, METRIC_SPEND_THIS_MONTH, {"stat": "Maximum", "label": "spent this month"}]],
                   annotations={"horizontal": [
                       {"label": "monthly budget", "value": monthly_budget_usd, "color": "#d62728"},
                       {"label": f"alarm at {BUDGET_ALARM_PERCENT:.0f}%", "value": alarm_at, "color": "#ff7f0e"},
                   ]}, yAxis={"left": {"min": 0}}),
        ]
    }


def ensure_monitoring(
    cloudwatch: Any, *, stack_name: str, monthly_budget_usd: float, alarm_topic_arn: str | None = None, namespace: str = METRICS_NAMESPACE
) -> str:
    """Put the region's dashboard and alarms (both calls create or replace); returns what was done."""
    region = cloudwatch.meta.region_name
    cloudwatch.put_dashboard(DashboardName=dashboard_name(stack_name, region), DashboardBody=json.dumps(dashboard_body(region, monthly_budget_usd, namespace)))
    actions = {"AlarmActions": [alarm_topic_arn], "OKActions": [alarm_topic_arn]} if alarm_topic_arn else {}
    names = alarm_names(stack_name)
    common = dict(Namespace=namespace, EvaluationPeriods=1, ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching", **actions)
    cloudwatch.put_metric_alarm(
        AlarmName=names["failed_jobs"], AlarmDescription="A GPU stage's Batch job failed: see the Dagster run's log and odins-ravne infra status",
        MetricName=METRIC_JOBS, Dimensions=[{"Name": "status", "Value": "FAILED"}], Statistic="Sum", Period=300, Threshold=1.0, **common,
    )
    threshold = round(monthly_budget_usd * BUDGET_ALARM_PERCENT / 100, 2)
    cloudwatch.put_metric_alarm(
        AlarmName=names["budget"],
        AlarmDescription=f"This month's spend passed {BUDGET_ALARM_PERCENT:.0f}% of the ${monthly_budget_usd:,.2f} budget (cost.monthly_budget_usd)",
        MetricName=METRIC_SPEND_THIS_MONTH, Statistic="Maximum", Period=3600, Threshold=threshold, **common,
    )
    notified = f", notifying {alarm_topic_arn}" if alarm_topic_arn else " (no alarm topic: they notify no one)"
    return f"dashboard {dashboard_name(stack_name, region)} and alarms {', '.join(names.values())} (budget at ${threshold:,.2f}) put{notified}"


def remove_monitoring(cloudwatch: Any, *, stack_name: str) -> None:
    cloudwatch.delete_alarms(AlarmNames=list(alarm_names(stack_name).values()))
    try:
        cloudwatch.delete_dashboards(DashboardNames=[dashboard_name(stack_name, cloudwatch.meta.region_name)])
    except botocore.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("ResourceNotFound", "DashboardNotFoundError"):
            raise


# -- helpers --------------------------------------------------------------------------------------
def _stack(cfn: Any, name: str) -> dict | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except botocore.exceptions.ClientError as err:
        if "does not exist" in str(err):
            return None
        raise
    return stacks[0] if stacks and stacks[0]["StackStatus"] != "DELETE_COMPLETE" else None


def _outputs(stack: Mapping | None) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in (stack or {}).get("Outputs", [])}


def _wait(cfn: Any, name: str, poll: float, timeout: float, echo: Callable[[str], None]) -> dict | None:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        stack = _stack(cfn, name)
        if stack is None:
            return None  # deleted
        state = stack["StackStatus"]
        if state != last:
            echo(f"  {name}: {state}")
            last = state
        if not state.endswith("_IN_PROGRESS"):
            return stack
        if time.monotonic() > deadline:
            raise InfraError(f"stack {name} still {state} after {timeout:.0f}s; see the CloudFormation console")
        time.sleep(poll)


def _failure_events(cfn: Any, name: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    except botocore.exceptions.ClientError:
        return "(no stack events available)"
    failed = [e for e in events if str(e.get("ResourceStatus", "")).endswith("FAILED")]
    return "\n".join(f"  {e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in failed[:10]) or "(no failed resources reported)"


def _job_counts(batch: Any, queue: str) -> dict[str, int]:
    counts = {}
    for state in _ACTIVE_JOB_STATES:
        try:
            jobs = batch.list_jobs(jobQueue=queue, jobStatus=state).get("jobSummaryList", [])
        except botocore.exceptions.ClientError:
            return {}
        if jobs:
            counts[state] = len(jobs)
    return counts
