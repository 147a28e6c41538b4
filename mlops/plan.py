"""The offline plan: run the real Pulumi program (infra/__main__.py) under Pulumi mocks with one
stack file's settings, and record every resource it declares with its inputs.

No engine, no provider plugins, no credentials, no network. The mocks echo inputs and fill in the
few computed outputs the program reads (ARNs, ids, URLs) with deterministic values derived from the
stack's account and region, so two plans of the same stack file are identical.
"""

from __future__ import annotations

import hashlib
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from mlops.settings import PROJECT, REPO_ROOT, StackSettings, load_stack_file

PROGRAM = REPO_ROOT / "infra" / "__main__.py"


@dataclass
class PlannedResource:
    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    protect: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "urn": self.urn, "inputs": self.inputs, "protect": self.protect}


@dataclass
class Plan:
    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    components: list[str] = field(default_factory=list)

    def of_type(self, type_token: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, name: str) -> PlannedResource:
        for resource in self.resources:
            if resource.name == name:
                return resource
        raise KeyError(f"no resource named {name!r} in the plan of stack {self.stack}")

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "resources": [r.as_json() for r in self.resources], "outputs": self.outputs}


_EC2_ID_PREFIXES = {  # type token: (id prefix, ARN resource type)
    "aws:ec2/vpc:Vpc": ("vpc", "vpc"), "aws:ec2/subnet:Subnet": ("subnet", "subnet"),
    "aws:ec2/securityGroup:SecurityGroup": ("sg", "security-group"),
    "aws:ec2/routeTable:RouteTable": ("rtb", "route-table"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("vpce", "vpc-endpoint"),
}


def mock_ec2_id(token: str, logical_name: str) -> str:
    """The id EC2 gives a planned VPC, subnet, group, route table or endpoint (17 hex digits, as AWS's are)."""
    return f"{_EC2_ID_PREFIXES[token][0]}-{_short_hash(logical_name)[:8]}{_short_hash(logical_name + '#')[:9]}"


def mock_key_id(logical_name: str) -> str:
    """The ID a planned KMS key gets (deterministic: policies that name the key can be checked against it)."""
    return f"{_short_hash(logical_name)[:8]}-mock-{_short_hash(logical_name + 'k')[:12]}"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also recording the `protect` option (resource options are not inputs)."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.protected: set[tuple[str, str]] = set()

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        if request.protect:
            self.protected.add((request.type, request.name))
        return super().RegisterResource(request)


# Inputs that hold a resource's physical name, by provider convention.
_NAME_INPUTS = ("name", "bucket", "trackingServerName", "pipelineName", "modelPackageGroupName", "dashboardName")


class _PlanMocks(pulumi.runtime.Mocks):
    """Echo inputs; compute the outputs AWS would, from the stack's account and region."""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}  # (type, logical name) -> inputs

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict]:
        inputs = dict(args.inputs)
        self.inputs[(args.typ, args.name)] = inputs
        region, account = self.settings.region, self.settings.account_id
        physical = next((inputs[k] for k in _NAME_INPUTS if isinstance(inputs.get(k), str) and inputs[k]), args.name)
        token = args.typ
        state: dict[str, Any] = dict(inputs)
        if token == "aws:kms/key:Key":
            key_id = mock_key_id(args.name)
            state.update(keyId=key_id, arn=f"arn:aws:kms:{region}:{account}:key/{key_id}")
            physical = key_id
        elif token == "aws:s3/bucket:Bucket":
            state.update(arn=f"arn:aws:s3:::{physical}", bucketDomainName=f"{physical}.s3.amazonaws.com")
        elif token == "aws:iam/role:Role":
            state.update(arn=f"arn:aws:iam::{account}:role/{physical}")
        elif token == "aws:iam/policy:Policy":
            state.update(arn=f"arn:aws:iam::{account}:policy/{physical}")
        elif token == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            physical = str(inputs["url"]).removeprefix("https://")
            state.update(arn=f"arn:aws:iam::{account}:oidc-provider/{physical}")
        elif token == "aws:ecr/repository:Repository":
            state.update(
                arn=f"arn:aws:ecr:{region}:{account}:repository/{physical}",
                repositoryUrl=f"{account}.dkr.ecr.{region}.amazonaws.com/{physical}",
            )
        elif token == "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer":
            state.update(
                arn=f"arn:aws:sagemaker:{region}:{account}:mlflow-tracking-server/{physical}",
                trackingServerUrl=f"https://{_short_hash(physical)}.{region}.experiments.sagemaker.aws",
            )
        elif token == "aws:cloudwatch/metricAlarm:MetricAlarm":
            state.update(arn=f"arn:aws:cloudwatch:{region}:{account}:alarm:{physical}")
        elif token == "aws:cloudwatch/eventBus:EventBus":  # EventBridge's ARN, not the module's (cloudwatch)
            state.update(arn=f"arn:aws:events:{region}:{account}:event-bus/{physical}")
        elif token == "aws:sns/topic:Topic":
            state.update(arn=f"arn:aws:sns:{region}:{account}:{physical}")
        elif token in _EC2_ID_PREFIXES:  # EC2 names its resources by id: vpc-..., subnet-..., sg-...
            physical = mock_ec2_id(token, args.name)
            state.update(id=physical, arn=f"arn:aws:ec2:{region}:{account}:{_EC2_ID_PREFIXES[token][1]}/{physical}")
            if token == "aws:ec2/vpcEndpoint:VpcEndpoint" and inputs.get("vpcEndpointType") == "Gateway":
                state.update(prefixListId=f"pl-{_short_hash(args.name)[:8]}")
        else:
            service = token.split(":")[1].split("/")[0]
            kind = token.rsplit(":", 1)[1].lower()
            state.setdefault("arn", f"arn:aws:{service}:{region}:{account}:{kind}/{physical}")
        return str(physical), state

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict | tuple[dict, list[tuple[str, str]] | None]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            account = self.settings.account_id
            return {"accountId": account, "arn": f"arn:aws:iam::{account}:root", "userId": account}, None
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zones = [f"{self.settings.region}{letter}" for letter in "abc"]
            # a bare dict: the mock monitor iterates the failures of a (result, failures) pair, None included
            return {"names": zones, "zoneIds": [f"{self.settings.region}-az{i}" for i in (1, 2, 3)],
                    "id": self.settings.region}
        raise NotImplementedError(f"the offline plan has no mock for provider function {args.token}")


def _engine_config(config: dict[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to a program: every value a string, structured values as JSON."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


def plan_stack_file(path: Path, overrides: dict[str, str] | None = None) -> Plan:
    """Validate the stack file, then run the program under mocks and return what it declares.

    `overrides` are namespaced config values applied on top of the file, like `pulumi up -c KEY=VALUE`
    (CI sets `mlops-stack:imageTag` this way). Validation happens first and raises `SettingsError`
    before the runtime is touched.
    """
    import yaml

    config = {**yaml.safe_load(path.read_text())["config"], **(overrides or {})}
    settings = load_stack_file(path, overrides)
    return run_program(settings, config)


def run_program(settings: StackSettings, config: dict[str, Any]) -> Plan:
    mocks = _PlanMocks(settings)
    monitor = _RecordingMonitor(mocks)
    pulumi_settings.reset_options(project=PROJECT, stack=settings.stack)
    set_all_config(_engine_config(config))
    pulumi_mocks.set_mocks(monitor.mocks, project=PROJECT, stack=settings.stack, preview=False, monitor=monitor)

    def program() -> None:
        runpy.run_path(str(PROGRAM), run_name="__main__")

    _sync_await(run_pulumi_func(program))

    root = pulumi_settings.get_root_resource()
    raw_outputs = getattr(root, "outputs", {}) or {}
    outputs = _sync_await(pulumi.Output.from_input(raw_outputs).future()) or {}

    resources: list[PlannedResource] = []
    components: list[str] = []
    # Registration order depends on how outputs resolve; sort so plans of one stack file are identical.
    for urn in sorted(monitor.resources):
        type_token = urn.split("::")[2].split("$")[-1]
        name = urn.split("::")[3]
        if type_token.startswith("mlops-stack:"):
            components.append(name)
            continue
        resources.append(
            PlannedResource(
                type_token,
                name,
                urn,
                _plain(mocks.inputs[(type_token, name)]),
                protect=(type_token, name) in monitor.protected,
            )
        )
    return Plan(settings.stack, resources, _plain(outputs), sorted(components))


def _plain(value: Any) -> Any:
    """JSON-able copy (mocks may hand back tuples, other sequences and assets)."""
    if isinstance(value, pulumi.FileAsset):
        path = Path(value.path)
        return {"fileAsset": str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# The inputs a reviewer looks at first, per resource type (the full inputs are in --json).
_KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "aws:kms/key:Key": ("enableKeyRotation", "deletionWindowInDays"),
    "aws:kms/alias:Alias": ("name",),
    "aws:s3/bucket:Bucket": ("bucket", "forceDestroy"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "rules.0.applyServerSideEncryptionByDefault.sseAlgorithm",
        "rules.0.bucketKeyEnabled",
    ),
    "aws:s3/bucketVersioning:BucketVersioning": ("versioningConfiguration.status",),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ("rule.objectOwnership",),
    "aws:s3/bucketLogging:BucketLogging": ("targetBucket", "targetPrefix"),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        "rules.0.expiration.days",
        "rules.0.noncurrentVersionExpiration.noncurrentDays",
    ),
    "aws:ecr/repository:Repository": (
        "name",
        "imageTagMutability",
        "imageScanningConfiguration.scanOnPush",
        "encryptionConfigurations.0.encryptionType",
    ),
    "aws:iam/role:Role": ("name",),
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": ("url", "clientIdLists"),
    "aws:s3/bucketObjectv2:BucketObjectv2": ("key",),
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": ("modelPackageGroupName",),
    "aws:sagemaker/pipeline:Pipeline": ("pipelineName",),
    "aws:sagemaker/model:Model": ("name", "primaryContainer.modelPackageName"),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration":
        ("name", "productionVariants.0.instanceType", "dataCaptureConfig.initialSamplingPercentage"),
    "aws:sagemaker/endpoint:Endpoint": (
        "name", "deploymentConfig.blueGreenUpdatePolicy.trafficRoutingConfiguration.type",
        "deploymentConfig.blueGreenUpdatePolicy.trafficRoutingConfiguration.canarySize.value"),
    "aws:appautoscaling/target:Target": ("resourceId", "minCapacity", "maxCapacity"),
    "aws:appautoscaling/policy:Policy": ("name", "targetTrackingScalingPolicyConfiguration.targetValue"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name", "threshold"),
    "aws:sns/topic:Topic": ("name",),
    "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer": (
        "trackingServerName",
        "trackingServerSize",
        "mlflowVersion",
    ),
}


def _lookup(inputs: Any, dotted: str) -> Any:
    value = inputs
    for part in dotted.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def key_settings(resource: PlannedResource) -> str:
    """A one-line summary of the inputs that matter for `resource` (for the plan table)."""
    paths = _KEY_INPUTS.get(resource.type, ("name",) if "name" in resource.inputs else ("bucket",))
    shown = []
    for path in paths:
        value = _lookup(resource.inputs, path)
        if value is not None:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            shown.append(f"{path.split('.')[-1]}={json.dumps(value) if not isinstance(value, str) else value}")
    return " ".join(shown)
