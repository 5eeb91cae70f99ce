"""What the GPU stages cost: prices, spend per job, run, camera and image, and a budget guard.

Spend per job is the Batch job's billable seconds (the sum over its attempts: a reclaimed attempt was
paid for too) times the hourly price of its instance type in its capacity (spot or on-demand). This
attributes instance time to jobs; it leaves out the minutes an instance idles before Batch scales it
in, so the AWS bill runs slightly higher than the sum here (the Budgets figure, when reachable,
is the bill).

Prices: the profile's table (the team's eu-north-1 sheet: g4dn.xlarge $0.526/h on-demand, $0.158/h
spot; g4dn.2xlarge $0.752 / $0.226; p3.2xlarge $3.06 / $0.918), with the live spot price from
``describe_spot_price_history`` used instead when it is reachable, recent (within a week) and
plausible (above zero, not above on-demand). A live price that fails those tests is ignored, with
the reason recorded in ``price_source``.

Costs are written as Parquet under ``OUTPUT/costs/camera_id=<id>/`` (schema :data:`COSTS`), so
the Stage 3 database can serve them as a ``costs`` view, and ``odins-ravne cost report`` reads them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from dagster import ConfigurableResource

from gpu_ops import schemas
from gpu_ops.schemas import COSTS, TIMESTAMP
from gpu_ops.settings import HOME_REGION, ON_DEMAND_PRICES, SPOT_PRICES
from resources.aws import aws_client

# Images per hour on one GPU from the team's benchmark sheet; used to project a run before it starts.
DEFAULT_THROUGHPUT = {"g4dn.xlarge": 2000.0, "g4dn.2xlarge": 4000.0, "g4dn.4xlarge": 8000.0, "p3.2xlarge": 8000.0}
LIVE_PRICE_MAX_AGE = dt.timedelta(days=7)


class BudgetExceeded(RuntimeError):
    pass


def check_budget(projected_usd: float, budget_usd: float, spent_usd: float) -> float:
    """Refuse a run whose projected cost exceeds what is left of the monthly budget; returns what is left after it."""
    left = budget_usd - spent_usd
    if projected_usd > left:
        raise BudgetExceeded(
            f"this run would cost about ${projected_usd:,.2f} but only ${max(left, 0):,.2f} of the monthly budget of "
            f"${budget_usd:,.2f} is left (${spent_usd:,.2f} spent). Raise cost.monthly_budget_usd in the profile, "
            "process fewer cameras now, or wait for next month."
        )
    return left - projected_usd


@dataclass(frozen=True)
class Price:
    usd_per_hour: float
    source: str


class PriceBook:
    """Hourly prices per instance type and capacity in one region."""

    def __init__(self, region: str, on_demand: Mapping[str, float], spot: Mapping[str, float], ec2: Any = None, now: dt.datetime | None = None):
        self.region = region
        self.on_demand = dict(on_demand)
        self.spot = dict(spot)
        self._ec2 = ec2
        self._now = now
        self._live: dict[str, Price] = {}

    def price(self, instance_type: str, capacity: str) -> Price:
        if instance_type not in self.on_demand:
            known = ", ".join(sorted(self.on_demand))
            raise KeyError(f"no price for instance type {instance_type!r} in cost.on_demand_prices ({known}): add it to the profile")
        if capacity == "on-demand":
            return Price(self.on_demand[instance_type], "table")
        if capacity != "spot":
            raise ValueError(f"capacity must be 'spot' or 'on-demand', got {capacity!r}")
        if self._ec2 is not None:
            if instance_type not in self._live:
                self._live[instance_type] = self._live_spot(instance_type)
            return self._live[instance_type]
        return self._table_spot(instance_type, "table")

    def _table_spot(self, instance_type: str, source: str) -> Price:
        if instance_type not in self.spot:
            raise KeyError(f"no spot price for {instance_type!r} in cost.spot_prices: add it to the profile")
        return Price(self.spot[instance_type], source)

    def _live_spot(self, instance_type: str) -> Price:
        now = self._now or dt.datetime.now(dt.timezone.utc)
        try:
            history = self._ec2.describe_spot_price_history(
                InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"], StartTime=now - dt.timedelta(hours=6), MaxResults=50
            )["SpotPriceHistory"]
        except Exception as err:  # unreachable or not allowed: the table is the fallback, say why
            return self._table_spot(instance_type, f"table (live unavailable: {type(err).__name__})")
        latest: dict[str, tuple[dt.datetime, float]] = {}
        for entry in history:
            zone, when, price = entry.get("AvailabilityZone", ""), entry["Timestamp"], float(entry["SpotPrice"])
            if zone not in latest or when > latest[zone][0]:
                latest[zone] = (when, price)
        if not latest:
            return self._table_spot(instance_type, "table (live ignored: no history)")
        newest = max(when for when, _ in latest.values())
        if now - newest > LIVE_PRICE_MAX_AGE:
            return self._table_spot(instance_type, f"table (live ignored: newest price from {newest.date()})")
        # The mean over zones: Batch may place the job in any subnet's zone.
        value = sum(p for _, p in latest.values()) / len(latest)
        if not 0 < value <= self.on_demand[instance_type]:
            return self._table_spot(instance_type, f"table (live ignored: implausible ${value:g}/h)")
        return Price(round(value, 6), "live-spot")


def billable_seconds(attempts: Sequence[Mapping], started_at: int | None = None, stopped_at: int | None = None) -> float:
    """Seconds a Batch job was billed: the sum over its attempts (a reclaimed attempt was paid for too).

    Times are Batch's epoch milliseconds; without attempt times, the job's own start and stop.
    """
    spans = [(a.get("startedAt"), a.get("stoppedAt")) for a in attempts or []]
    complete = [(start, stop) for start, stop in spans if start is not None and stop is not None]
    if complete:
        return max(sum(stop - start for start, stop in complete) / 1000, 0.0)
    if started_at is not None and stopped_at is not None:
        return max((stopped_at - started_at) / 1000, 0.0)
    return 0.0


def _ts(ms: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).replace(tzinfo=None) if ms else None


def _as_dict(job: Any) -> dict:
    return job if isinstance(job, Mapping) else dict(vars(job))


def job_costs(
    jobs: Iterable[Any],
    prices: PriceBook,
    *,
    camera_id: str,
    run_id: str,
    stage: str,
    instance_type: str,
    media_per_job: Sequence[int] | None = None,
    now: dt.datetime | None = None,
) -> pa.Table:
    """One ``COSTS`` row per Batch job (``BatchJobRecord`` or its ``asdict``)."""
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(tzinfo=None)
    rows = []
    for index, raw in enumerate(jobs):
        job = _as_dict(raw)
        capacity = job.get("capacity", "spot")
        price = prices.price(instance_type, capacity)
        on_demand = prices.price(instance_type, "on-demand").usd_per_hour
        seconds = billable_seconds(job.get("attempts") or [], job.get("started_at"), job.get("stopped_at"))
        usd = seconds / 3600 * price.usd_per_hour
        on_demand_usd = seconds / 3600 * on_demand
        n_media = int(media_per_job[index]) if media_per_job is not None else 0
        rows.append(
            {
                "camera_id": camera_id,
                "run_id": run_id,
                "stage": stage,
                "job_id": job["job_id"],
                "job_name": job.get("job_name"),
                "queue": job.get("queue"),
                "capacity": capacity,
                "instance_type": instance_type,
                "region": prices.region,
                "price_source": price.source,
                "usd_per_hour": price.usd_per_hour,
                "attempts": len(job.get("attempts") or []),
                "runtime_seconds": round(seconds, 3),
                "usd": round(usd, 6),
                "on_demand_usd": round(on_demand_usd, 6),
                "saving_usd": round(on_demand_usd - usd, 6),
                "n_media": n_media,
                "usd_per_media": round(usd / n_media, 8) if n_media else None,
                "status": job.get("status"),
                "started_at": _ts(job.get("started_at")),
                "stopped_at": _ts(job.get("stopped_at")),
                "recorded_at": now,
            }
        )
    return pa.Table.from_pylist(rows, schema=COSTS)


def summarize(costs: pa.Table | None) -> dict[str, Any]:
    """Totals for asset metadata and the report: spend, saving, per-media cost."""
    if costs is None or costs.num_rows == 0:
        return {"jobs": 0, "usd": 0.0, "on_demand_usd": 0.0, "saving_usd": 0.0, "saving_pct": 0.0, "n_media": 0, "usd_per_media": None, "runtime_hours": 0.0}
    usd = pc.sum(costs["usd"]).as_py() or 0.0
    on_demand = pc.sum(costs["on_demand_usd"]).as_py() or 0.0
    n_media = pc.sum(costs["n_media"]).as_py() or 0
    return {
        "jobs": costs.num_rows,
        "usd": round(usd, 4),
        "on_demand_usd": round(on_demand, 4),
        "saving_usd": round(on_demand - usd, 4),
        "saving_pct": round(100 * (on_demand - usd) / on_demand, 1) if on_demand else 0.0,
        "n_media": int(n_media),
        "usd_per_media": round(usd / n_media, 8) if n_media else None,
        "runtime_hours": round((pc.sum(costs["runtime_seconds"]).as_py() or 0.0) / 3600, 4),
    }


def report_rows(costs: pa.Table | None, by: str = "camera_id") -> list[dict]:
    """Per camera (or per ``run_id``/``stage``) totals, sorted by spend, for ``odins-ravne cost report``."""
    if costs is None or costs.num_rows == 0:
        return []
    groups: dict[str, list[int]] = {}
    for i, value in enumerate(costs[by].to_pylist()):
        groups.setdefault(value, []).append(i)
    rows = [{by: key, **summarize(costs.take(idx))} for key, idx in groups.items()]
    return sorted(rows, key=lambda r: -r["usd"])


def costs_key(camera_id: str, run_id: str, stage: str) -> str:
    return schemas.camera_key("costs", camera_id, f"{run_id}-{stage}.parquet")


def projected_cost(n_media: int, prices: PriceBook, instance_type: str, capacity: str, throughput: Mapping[str, float] | None = None) -> float:
    """What processing ``n_media`` should cost, from the benchmark throughput of the instance type."""
    per_hour = (throughput or DEFAULT_THROUGHPUT).get(instance_type)
    if not per_hour:
        raise KeyError(f"no throughput figure for {instance_type!r}: add it to the throughput table")
    return n_media / per_hour * prices.price(instance_type, capacity).usd_per_hour


class CostResource(ConfigurableResource):
    """Prices, cost records and the budget guard, configured from the profile's ``cost`` section.

    ``budget_name`` names the AWS Budget (the stack creates ``<project>-monthly``); when Budgets
    answers, its actual spend this month is what the guard subtracts, else the ``costs`` table's sum.
    """

    region: str = HOME_REGION
    monthly_budget_usd: float = 1000.0
    on_demand_prices: dict = ON_DEMAND_PRICES
    spot_prices: dict = SPOT_PRICES
    live_spot_prices: bool = True
    budget_name: str | None = "odins-ravne-monthly"
    cloudwatch_metrics: bool = False
    metrics_namespace: str = "OdinsRavne/Processing"

    @classmethod
    def from_profile(cls, profile: Any, **overrides: Any) -> "CostResource":
        cost = profile.cost
        values = dict(
            region=cost.region,
            monthly_budget_usd=cost.monthly_budget_usd,
            on_demand_prices=dict(cost.on_demand_prices),
            spot_prices=dict(cost.spot_prices),
            cloudwatch_metrics=cost.cloudwatch_metrics,
        )
        values.update(overrides)
        return cls(**values)

    def price_book(self) -> PriceBook:
        ec2 = aws_client("ec2", region=self.region) if self.live_spot_prices else None
        return PriceBook(self.region, self.on_demand_prices, self.spot_prices, ec2=ec2)

    def record_jobs(self, output: Any, jobs: Iterable[Any], *, camera_id: str, run_id: str, stage: str, instance_type: str, media_per_job: Sequence[int] | None = None) -> tuple[pa.Table, dict]:
        """Price the jobs, write their rows to ``OUTPUT/costs/camera_id=<id>/``; returns (rows, summary)."""
        table = job_costs(jobs, self.price_book(), camera_id=camera_id, run_id=run_id, stage=stage, instance_type=instance_type, media_per_job=media_per_job)
        if table.num_rows:
            output.write_parquet(costs_key(camera_id, run_id, stage), table)
        summary = summarize(table)
        if self.cloudwatch_metrics and table.num_rows:
            self.put_metrics(camera_id=camera_id, stage=stage, seconds=pc.sum(table["runtime_seconds"]).as_py(), n_media=summary["n_media"], usd=summary["usd"])
        return table, summary

    def read_costs(self, output: Any) -> pa.Table | None:
        return output.read_parquet("costs")

    def spent_this_month(self, output: Any = None, *, budgets: Any = None, account_id: str | None = None) -> tuple[float, str]:
        """(USD spent this month, where the figure came from): the AWS Budget if reachable, else our records."""
        if self.budget_name:
            try:
                budgets = budgets or aws_client("budgets", region="us-east-1")  # Budgets is a global API
                account_id = account_id or aws_client("sts", region=self.region).get_caller_identity()["Account"]
                budget = budgets.describe_budget(AccountId=account_id, BudgetName=self.budget_name)["Budget"]
                actual = budget.get("CalculatedSpend", {}).get("ActualSpend", {}).get("Amount")
                if actual is not None:
                    return float(actual), f"AWS Budget {self.budget_name}"
            except Exception:  # no Budgets access here: fall through to our own records
                pass
        costs = self.read_costs(output) if output is not None else None
        if costs is None or costs.num_rows == 0:
            return 0.0, "costs table (empty)"
        month_start = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, day=1, hour=0, minute=0, second=0, microsecond=0)
        this_month = costs.filter(pc.greater_equal(costs["recorded_at"], pa.scalar(month_start, TIMESTAMP)))
        return float(pc.sum(this_month["usd"]).as_py() or 0.0), "costs table"

    def guard(self, output: Any, *, n_media: int, instance_type: str, capacity: str = "spot", **spent_kwargs: Any) -> dict:
        """Project a run's cost and refuse it (:class:`BudgetExceeded`) when the budget cannot cover it."""
        projected = projected_cost(n_media, self.price_book(), instance_type, capacity)
        spent, source = self.spent_this_month(output, **spent_kwargs)
        left_after = check_budget(projected, self.monthly_budget_usd, spent)
        return {"projected_usd": round(projected, 4), "spent_usd": round(spent, 4), "spent_source": source, "budget_left_after_usd": round(left_after, 4)}

    def put_metrics(self, *, camera_id: str, stage: str, seconds: float, n_media: int, usd: float, cloudwatch: Any = None) -> None:
        cloudwatch = cloudwatch or aws_client("cloudwatch", region=self.region)
        dims = [{"Name": "camera_id", "Value": camera_id}, {"Name": "stage", "Value": stage}]
        cloudwatch.put_metric_data(
            Namespace=self.metrics_namespace,
            MetricData=[
                {"MetricName": "ProcessingTime", "Dimensions": dims, "Value": float(seconds), "Unit": "Seconds"},
                {"MetricName": "MediaProcessed", "Dimensions": dims, "Value": float(n_media), "Unit": "Count"},
                {"MetricName": "ProcessingCost", "Dimensions": dims, "Value": float(usd), "Unit": "None"},
            ],
        )
