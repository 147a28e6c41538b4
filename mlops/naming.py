"""Every physical resource name, derived from project + stack (+ account and region where AWS
requires global uniqueness). Components, the CLI and the pipeline take names from here only.

Each name respects its service's length and character rules; when project + stack + suffix would
not fit, the name is shortened deterministically and an 8-character hash of the full name keeps it
unique and stable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from mlops.settings import PROJECT, StackSettings

BUCKET_KINDS = ("data", "artifacts", "capture", "logs")
# S3 server access logs cannot be delivered into an SSE-KMS bucket: "logs" uses SSE-S3.
ENCRYPTED_BUCKET_KINDS = ("data", "artifacts", "capture")
VARIANT = "primary"
"""The endpoint's one production variant: its alarms' dimension, and a folder of its data capture."""
CAPTURE_PREFIX = "datacapture"
"""Where an endpoint's data capture lands in the capture bucket: `<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/`."""
GROUND_TRUTH_PREFIX = "ground-truth"
"""Where labels land in the data bucket: `<prefix>/yyyy/mm/dd/hh/*.jsonl` (Model Monitor's ground-truth format)."""
ASYNC_PREFIX = "async/"
"""The data bucket's folder of an async endpoint: callers upload requests under `input/`, answers land under
`output/`, failures under `failures/`."""
RAW_PREFIX = "raw/"
"""The data bucket's folder whose new objects start the pipeline (Trigger=new-data)."""

# service: (max length, allowed characters)
LIMITS: dict[str, tuple[int, re.Pattern[str]]] = {
    "s3": (63, re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")),
    "iam-role": (64, re.compile(r"^[\w+=,.@-]+$")),
    "iam-policy": (128, re.compile(r"^[\w+=,.@-]+$")),
    "ecr": (256, re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")),
    "kms-alias": (256, re.compile(r"^alias/[a-zA-Z0-9/_-]+$")),
    # SageMaker names: [a-zA-Z0-9](-*[a-zA-Z0-9])*; endpoints and model package groups stop at 63.
    "sagemaker": (63, re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")),
    "sagemaker-pipeline": (256, re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")),
    "mlflow": (256, re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")),
    "sns": (256, re.compile(r"^[A-Za-z0-9_-]+$")),
    "cloudwatch": (255, re.compile(r"^[^\x00-\x1f]+$")),
    "events": (64, re.compile(r"^[.\-_A-Za-z0-9]+$")),
    "scheduler": (64, re.compile(r"^[0-9a-zA-Z\-_.]+$")),
    "autoscaling-policy": (256, re.compile(r"^[^:/]+$")),
    "cloudtrail": (128, re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,127}$")),
    # EC2 security group names and Name tags: 255 characters, no "sg-" prefix.
    "ec2": (255, re.compile(r"^(?!sg-)[\w .:/()#,@\[\]+=&;{}!$*-]+$")),
    # Scheduler appends "-<execution id>" (37 characters) to make processing and transform job names (63 at most).
    "processing-job-prefix": (26, re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")),
}


def pulumi_state_bucket(account_id: str, region: str) -> str:
    """The account's Pulumi state bucket when a stack names none (`mlops bootstrap` makes it)."""
    return fit(f"{PROJECT}-pulumi-state-{account_id}-{region}", "s3")


def pulumi_secrets_alias() -> str:
    """The account's Pulumi secrets key (`mlops bootstrap` makes it; stacks of one account share it)."""
    return fit(f"alias/{PROJECT}-pulumi-secrets", "kms-alias")


def fit(name: str, service: str) -> str:
    """`name`, shortened with a stable hash suffix if it exceeds the service's limit; validated."""
    limit, allowed = LIMITS[service]
    if len(name) > limit:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: limit - 9].rstrip('-._/')}-{digest}"
    if not allowed.match(name):
        raise ValueError(f"{name!r} is not a valid {service} name")
    return name


SAGEMAKER_JOB_LOG_GROUPS = ("/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs")
"""Where SageMaker writes every processing and training job's logs: one group each per account and region."""


@dataclass(frozen=True)
class Names:
    """Physical names of one stack's resources."""

    stack: str
    account_id: str
    region: str

    @classmethod
    def of(cls, settings: StackSettings) -> Names:
        return cls(settings.stack, settings.account_id, settings.region)

    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.stack}"

    def bucket(self, kind: str) -> str:
        """Globally unique: account and region in the name, so every stack and account has its own."""
        if kind not in BUCKET_KINDS:
            raise ValueError(f"unknown bucket kind {kind!r}; expected one of {', '.join(BUCKET_KINDS)}")
        return fit(f"{self.prefix}-{kind}-{self.account_id}-{self.region}", "s3")

    @property
    def kms_alias(self) -> str:
        return fit(f"alias/{self.prefix}", "kms-alias")

    @property
    def ecr_repository(self) -> str:
        return fit(f"{PROJECT}/{self.stack}/model", "ecr")

    def resource(self, purpose: str, service: str) -> str:
        """`<project>-<stack>-<purpose>` within `service`'s rules: alarms, rules, schedules, policies."""
        return fit(f"{self.prefix}-{purpose}", service)

    @property
    def execution_role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.execution_role}"

    @property
    def drift_job_prefix(self) -> str:
        """Processing jobs of the drift schedule are named `<this>-<scheduler execution id>`."""
        return fit(f"{self.prefix}-drift", "processing-job-prefix")

    @property
    def quality_job_prefix(self) -> str:
        """Processing jobs of the quality schedule are named `<this>-<scheduler execution id>`."""
        return fit(f"{self.prefix}-quality", "processing-job-prefix")

    @property
    def batch_job_prefix(self) -> str:
        """Transform jobs of the batch schedule are named `<this>-<scheduler execution id>`."""
        return fit(f"{self.prefix}-batch", "processing-job-prefix")

    @property
    def batch_capture_prefix(self) -> str:
        """The batch schedule's capture in the capture bucket: SageMaker writes `input/` and `output/` manifests
        under it, by the hour the job started (`input/yyyy/mm/dd/hh/<uuid>.json`)."""
        return f"batch-{CAPTURE_PREFIX}/{self.endpoint}"  # beside the endpoint's, never under its prefix

    @property
    def comparison_job_prefix(self) -> str:
        """Processing jobs of `release promote` (a candidate and a stack's pinned model on one test split)."""
        return fit(f"{self.prefix}-compare", "processing-job-prefix")

    @property
    def ecr_url(self) -> str:
        return f"{self.account_id}.dkr.ecr.{self.region}.amazonaws.com/{self.ecr_repository}"

    def retrain_bus(self, account_id: str) -> str:
        """The event bus where the drift and quality alarms of `account_id` (a stack serving this one's models)
        start this stack's pipeline."""
        return self.resource(f"retrain-from-{account_id}", "events")

    def role(self, purpose: str) -> str:
        return fit(f"{self.prefix}-{purpose}", "iam-role")

    @property
    def execution_role(self) -> str:
        return self.role("sagemaker-execution")

    def policy(self, purpose: str) -> str:
        return fit(f"{self.prefix}-{purpose}", "iam-policy")

    @property
    def workload_boundary(self) -> str:
        """The permissions boundary of every role the deploy role may create or write (infra/components/boundary.py)."""
        return self.policy("workload-boundary")

    def deploy_policy(self, purpose: str) -> str:
        """One of the deploy role's managed policies (its rights exceed one inline policy's 10,240 characters)."""
        return self.policy(f"ci-deploy-{purpose}")

    @property
    def deploy_role(self) -> str:
        return self.role("ci-deploy")

    @property
    def mlflow_role(self) -> str:
        return self.role("mlflow")

    @property
    def mlflow_server(self) -> str:
        return fit(self.prefix, "mlflow")

    @property
    def model_package_group(self) -> str:
        return fit(self.prefix, "sagemaker")

    @property
    def pipeline(self) -> str:
        return fit(f"{self.prefix}-training", "sagemaker-pipeline")

    @property
    def endpoint(self) -> str:
        return fit(self.prefix, "sagemaker")

    @property
    def metrics_namespace(self) -> str:
        """CloudWatch namespace of the stack's own metrics (drift, pipeline)."""
        return fit(f"{PROJECT}/{self.stack}", "cloudwatch")

    @property
    def capture_prefix(self) -> str:
        """The endpoint's capture in the capture bucket (the drift job's input)."""
        return f"{CAPTURE_PREFIX}/{self.endpoint}"

    @property
    def drift_output_prefix(self) -> str:
        """The drift job's reports in the artifacts bucket, one folder per run."""
        return f"monitoring/{self.endpoint}"

    @property
    def quality_output_prefix(self) -> str:
        """The quality job's reports in the artifacts bucket, one folder per run."""
        return f"monitoring/{self.endpoint}/quality"

    @property
    def comparison_output_prefix(self) -> str:
        """`release promote`'s comparison reports in the artifacts bucket, one folder per job."""
        return "promotion/comparisons"

    @property
    def alarm_topic(self) -> str:
        return fit(f"{self.prefix}-alarms", "sns")

    def async_topic(self, outcome: str) -> str:
        """Where an async endpoint announces each answer: `success` or `errors`."""
        return fit(f"{self.prefix}-async-{outcome}", "sns")

    @property
    def trail(self) -> str:
        """The stack's CloudTrail trail (infra/components/audit.py)."""
        return fit(f"{self.prefix}-audit", "cloudtrail")

    @property
    def endpoint_log_group(self) -> str:
        """Where SageMaker writes the endpoint's container logs (it names the group after the endpoint)."""
        return f"/aws/sagemaker/Endpoints/{self.endpoint}"


_PACKAGE_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    rf"model-package/{PROJECT}-(?P<stack>[a-z][a-z0-9-]*)/[0-9]+$"
)


def source_of(model_package_arn: str) -> Names | None:
    """The names of the stack that registered `model_package_arn` (its group is `mlops-stack-<stack>`),
    or None for a package of another project."""
    match = _PACKAGE_ARN.match(model_package_arn)
    return Names(match["stack"], match["account"], match["region"]) if match else None


@dataclass(frozen=True)
class Arns:
    """ARN patterns of one stack's resources, from its names (known before anything exists)."""

    names: Names

    @property
    def _region_account(self) -> str:
        return f"{self.names.region}:{self.names.account_id}"

    def buckets(self, kinds: tuple[str, ...]) -> list[str]:
        return [f"arn:aws:s3:::{self.names.bucket(kind)}" for kind in kinds]

    def objects(self, kinds: tuple[str, ...]) -> list[str]:
        return [f"{arn}/*" for arn in self.buckets(kinds)]

    def sagemaker(self, *kinds: str) -> list[str]:
        prefix = self.names.prefix
        return [
            arn
            for kind in kinds
            for arn in (
                f"arn:aws:sagemaker:{self._region_account}:{kind}/{prefix}",
                f"arn:aws:sagemaker:{self._region_account}:{kind}/{prefix}-*",
                f"arn:aws:sagemaker:{self._region_account}:{kind}/{prefix}/*",
            )
        ]

    def jobs(self) -> list[str]:
        # Pipeline steps name their jobs `pipelines-<execution>-<step>`; SageMaker chooses the names.
        return [
            f"arn:aws:sagemaker:{self._region_account}:{kind}/*"
            for kind in ("training-job", "processing-job", "transform-job")
        ]

    @property
    def log_groups(self) -> str:
        return f"arn:aws:logs:{self._region_account}:log-group:/aws/sagemaker/*"

    @property
    def trail(self) -> str:
        return f"arn:aws:cloudtrail:{self._region_account}:trail/{self.names.trail}"

    def role(self, name: str) -> str:
        return f"arn:aws:iam::{self.names.account_id}:role/{name}"

    @property
    def roles(self) -> str:
        return f"arn:aws:iam::{self.names.account_id}:role/{self.names.prefix}-*"

    def policy(self, name: str) -> str:
        return f"arn:aws:iam::{self.names.account_id}:policy/{name}"

    @property
    def workload_boundary(self) -> str:
        return self.policy(self.names.workload_boundary)

    @property
    def keys(self) -> str:
        return f"arn:aws:kms:{self._region_account}:key/*"

    @property
    def alias(self) -> str:
        return f"arn:aws:kms:{self._region_account}:{self.names.kms_alias}"

    @property
    def repository(self) -> str:
        return f"arn:aws:ecr:{self._region_account}:repository/{self.names.ecr_repository}"

    @property
    def model_package_group(self) -> str:
        return f"arn:aws:sagemaker:{self._region_account}:model-package-group/{self.names.model_package_group}"

    def model_package(self, version: int | str) -> str:
        """One version's ARN, or with "*" every version of the group."""
        return f"arn:aws:sagemaker:{self._region_account}:model-package/{self.names.model_package_group}/{version}"

    @property
    def drift_jobs(self) -> str:
        return f"arn:aws:sagemaker:{self._region_account}:processing-job/{self.names.drift_job_prefix}-*"

    @property
    def batch_jobs(self) -> str:
        return f"arn:aws:sagemaker:{self._region_account}:transform-job/{self.names.batch_job_prefix}-*"

    @property
    def comparison_jobs(self) -> str:
        return f"arn:aws:sagemaker:{self._region_account}:processing-job/{self.names.comparison_job_prefix}-*"

    def retrain_bus(self, account_id: str) -> str:
        return f"arn:aws:events:{self._region_account}:event-bus/{self.names.retrain_bus(account_id)}"

    @property
    def quality_jobs(self) -> str:
        return f"arn:aws:sagemaker:{self._region_account}:processing-job/{self.names.quality_job_prefix}-*"

    def scoped(self, service: str, kind: str, separator: str = ":") -> str:
        return f"arn:aws:{service}:{self._region_account}:{kind}{separator}{self.names.prefix}-*"
