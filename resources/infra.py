"""Infrastructure lifecycle: deploy, inspect and tear down the Batch stack (``infra/cloudformation.yaml``).

Batch work here is batch-shaped: set the stack up when a season's media arrive, let the compute
environments scale from zero while jobs run, tear the compute down when done. ``teardown`` keeps the
data bucket (the template retains it): results outlive the machines that made them.

Parameters come from the profile (instance types, vCPU bounds, spot bid, retry attempts, job size,
and the budget), so the stack and the client that submits to it agree. The monthly budget is made through the
Budgets API (:func:`ensure_budget`) because CloudFormation lacks it in eu-north-1. Every call goes through boto3 and
honours ``AWS_ENDPOINT_URL``. This module does not import Dagster.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import botocore.exceptions

from resources.batch_retry import retry_strategy_from_profile

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "infra" / "cloudformation.yaml"
DEFAULT_STACK = "odins-ravne"
_FAILED = ("CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_FAILED")
_ACTIVE_JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


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
) -> dict[str, str]:
    """CloudFormation parameters from a profile plus what only the account knows (image, network)."""
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
    }


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
        Tags=[{"Key": "project", "Value": parameters.get("ProjectName", DEFAULT_STACK)}],
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


def status(cfn: Any, *, stack_name: str = DEFAULT_STACK, batch: Any = None) -> dict[str, Any]:
    """Stack state and outputs, and (with a Batch client) how much compute is up and what is queued."""
    stack = _stack(cfn, stack_name)
    if stack is None:
        return {"stack": stack_name, "status": "NOT_DEPLOYED"}
    outputs = _outputs(stack)
    report: dict[str, Any] = {"stack": stack_name, "status": stack["StackStatus"], "outputs": outputs}
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
        report["jobs"] = {q: _job_counts(batch, q) for q in (outputs.get("JobQueue"), outputs.get("OnDemandJobQueue")) if q}
    return report


def teardown(
    cfn: Any,
    *,
    stack_name: str = DEFAULT_STACK,
    batch: Any = None,
    force: bool = False,
    wait: bool = True,
    poll_seconds: float = 10.0,
    timeout_seconds: float = 3600.0,
    echo: Callable[[str], None] = print,
) -> str:
    """Delete the stack (the bucket stays). Refuses while jobs are queued or running unless ``force``."""
    stack = _stack(cfn, stack_name)
    if stack is None:
        return f"stack {stack_name} is not deployed: nothing to tear down"
    if batch is not None and not force:
        outputs = _outputs(stack)
        busy = {q: n for q in (outputs.get("JobQueue"), outputs.get("OnDemandJobQueue")) if q for n in [sum(_job_counts(batch, q).values())] if n}
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
    kept = f"; bucket {bucket} is kept with its data" if bucket else ""
    return f"stack {stack_name} deleted{kept}; budget {budget_name(stack_name)} stays (delete them yourself when no longer needed)"


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
