"""`mlops infra cost`: a stack's monthly cost, estimated from its offline plan and a bundled, dated price table.

What is priced comes from the plan (what `pulumi up` would declare): the endpoint's variant (instances around the
clock at its minimum capacity), each Scheduler schedule's job (runs a month from its cron expression times a typical
duration, on the request's instances), the training pipeline's steps per run, the MLflow tracking server's size, the
VPC's interface endpoints per zone, KMS keys, CloudWatch alarms and dashboards. What the plan cannot know (how long a
job runs, how often the alarms retrain, how much data the buckets hold, how much the endpoint scales out) is an
assumption: each has a default, is printed with what it costs, and can be changed with `--assume NAME=VALUE`.

Prices (`mlops/prices.json`): on-demand USD per region, with the date and the pages they were read from. Taxes,
free tiers (except where they cover everything a stack uses), savings plans and data transfer are not counted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cronsim import CronSim, CronSimError

from mlops.plan import Plan

PRICES = Path(__file__).with_name("prices.json")
HOURS_PER_MONTH = 730  # AWS's own monthly figure (8,760 / 12)
_YEAR = 2026  # a schedule's runs are counted over this year and divided by 12: every day of a month counts


class CostError(ValueError):
    """The stack cannot be priced: a region or an instance type the table lacks, a bad assumption."""


@dataclass(frozen=True)
class Assumptions:
    """What a plan cannot know. Names are `--assume` keys."""

    drift_job_minutes: float = 8.0
    quality_job_minutes: float = 8.0
    batch_job_minutes: float = 20.0
    pipeline_runs_per_month: float = 4.0  # retrains: drift, quality, new data and the clock, behind the cooldown
    pipeline_processing_step_minutes: float = 6.0
    pipeline_training_minutes: float = 15.0
    endpoint_extra_instance_hours: float = 0.0  # scale-out above the minimum capacity, in instance-hours a month
    serverless_busy_seconds_per_day: float = 200.0  # a serverless endpoint's compute: e.g. 10,000 requests of 20 ms
    async_instance_hours: float = 60.0  # an async endpoint's instances while requests wait (it idles at zero)
    stored_gb: float = 50.0  # all buckets: data, artifacts (models, reports), capture, logs
    log_ingested_gb: float = 5.0
    s3_data_events_millions: float = 1.0  # the trail's object events on the data and artifacts buckets
    images_kept: float = 10.0
    image_gb: float = 0.9  # measured: the model image is 800-860 MB

    def with_overrides(self, pairs: list[tuple[str, str]]) -> Assumptions:
        known = {f.name for f in fields(self)}
        changes: dict[str, float] = {}
        for name, raw in pairs:
            if name not in known:
                raise CostError(f"--assume {name}: unknown; one of {', '.join(sorted(known))}")
            try:
                value = float(raw)
            except ValueError:
                raise CostError(f"--assume {name}={raw!r}: not a number") from None
            if value < 0:
                raise CostError(f"--assume {name}={raw}: must be >= 0")
            changes[name] = value
        return replace(self, **changes)


@dataclass(frozen=True)
class Line:
    component: str
    quantity: str
    monthly_usd: float
    assumption: str = ""
    traffic: bool = False  # billed by the requests served: nothing while the stack is idle


@dataclass
class Estimate:
    stack: str
    region: str
    prices_as_of: str
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    assumptions: Assumptions = Assumptions()

    @property
    def monthly_usd(self) -> float:
        return sum(line.monthly_usd for line in self.lines)

    @property
    def idle_daily_usd(self) -> float:
        """What the stack costs a day with no traffic: everything but what the requests served bill (the schedules
        still run, the storage stays)."""
        return sum(line.monthly_usd for line in self.lines if not line.traffic) * 12 / 365

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "region": self.region, "prices_as_of": self.prices_as_of,
                "monthly_usd": round(self.monthly_usd, 2), "daily_usd": round(self.monthly_usd * 12 / 365, 2),
                "idle_daily_usd": round(self.idle_daily_usd, 2),
                "lines": [vars(line) | {"monthly_usd": round(line.monthly_usd, 2)} for line in self.lines],
                "notes": self.notes, "assumptions": vars(self.assumptions)}


def runs_per_month(expression: str) -> float:
    """Runs in an average month (a year's runs / 12) of an EventBridge schedule: `cron(m h dom mon dow year)` or
    `rate(N unit)`."""
    rate = re.fullmatch(r"rate\((\d+) (minutes?|hours?|days?)\)", expression.strip())
    if rate:
        minutes = int(rate[1]) * {"m": 1, "h": 60, "d": 1440}[rate[2][0]]
        return HOURS_PER_MONTH * 60 / minutes
    match = re.fullmatch(r"cron\((.+)\)", expression.strip())
    if not match or len(parts := match[1].split()) != 6:
        raise CostError(f"schedule {expression!r} is neither cron(6 fields) nor rate(N unit)")
    minute, hour, dom, month, dow, _year = parts
    # AWS numbers days of the week 1-7 from Sunday, cron 0-6; `?` is cron's `*`. Steps and `#n` keep their numbers.
    dow = re.sub(r"(?<![#/\d])([1-7])(?!\d)", lambda m: str(int(m[1]) - 1), dow)
    standard = " ".join("*" if f == "?" else f for f in (minute, hour, dom, month, dow))
    start, end = datetime(_YEAR, 1, 1, tzinfo=UTC), datetime(_YEAR + 1, 1, 1, tzinfo=UTC)
    try:
        runs = CronSim(standard, start - timedelta(seconds=1))
    except CronSimError as error:
        raise CostError(f"schedule {expression!r}: {error}") from None
    count = 0
    for when in runs:
        if when >= end:
            break
        count += 1
    return count / 12


class Prices:
    """One region's figures of the table; remembers every inferred figure an estimate used (its notes)."""

    def __init__(self, region: str, path: Path = PRICES) -> None:
        table = json.loads(path.read_text())
        if region not in table["regions"]:
            raise CostError(f"no prices for region {region} in {path.name} (it has "
                            f"{', '.join(sorted(table['regions']))}); add the region's figures with their basis")
        self.region, self.as_of, self._figures = region, table["as_of"], table["regions"][region]
        self.inferred: dict[str, str] = {}

    def __call__(self, *path: str) -> float:
        entry: Any = self._figures
        for key in path:
            if not isinstance(entry, dict) or key not in entry:
                known = ", ".join(sorted(entry)) if isinstance(entry, dict) else ""
                raise CostError(f"no price for {' '.join(path)} in {PRICES.name} ({self.region}; it has {known})")
            entry = entry[key]
        if entry["basis"].startswith("inferred"):
            self.inferred[" ".join(path)] = entry["basis"]
        return float(entry["usd"])


def _resources(plan: Plan, suffix: str) -> list[dict[str, Any]]:
    return [r.inputs for r in plan.resources if r.type.endswith(suffix)]


def _job_lines(plan: Plan, prices: Prices, assume: Assumptions) -> list[Line]:
    """Each schedule's job: runs a month x the typical minutes of its kind x its instances' hourly price."""
    lines = []
    for schedule in _resources(plan, "scheduler/schedule:Schedule"):
        request = json.loads(schedule["target"]["input"])
        runs = runs_per_month(schedule["scheduleExpression"])
        if schedule["target"]["arn"].endswith(":createTransformJob"):
            resources, kind, what = request["TransformResources"], "transform", "batch transform"
            minutes, assumed = assume.batch_job_minutes, "batch_job_minutes"
        else:
            resources, kind = request["ProcessingResources"]["ClusterConfig"], "processing"
            what = request["AppSpecification"]["ContainerEntrypoint"][-1]  # drift | quality
            minutes = assume.quality_job_minutes if what == "quality" else assume.drift_job_minutes
            assumed = "quality_job_minutes" if what == "quality" else "drift_job_minutes"
            what = f"{what} job"
        count, instance = int(resources["InstanceCount"]), resources["InstanceType"]
        cost = runs * minutes / 60 * count * prices("sagemaker", kind, instance)
        quantity = f"{runs:.0f} runs x {minutes:g} min x {count} {instance} ({schedule['scheduleExpression']})"
        lines.append(Line(what, quantity, cost, assumed))
    return lines


def _pipeline_line(plan: Plan, prices: Prices, assume: Assumptions) -> Line | None:
    from policies.rules.sagemaker import pipeline_steps

    pipelines = _resources(plan, "sagemaker/pipeline:Pipeline")
    if not pipelines:
        return None
    definition = json.loads(pipelines[0]["pipelineDefinition"])
    defaults = {f"Parameters.{p['Name']}": p.get("DefaultValue") for p in definition.get("Parameters", [])}

    def value(raw: Any) -> Any:  # a pipeline parameter ({"Get": "Parameters.X"}) at its default
        return defaults.get(raw["Get"]) if isinstance(raw, dict) and "Get" in raw else raw

    per_run, parts = 0.0, []
    for name, kind, arguments in pipeline_steps(definition):
        if kind == "Processing":
            cluster, price_kind, minutes = (arguments["ProcessingResources"]["ClusterConfig"], "processing",
                                            assume.pipeline_processing_step_minutes)
            jobs = 1
        elif kind in ("Training", "Tuning"):
            definition = arguments.get("TrainingJobDefinition", arguments)
            cluster, price_kind, minutes = definition["ResourceConfig"], "training", assume.pipeline_training_minutes
            limits = arguments.get("HyperParameterTuningJobConfig", {}).get("ResourceLimits", {})
            jobs = int(value(limits.get("MaxNumberOfTrainingJobs", 1)))
        else:
            continue
        instance, count = str(value(cluster["InstanceType"])), int(value(cluster["InstanceCount"]))
        per_run += jobs * minutes / 60 * count * prices("sagemaker", price_kind, instance)
        parts.append(f"{name}{f' ({jobs} jobs)' if jobs > 1 else ''}")
    return Line("training pipeline", f"{assume.pipeline_runs_per_month:g} runs x ({', '.join(parts)}); "
                f"${per_run:.2f} a run", assume.pipeline_runs_per_month * per_run, "pipeline_runs_per_month")


def _endpoint_lines(config: dict[str, Any], variant: dict[str, Any], prices: Prices,
                    assume: Assumptions) -> list[Line]:
    """Realtime: the minimum capacity around the clock (+ assumed scale-out); serverless: the compute its requests
    use; async: the instance-hours its backlog keeps running (it idles at zero)."""
    if serverless := variant.get("serverlessConfig"):
        gb = int(serverless["memorySizeInMb"]) / 1024
        seconds = assume.serverless_busy_seconds_per_day * 30
        return [Line("serverless endpoint", f"{seconds:,.0f} s of compute at {gb:g} GB (nothing while idle)",
                     seconds * gb * prices("sagemaker", "serverless_gb_second"), "serverless_busy_seconds_per_day",
                     traffic=True)]
    instance = variant["instanceType"]
    price = prices("sagemaker", "hosting", instance)
    if config.get("asyncInferenceConfig"):
        return [Line("async endpoint", f"{assume.async_instance_hours:g} instance-hours of {instance} while requests "
                     "wait (zero instances while idle)", assume.async_instance_hours * price, "async_instance_hours",
                     traffic=True)]
    count = int(variant["initialInstanceCount"])
    lines = [Line("endpoint", f"{count} x {instance} around the clock (the minimum capacity)",
                  count * HOURS_PER_MONTH * price)]
    if extra := assume.endpoint_extra_instance_hours:
        lines.append(Line("endpoint scale-out", f"{extra:g} instance-hours of {instance}", extra * price,
                          "endpoint_extra_instance_hours", traffic=True))
    return lines


def estimate(plan: Plan, region: str, assume: Assumptions = Assumptions(), prices_path: Path = PRICES) -> Estimate:
    prices = Prices(region, prices_path)
    result = Estimate(plan.stack, region, prices.as_of, assumptions=assume)
    add = result.lines.append
    hourly = HOURS_PER_MONTH
    for config in _resources(plan, "sagemaker/endpointConfiguration:EndpointConfiguration"):
        for variant in config["productionVariants"]:
            result.lines.extend(_endpoint_lines(config, variant, prices, assume))
    if not _resources(plan, "sagemaker/endpointConfiguration:EndpointConfiguration"):
        result.notes.append("no endpoint: the plan serves no model (approvedModelPackageArn); plan with a pin "
                            "(-c approvedModelPackageArn=...) to price it")
    result.lines.extend(_job_lines(plan, prices, assume))
    if (pipeline := _pipeline_line(plan, prices, assume)) is not None:
        add(pipeline)
    for server in _resources(plan, "sagemaker/mlflowTrackingServer:MlflowTrackingServer"):
        size = server.get("trackingServerSize") or "Small"
        add(Line("MLflow tracking server", f"{size}, around the clock", hourly * prices("sagemaker", "mlflow", size)))
    interfaces = [e for e in _resources(plan, "ec2/vpcEndpoint:VpcEndpoint") if e.get("vpcEndpointType") == "Interface"]
    if interfaces:
        zones = sum(len(e.get("subnetIds") or []) for e in interfaces)
        add(Line("VPC interface endpoints", f"{len(interfaces)} endpoints in {zones} zone-hours an hour",
                 zones * hourly * prices("interface_endpoint_hour")))
    if keys := len(_resources(plan, "kms/key:Key")):
        add(Line("KMS keys", f"{keys} customer-managed", keys * prices("kms_key_month")))
    if alarms := len(_resources(plan, "cloudwatch/metricAlarm:MetricAlarm")):
        add(Line("CloudWatch alarms", f"{alarms} standard-resolution", alarms * prices("cloudwatch_alarm_month")))
    dashboards = len(_resources(plan, "cloudwatch/dashboard:Dashboard"))
    if dashboards > int(prices("cloudwatch_dashboards_free")):
        paid = dashboards - int(prices("cloudwatch_dashboards_free"))
        add(Line("CloudWatch dashboards", f"{paid} beyond the free ones", paid * prices("cloudwatch_dashboard_month")))
    add(Line("S3 storage", f"{assume.stored_gb:g} GB-months", assume.stored_gb * prices("s3_gb_month"),
             "stored_gb"))
    add(Line("CloudWatch Logs", f"{assume.log_ingested_gb:g} GB ingested",
             assume.log_ingested_gb * prices("logs_ingest_gb"), "log_ingested_gb"))
    if _resources(plan, "cloudtrail/trail:Trail"):
        add(Line("CloudTrail S3 data events", f"{assume.s3_data_events_millions:g} million events",
                 assume.s3_data_events_millions * 10 * prices("cloudtrail_data_events_per_100k"),
                 "s3_data_events_millions"))
    if _resources(plan, "ecr/repository:Repository"):
        stored = assume.images_kept * assume.image_gb
        add(Line("ECR images", f"{assume.images_kept:g} x {assume.image_gb:g} GB",
                 stored * prices("ecr_gb_month"), "images_kept"))
    result.notes += [f"price of {what}: {basis}" for what, basis in sorted(prices.inferred.items())]
    return result


def render(result: Estimate) -> str:
    width = max(len(line.component) for line in result.lines) if result.lines else 10
    out = [f"Stack {result.stack} ({result.region}): about ${result.monthly_usd:,.2f} a month "
           f"(${result.monthly_usd * 12 / 365:,.2f} a day; with no traffic ${result.idle_daily_usd:,.2f} a day), "
           f"on-demand prices of {result.prices_as_of}"]
    for line in sorted(result.lines, key=lambda item: -item.monthly_usd):
        tag = f"  [assumes {line.assumption}{'; traffic' if line.traffic else ''}]" if line.assumption else ""
        out.append(f"  {line.component:<{width}}  ${line.monthly_usd:>9,.2f}  {line.quantity}{tag}")
    out += [f"note: {note}" for note in result.notes]
    assumed = ", ".join(f"{k}={v:g}" for k, v in vars(result.assumptions).items())
    out.append(f"assumptions (--assume NAME=VALUE): {assumed}")
    return "\n".join(out)
