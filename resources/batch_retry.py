"""How AWS Batch treats a job's attempts: the retry strategy we deploy and how Batch evaluates it.

Spot reclaims are retried by Batch itself (the job definition's ``retryStrategy``); a failure of our
own code is not, because it fails the same way on every attempt and a retry only burns GPU hours.
The infrastructure stack deploys :func:`retry_strategy_from_profile`; the local Batch stand-in
(:mod:`resources.batch_local`) applies :func:`evaluate_on_exit` the way Batch does.

This module does not import Dagster.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

# A job in one of these statuses will not change again.
FINAL_STATUSES = ("SUCCEEDED", "FAILED")
# AWS writes this status reason when the EC2 instance under a job goes away: a spot reclaim.
SPOT_RECLAIM_REASON = "Host EC2*"


def retry_strategy(attempts: int = 3, *, retry_on_status_reasons: Sequence[str] = (SPOT_RECLAIM_REASON,)) -> dict:
    """The Batch ``retryStrategy``: RETRY when the host went away (spot reclaim), EXIT on anything else."""
    if not 1 <= attempts <= 10:
        raise ValueError(f"retry attempts must be between 1 and 10 (the Batch limit), got {attempts}")
    rules = [{"onStatusReason": reason, "action": "RETRY"} for reason in retry_on_status_reasons]
    rules.append({"onReason": "*", "action": "EXIT"})
    return {"attempts": attempts, "evaluateOnExit": rules}


def retry_strategy_from_profile(profile: Any) -> dict:
    """Retry strategy for a profile: more attempts when spot is on (reclaims happen), one otherwise."""
    compute = profile.cloud.aws.compute
    return retry_strategy(3 if compute.spot_instances else 1)


def _glob_match(pattern: str | None, value: str | None) -> bool:
    # Batch patterns are literal text with an optional trailing '*' (prefix match).
    if pattern is None:
        return True
    value = value or ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def evaluate_on_exit(strategy: Mapping | None, *, status_reason: str | None, reason: str | None, exit_code: int | None) -> str:
    """What Batch does after a failed attempt: ``"RETRY"`` or ``"EXIT"`` (attempt limits aside).

    The first rule whose every condition matches decides; when none matches Batch retries.
    """
    rules = (strategy or {}).get("evaluateOnExit") or []
    for rule in rules:
        if (
            _glob_match(rule.get("onStatusReason"), status_reason)
            and _glob_match(rule.get("onReason"), reason)
            and _glob_match(rule.get("onExitCode"), None if exit_code is None else str(exit_code))
        ):
            return str(rule["action"]).upper()
    return "RETRY"
