"""`mlops infra cost`: a stack's plan priced line by line from the bundled table, the assumptions stated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.cost import HOURS_PER_MONTH, Assumptions, CostError, Prices, estimate, runs_per_month
from mlops.plan import plan_stack_file
from mlops.settings import load_stack, stack_file

MLOPS = str(Path(sys.executable).with_name("mlops"))
PACKAGE = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-stack-dev/3"
SERVED = {"mlops-stack:imageTag": "0123abc", "mlops-stack:approvedModelPackageArn": PACKAGE}


@pytest.mark.parametrize(("expression", "runs"), [
    ("cron(0 * ? * * *)", 8760 / 12),  # hourly: 730 a month, as the instance-hours
    ("cron(0 2 * * ? *)", 365 / 12),  # nightly
    ("cron(0 */6 ? * * *)", 4 * 365 / 12),
    ("cron(0 9 L * ? *)", 1),  # the last day of every month
    ("cron(0 9 31 * ? *)", 7 / 12),  # the seven months with a 31st
    ("cron(0 9 ? * MON-FRI *)", 261 / 12),  # the weekdays of 2026
    ("cron(0 9 ? * 2-6 *)", 261 / 12),  # the same days in AWS's numbers (1 is Sunday)
    ("cron(0 9 ? * 4 *)", 52 / 12),  # Wednesdays (2026 has 53 Thursdays: cron's own 4)
    ("rate(6 hours)", 4 * 365 / 12),
    ("rate(1 day)", 365 / 12),
])
def test_runs_a_month_of_a_schedule(expression: str, runs: float) -> None:
    assert runs_per_month(expression) == pytest.approx(runs)


def test_a_schedule_it_cannot_read_is_named() -> None:
    with pytest.raises(CostError, match=r"'every day'"):
        runs_per_month("every day")


def test_dev_is_priced_line_by_line_from_its_plan() -> None:
    settings = load_stack("dev")
    prices = Prices(settings.region)
    result = estimate(plan_stack_file(stack_file("dev"), SERVED), settings.region)
    lines = {line.component: line for line in result.lines}
    hosting = prices("sagemaker", "hosting", settings.endpoint_instance_type)
    assert lines["endpoint"].monthly_usd == pytest.approx(settings.endpoint_min_capacity * HOURS_PER_MONTH * hosting)
    processing = prices("sagemaker", "processing", settings.processing_instance_type)
    assert lines["drift job"].monthly_usd == pytest.approx(
        runs_per_month(settings.drift_schedule) * Assumptions().drift_job_minutes / 60 * processing)
    assert lines["MLflow tracking server"].monthly_usd == pytest.approx(
        HOURS_PER_MONTH * prices("sagemaker", "mlflow", settings.mlflow_server_size))
    assert "training pipeline" in lines and "VPC interface endpoints" not in lines  # dev runs outside a VPC
    assert result.monthly_usd == pytest.approx(sum(line.monthly_usd for line in result.lines))
    # what is not billed by the hour depends on an assumption, and says which
    assert {line.component for line in result.lines if line.assumption} >= {"drift job", "S3 storage"}
    assert any("inferred" in note for note in result.notes)  # every inferred price used is named


def test_an_assumption_changes_exactly_its_line() -> None:
    plan = plan_stack_file(stack_file("dev"), SERVED)
    base = {line.component: line.monthly_usd for line in estimate(plan, "eu-west-1").lines}
    more = estimate(plan, "eu-west-1", Assumptions().with_overrides([("pipeline_runs_per_month", "8")]))
    changed = {line.component: line.monthly_usd for line in more.lines}
    assert changed["training pipeline"] == pytest.approx(2 * base["training pipeline"])
    assert {k: v for k, v in changed.items() if k != "training pipeline"} == \
        {k: v for k, v in base.items() if k != "training pipeline"}


def test_prod_pays_for_its_interface_endpoints_in_every_zone() -> None:
    settings = load_stack("prod")
    plan = plan_stack_file(stack_file("prod"), {"mlops-stack:approvedModelPackageArn": PACKAGE,
                                                "mlops-stack:approvedModelImageUri":
                                                    "111111111111.dkr.ecr.eu-west-1.amazonaws.com/mlops-stack/dev/model:0123abc"})
    lines = {line.component: line for line in estimate(plan, settings.region).lines}
    interfaces = [r for r in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if r.inputs["vpcEndpointType"] == "Interface"]
    zone_hours = len(interfaces) * settings.vpc_availability_zones
    assert lines["VPC interface endpoints"].monthly_usd == pytest.approx(
        zone_hours * HOURS_PER_MONTH * Prices(settings.region)("interface_endpoint_hour"))


def test_a_batch_schedule_is_priced_on_its_instances() -> None:
    plan = plan_stack_file(stack_file("dev"), {**SERVED, "mlops-stack:batchTransformSchedule": "cron(0 2 * * ? *)",
                                               "mlops-stack:batchTransformInstanceCount": "2"})
    (batch,) = [line for line in estimate(plan, "eu-west-1").lines if line.component == "batch transform"]
    price = Prices("eu-west-1")("sagemaker", "transform", "ml.m5.large")
    assert batch.monthly_usd == pytest.approx(365 / 12 * 20 / 60 * 2 * price) and batch.assumption == "batch_job_minutes"


def test_a_tuning_step_is_priced_as_its_training_jobs() -> None:
    def pipeline(jobs: str) -> float:
        plan = plan_stack_file(stack_file("dev"), {**SERVED, "mlops-stack:tuningMaxJobs": jobs})
        (line,) = [x for x in estimate(plan, "eu-west-1").lines if x.component == "training pipeline"]
        return line.monthly_usd

    training = Prices("eu-west-1")("sagemaker", "training", load_stack("dev").training_instance_type)
    runs, minutes = Assumptions().pipeline_runs_per_month, Assumptions().pipeline_training_minutes
    assert pipeline("8") - pipeline("4") == pytest.approx(runs * 4 * minutes / 60 * training)


def test_what_the_table_lacks_is_an_error_naming_it() -> None:
    with pytest.raises(CostError, match="no prices for region ap-south-2"):
        Prices("ap-south-2")
    with pytest.raises(CostError, match="no price for sagemaker hosting ml.g5.xlarge"):
        Prices("eu-west-1")("sagemaker", "hosting", "ml.g5.xlarge")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MLOPS, "infra", "cost", *args], capture_output=True, text=True, timeout=300, check=False)


def test_the_command_prints_the_estimate_and_refuses_bad_input() -> None:
    done = run("--stack", "dev", "--json", "-c", f"approvedModelPackageArn={PACKAGE}", "-c", "imageTag=0123abc")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["stack"] == "dev" and doc["monthly_usd"] == pytest.approx(sum(x["monthly_usd"] for x in doc["lines"]),
                                                                         abs=0.05)
    text = run("--stack", "prod")
    assert text.returncode == 0 and "no endpoint: the plan serves no model" in text.stdout, text.stderr
    gpu = run("--stack", "dev", "-c", f"approvedModelPackageArn={PACKAGE}", "-c", "imageTag=0123abc",
              "-c", "endpointInstanceType=ml.g5.xlarge")
    assert gpu.returncode == 2 and "error: no price for sagemaker hosting ml.g5.xlarge" in gpu.stderr, gpu.stderr
    bad = run("--stack", "dev", "--assume", "stored_gb=-1")
    assert bad.returncode == 2 and "stored_gb=-1: must be >= 0" in bad.stderr


def test_serverless_and_async_bill_their_traffic_and_nothing_while_idle() -> None:
    prices = Prices("eu-west-1")
    for mode, component in (("serverless", "serverless endpoint"), ("async", "async endpoint")):
        plan = plan_stack_file(stack_file("dev"), {**SERVED, "mlops-stack:endpointMode": mode})
        result = estimate(plan, "eu-west-1")
        lines = {line.component: line for line in result.lines}
        assert "endpoint" not in lines and lines[component].traffic
        assert result.idle_daily_usd == pytest.approx((result.monthly_usd - lines[component].monthly_usd) * 12 / 365)
    sls = estimate(plan_stack_file(stack_file("dev"), {**SERVED, "mlops-stack:endpointMode": "serverless",
                                                        "mlops-stack:serverlessMemoryMb": "4096"}), "eu-west-1")
    (line,) = [x for x in sls.lines if x.component == "serverless endpoint"]
    assert line.monthly_usd == pytest.approx(Assumptions().serverless_busy_seconds_per_day * 30 * 4
                                             * prices("sagemaker", "serverless_gb_second"))


def test_a_serverless_dev_stack_idles_under_a_dollar_a_day() -> None:
    """The README's serverless dev configuration: no MLflow server, drift and quality every three hours."""
    plan = plan_stack_file(stack_file("dev"), {
        **SERVED, "mlops-stack:endpointMode": "serverless", "mlops-stack:mlflowEnabled": "false",
        "mlops-stack:driftSchedule": "cron(0 */3 ? * * *)", "mlops-stack:driftWindowHours": "3",
        "mlops-stack:qualitySchedule": "cron(15 */3 ? * * *)", "mlops-stack:qualityWindowHours": "3"})
    assert estimate(plan, "eu-west-1").idle_daily_usd <= 1.0


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`mlops infra cost ... | head -1`: no traceback when the pipe closes before the estimate is printed."""
    process = subprocess.Popen([MLOPS, "infra", "cost", "--stack", "prod", "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.close()  # before the plan is done: its print meets a closed pipe
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0 and "Traceback" not in stderr, stderr
