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
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import botocore.exceptions
import pyarrow as pa
import pyarrow.compute as pc
from dagster import ConfigurableResource

from gpu_ops import schemas
from gpu_ops.schemas import COSTS, TIMESTAMP
from gpu_ops.settings import HOME_REGION, ON_DEMAND_PRICES, SPOT_PRICES
from resources.aws import aws_client

# Images per hour on one GPU from the team's benchmark sheet; used to project a run before it starts.
DEFAULT_THROUGHPUT = {"g4dn.xlarge": 2000.0, "g4dn.2xlarge": 4000.0, "g4dn.4xlarge": 8000.0, "p3.2xlarge": 8000.0}
# A job whose cold start is more than this share of its time pays mostly for starting: bigger jobs.
COLD_START_SHARE_HIGH = 0.25
COLD_START_SHARE_TARGET = 0.10
LIVE_PRICE_MAX_AGE = dt.timedelta(days=7)

# What :meth:`CostResource.put_metrics` puts, by the names the stack's dashboard and alarms read
# (resources.infra builds both from these, so the two cannot drift apart).
METRICS_NAMESPACE = "OdinsRavne/Processing"
METRIC_GPU_SECONDS = "ProcessingTime"  # billable instance seconds; per camera_id and stage
METRIC_MEDIA = "MediaProcessed"  # per camera_id and stage
METRIC_USD = "ProcessingCost"  # per camera_id and stage
METRIC_JOBS = "Jobs"  # Batch jobs that ended, per status (SUCCEEDED | FAILED)
METRIC_SPEND_THIS_MONTH = "SpendThisMonth"  # USD spent this month, as the budget guard sees it


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
    run_id: str,
    stage: str,
    instance_type: str,
    camera_id: str | None = None,
    media_per_job: Sequence[int] | None = None,
    shares: Sequence[Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
    sizing: str | None = None,
    priority: str = "normal",
    now: dt.datetime | None = None,
) -> pa.Table:
    """``COSTS`` rows of Batch jobs (``BatchJobRecord`` or its ``asdict``): one per job and camera.

    The jobs of one camera give ``camera_id`` and ``media_per_job``; otherwise ``shares[i]`` is job
    i's ``{"media": {camera_id: n_media}, "cold_start_seconds": s}``. A packed job (several cameras)
    is split over its cameras by their media (evenly when none processed any), so per-camera sums
    still add up to the bill.
    """
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(tzinfo=None)
    jobs = list(jobs)
    if shares is None:
        counts = media_per_job if media_per_job is not None else [0] * len(jobs)
        shares = [{"media": {camera_id: int(n)}} for n in counts]
    rows = []
    for raw, share in zip(jobs, shares):
        job = _as_dict(raw)
        capacity = job.get("capacity", "spot")
        price = prices.price(instance_type, capacity)
        on_demand = prices.price(instance_type, "on-demand").usd_per_hour
        seconds = billable_seconds(job.get("attempts") or [], job.get("started_at"), job.get("stopped_at"))
        media = dict(share["media"])
        total = sum(media.values())
        cold = share.get("cold_start_seconds")
        for camera_id, n_media in media.items():
            part = n_media / total if total else 1 / len(media)
            usd = seconds * part / 3600 * price.usd_per_hour
            on_demand_usd = seconds * part / 3600 * on_demand
            rows.append(
                {
                    "camera_id": camera_id,
                    "run_id": run_id,
                    "stage": stage,
                    "job_id": job["job_id"],
                    "job_name": job.get("job_name"),
                    "queue": job.get("queue"),
                    "capacity": capacity,
                    "priority": priority,
                    "instance_type": instance_type,
                    "region": prices.region,
                    "price_source": price.source,
                    "usd_per_hour": price.usd_per_hour,
                    "attempts": len(job.get("attempts") or []),
                    "runtime_seconds": round(seconds * part, 3),
                    "usd": round(usd, 9),
                    "on_demand_usd": round(on_demand_usd, 9),
                    "saving_usd": round(on_demand_usd - usd, 9),
                    "n_media": n_media,
                    "usd_per_media": usd / n_media if n_media else None,
                    "batch_size": batch_size,
                    "sizing": sizing,
                    "cold_start_seconds": round(cold * part, 3) if cold is not None else None,
                    "cameras": len(media),
                    "status": job.get("status"),
                    "started_at": _ts(job.get("started_at")),
                    "stopped_at": _ts(job.get("stopped_at")),
                    "recorded_at": now,
                }
            )
    return pa.Table.from_pylist(rows, schema=COSTS)


def with_costs_schema(costs: pa.Table) -> pa.Table:
    """``costs`` with every ``COSTS`` column, in order: rows written before a column existed read it as null."""
    columns = [costs[name] if name in costs.column_names else pa.nulls(costs.num_rows, field.type) for name, field in zip(COSTS.names, COSTS)]
    return pa.Table.from_arrays([c.cast(f.type) for c, f in zip(columns, COSTS)], schema=COSTS)


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
        "usd_per_media": usd / n_media if n_media else None,
        "runtime_hours": round((pc.sum(costs["runtime_seconds"]).as_py() or 0.0) / 3600, 4),
    }


def report_rows(costs: pa.Table | None, by: str = "camera_id") -> list[dict]:
    """Per camera (or per ``run_id``/``stage``/``capacity``/``priority``) totals, sorted by spend, for ``odins-ravne cost report``."""
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


def measured_usd_per_media(costs: pa.Table | None, instance_type: str | None = None, capacity: str | None = None) -> tuple[float, int] | None:
    """(USD per image, images it was measured on) from Stage 1 jobs that succeeded, or None without any.

    Decision: Stage 1 only (the guard guards Stage 1's media, and Stage 2 counts crops, not images);
    narrowed to ``instance_type`` and ``capacity`` when given, since the price per hour differs.
    """
    if costs is None or costs.num_rows == 0:
        return None
    rows = [
        r for r in costs.select(["stage", "status", "instance_type", "capacity", "usd", "n_media"]).to_pylist()
        if r["stage"] == "detect" and r["status"] == "SUCCEEDED" and (r["n_media"] or 0) > 0
        and (instance_type is None or r["instance_type"] == instance_type) and (capacity is None or r["capacity"] == capacity)
    ]
    n_media = sum(r["n_media"] for r in rows)
    return (sum(r["usd"] for r in rows) / n_media, n_media) if n_media else None


def usd(amount: float | None) -> str:
    """Dollars with three significant digits however small (``$0.0000105``), cents once above a dollar."""
    if amount is None:
        return ""
    if amount == 0 or abs(amount) >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.{max(2, 2 - math.floor(math.log10(abs(amount))))}f}"


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
    metrics_namespace: str = METRICS_NAMESPACE

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

    def price_book(self, region: str | None = None) -> PriceBook:
        """Prices in ``region`` (where the jobs ran; default ``cost.region``): live spot prices are regional."""
        region = region or self.region
        ec2 = aws_client("ec2", region=region) if self.live_spot_prices else None
        return PriceBook(region, self.on_demand_prices, self.spot_prices, ec2=ec2)

    def record_jobs(
        self,
        output: Any,
        jobs: Sequence[Any],
        *,
        run_id: str,
        stage: str,
        instance_type: str,
        camera_id: str | None = None,
        media_per_job: Sequence[int] | None = None,
        shares: Sequence[Mapping[str, Any]] | None = None,
        batch_size: int | None = None,
        sizing: str | None = None,
        priority: str = "normal",
        region: str | None = None,
    ) -> tuple[pa.Table, dict]:
        """Price the jobs, write their rows to ``OUTPUT/costs/camera_id=<id>/``; returns (rows, summary).

        The jobs of one camera give ``camera_id`` and ``media_per_job``; packed jobs give ``shares``
        (see :func:`job_costs`). ``region`` is where they ran: their prices and metrics are that region's.
        A metric CloudWatch refused is in the summary's ``metrics_error``: the costs are written all the same.
        """
        table = job_costs(
            jobs, self.price_book(region), run_id=run_id, stage=stage, instance_type=instance_type, camera_id=camera_id,
            media_per_job=media_per_job, shares=shares, batch_size=batch_size, sizing=sizing, priority=priority,
        )
        metrics_error = None
        for camera in dict.fromkeys(table["camera_id"].to_pylist()):
            rows = table.filter(pc.equal(table["camera_id"], camera))
            output.write_parquet(costs_key(camera, run_id, stage), rows)
            if self.cloudwatch_metrics and not metrics_error:
                mine = summarize(rows)
                metrics_error = self._try_metrics(
                    camera_id=camera, stage=stage, seconds=pc.sum(rows["runtime_seconds"]).as_py(), n_media=mine["n_media"], usd=mine["usd"], region=region
                )
        summary = summarize(table)
        if self.cloudwatch_metrics and table.num_rows and not metrics_error:
            statuses = dict(zip(table["job_id"].to_pylist(), table["status"].to_pylist()))  # a packed job has a row per camera
            jobs_by_status = {status: list(statuses.values()).count(status) for status in set(statuses.values()) if status}
            metrics_error = self._try_metrics(jobs_by_status=jobs_by_status, spent_this_month=self.spent_this_month(output)[0], region=region)
        if metrics_error:
            summary["metrics_error"] = metrics_error
        return table, summary

    def _try_metrics(self, **values: Any) -> str | None:
        try:
            self.put_metrics(**values)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
            return f"CloudWatch metrics not put: {err}"
        return None

    def read_costs(self, output: Any) -> pa.Table | None:
        costs = output.read_parquet("costs")
        return with_costs_schema(costs) if costs is not None else None

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

    def guard(self, output: Any, *, n_media: int, instance_type: str, capacity: str = "spot", region: str | None = None, **spent_kwargs: Any) -> dict:
        """Project a run's cost (at ``region``'s prices) and refuse it (:class:`BudgetExceeded`) when the budget cannot cover it."""
        measured = measured_usd_per_media(self.read_costs(output), instance_type, capacity)
        if measured:
            projected, projection = n_media * measured[0], f"measured {usd(measured[0])}/image over {measured[1]} images"
        else:
            projected, projection = projected_cost(n_media, self.price_book(region), instance_type, capacity), "throughput table"
        spent, source = self.spent_this_month(output, **spent_kwargs)
        left_after = check_budget(projected, self.monthly_budget_usd, spent)
        return {
            "projected_usd": round(projected, 4), "projection": projection, "spent_usd": round(spent, 4), "spent_source": source,
            "budget_left_after_usd": round(left_after, 4),
        }

    def put_metrics(
        self,
        *,
        camera_id: str | None = None,
        stage: str | None = None,
        seconds: float = 0.0,
        n_media: int = 0,
        usd: float = 0.0,
        jobs_by_status: Mapping[str, int] | None = None,
        spent_this_month: float | None = None,
        region: str | None = None,
        cloudwatch: Any = None,
    ) -> None:
        """One camera's stage figures (with ``camera_id`` and ``stage``), jobs ended per status, the month's spend.

        Into ``region``'s CloudWatch (where the jobs ran, default ``cost.region``): each region's stack
        has its own dashboard and alarms, and metrics are regional.
        """
        cloudwatch = cloudwatch or aws_client("cloudwatch", region=region or self.region)
        data = []
        if camera_id is not None:
            dims = [{"Name": "camera_id", "Value": camera_id}, {"Name": "stage", "Value": stage}]
            data += [
                {"MetricName": METRIC_GPU_SECONDS, "Dimensions": dims, "Value": float(seconds), "Unit": "Seconds"},
                {"MetricName": METRIC_MEDIA, "Dimensions": dims, "Value": float(n_media), "Unit": "Count"},
                {"MetricName": METRIC_USD, "Dimensions": dims, "Value": float(usd), "Unit": "None"},
            ]
        for status, count in (jobs_by_status or {}).items():
            data.append({"MetricName": METRIC_JOBS, "Dimensions": [{"Name": "status", "Value": status}], "Value": float(count), "Unit": "Count"})
        if spent_this_month is not None:
            data.append({"MetricName": METRIC_SPEND_THIS_MONTH, "Value": float(spent_this_month), "Unit": "None"})
        if data:
            cloudwatch.put_metric_data(Namespace=self.metrics_namespace, MetricData=data)


def _per_job(costs: pa.Table) -> list[dict]:
    """Stage 1 jobs that succeeded, a packed job's per-camera rows summed back into one job."""
    jobs: dict[str, dict] = {}
    columns = ["job_id", "stage", "status", "instance_type", "capacity", "usd", "n_media", "runtime_seconds", "cold_start_seconds", "batch_size", "sizing", "run_id"]
    for row in costs.select(columns).to_pylist():
        if row["stage"] != "detect" or row["status"] != "SUCCEEDED":
            continue
        job = jobs.setdefault(row["job_id"], {**row, "usd": 0.0, "n_media": 0, "runtime_seconds": 0.0, "cold_start_seconds": None, "cameras": 0})
        job["usd"] += row["usd"] or 0.0
        job["n_media"] += row["n_media"] or 0
        job["runtime_seconds"] += row["runtime_seconds"] or 0.0
        job["cameras"] += 1
        if row["cold_start_seconds"] is not None:
            job["cold_start_seconds"] = (job["cold_start_seconds"] or 0.0) + row["cold_start_seconds"]
    return list(jobs.values())


def suggest(
    costs: pa.Table,
    *,
    max_images_per_job: int,
    right_size: Any = None,
    next_n: int | None = None,
    prices: PriceBook | None = None,
    default_instance_type: str = "g4dn.xlarge",
    capacity: str = "spot",
) -> list[str]:
    """What the measured costs say to change, as lines for ``odins-ravne cost report --suggest``.

    ``right_size(n_media)`` is the profile's right-sizing rule (it returns an object with
    ``instance_type``, ``batch_size`` and ``reason``); ``next_n`` asks for the projected cost of that
    many more images (measured cost per image when there is one, else the throughput table and ``prices``).
    """
    costs = with_costs_schema(costs)
    total = summarize(costs)
    lines = [f"spot saved {usd(total['saving_usd'])} of {usd(total['on_demand_usd'])} on-demand ({total['saving_pct']:.0f}%)"]
    on_demand = [r for r in report_rows(costs, by="capacity") if r["capacity"] == "on-demand"]
    if on_demand and on_demand[0]["usd"] > 0:
        lines[-1] += f"; {on_demand[0]['jobs']} job(s) ran on-demand for {usd(on_demand[0]['usd'])} (spot had no capacity in time)"
    jobs = _per_job(costs)
    by_type: dict[str, list[float]] = {}
    for job in jobs:
        if job["n_media"]:
            spent = by_type.setdefault(job["instance_type"], [0.0, 0])
            spent[0] += job["usd"]
            spent[1] += job["n_media"]
    per_image = {t: u / n for t, (u, n) in by_type.items()}
    if per_image:
        best = min(per_image, key=per_image.get)
        others = ", ".join(f"{t} {usd(v)}" for t, v in sorted(per_image.items(), key=lambda kv: kv[1]) if t != best)
        lines.append(f"lowest cost per image: {best} at {usd(per_image[best])}/image" + (f" ({others})" if others else " (the only instance type measured)"))
    timed = [j for j in jobs if j["cold_start_seconds"] is not None and j["runtime_seconds"] > 0 and j["n_media"]]
    if timed:
        cold = sum(j["cold_start_seconds"] for j in timed)
        runtime = sum(j["runtime_seconds"] for j in timed)
        share = cold / runtime
        media = sum(j["n_media"] for j in timed)
        mean_media = media / len(timed)
        line = f"cold starts: {share:.0%} of job time ({cold:.0f} s over {len(timed)} job(s), {mean_media:.0f} images a job on average)"
        if share > COLD_START_SHARE_HIGH:
            per_image_s = max(runtime - cold, 1e-9) / media
            needed = cold / len(timed) * (1 - COLD_START_SHARE_TARGET) / (COLD_START_SHARE_TARGET * per_image_s)
            wanted = int(math.ceil(needed / 100) * 100)
            if mean_media < 0.8 * max_images_per_job:
                line += (f": jobs are smaller than max_images_per_job ({max_images_per_job}) because cameras are small; "
                         f"run cameras together (a backfill packs them into jobs of up to {max_images_per_job} images)")
            if wanted > max_images_per_job:
                line += f"; raise pipeline.stage1.max_images_per_job from {max_images_per_job} to about {wanted} to bring cold starts to {COLD_START_SHARE_TARGET:.0%}"
        else:
            line += ": fine"
        lines.append(line)
    if right_size is not None and jobs:
        runs: dict[str, int] = {}
        for job in jobs:
            runs[job["run_id"]] = runs.get(job["run_id"], 0) + job["n_media"]
        typical = sorted(runs.values())[len(runs) // 2]
        rule = right_size(typical)
        used = {(j["instance_type"], j["batch_size"]) for j in jobs}
        if used != {(rule.instance_type, rule.batch_size)}:
            seen = ", ".join(f"{t}/batch {b if b is not None else '?'}" for t, b in sorted(used, key=str))
            lines.append(f"batch size and instance type: runs of {typical} images (the median) ran on {seen}; the right-sizing rule picks "
                         f"{rule.instance_type}/batch {rule.batch_size} ({rule.reason})")
        else:
            lines.append(f"batch size and instance type: {rule.instance_type}/batch {rule.batch_size} fits runs of {typical} images ({rule.reason})")
    if next_n:
        measured = measured_usd_per_media(costs)
        stage2 = sum(r["usd"] for r in costs.select(["stage", "usd"]).to_pylist() if r["stage"] == "classify")
        if measured:
            stage1 = sum(j["usd"] for j in jobs)
            whole = (stage1 + stage2) / stage1 if stage1 else 1.0  # Stage 2 per image, in proportion to Stage 1's
            lines.append(f"next {next_n:,} images: about {usd(next_n * measured[0] * whole)} "
                         f"(measured {usd(measured[0])}/image for Stage 1 over {measured[1]:,} images, Stage 2 in proportion)")
        elif prices is not None:
            lines.append(f"next {next_n:,} images: about {usd(projected_cost(next_n, prices, default_instance_type, capacity))} "
                         f"(Stage 1 on {default_instance_type} {capacity} from the throughput table: nothing measured yet)")
    return lines
