"""The pack as a whole: its shape, the offline evaluator, unknown values, import hygiene."""

from __future__ import annotations

import ast
import copy
import importlib
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pulumi_policy
import pytest
from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationPolicy,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
)

from policies.offline import STACK, Violation, describe, evaluate
from policies.rules import ALL_POLICIES, PACK_NAME
from policies.rules.tags import TAGGABLE_TYPES
from tests.policies.baseline import ARTIFACTS, baseline

REPO = Path(__file__).resolve().parents[2]
POLICIES_DIR = REPO / "policies"


def _find(resources: list[dict], name: str) -> dict:
    (found,) = [r for r in resources if r["name"] == name]
    return found


# --- shape of the pack ------------------------------------------------------------------------------


def test_pack_has_at_least_25_uniquely_named_described_rules() -> None:
    names = [p.name for p in ALL_POLICIES]
    assert len(names) >= 25
    assert len(set(names)) == len(names)
    for policy in ALL_POLICIES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", policy.name), policy.name
        assert isinstance(policy, ResourceValidationPolicy | StackValidationPolicy)
        assert len(policy.description) > 30, policy.name


def test_rules_are_mandatory_unless_they_say_why_not() -> None:
    lowered = [p for p in ALL_POLICIES if p.enforcement_level not in (None, EnforcementLevel.MANDATORY)]
    assert [p.name for p in lowered] == ["s3-bucket-key-enabled"]
    assert "Advisory:" in lowered[0].description


def test_describe_lists_every_rule_sorted_with_its_level() -> None:
    listed = describe()
    assert [name for name, _, _ in listed] == sorted(p.name for p in ALL_POLICIES)
    levels = {name: level for name, level, _ in listed}
    assert levels["s3-bucket-key-enabled"] == "advisory"
    assert levels["ecr-immutable-tags"] == "mandatory"
    assert all(description for _, _, description in listed)


# --- the refusals the issue names -------------------------------------------------------------------


def test_unencrypted_bucket_is_refused_once() -> None:
    resources = baseline()
    resources.remove(_find(resources, "artifacts-sse"))
    assert [(v.policy, v.resource, v.level) for v in evaluate(resources)] == [
        ("s3-bucket-has-encryption", "artifacts", "mandatory")
    ]


def test_public_bucket_policy_is_refused_once() -> None:
    resources = baseline()
    policy = _find(resources, "artifacts-policy")["inputs"]
    doc = json.loads(policy["policy"])
    doc["Statement"].append(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{ARTIFACTS}/*"}
    )
    policy["policy"] = json.dumps(doc)
    assert [(v.policy, v.resource) for v in evaluate(resources)] == [("s3-no-public-policy", "artifacts-policy")]


def test_wildcard_iam_action_is_refused_once() -> None:
    resources = baseline()
    policy = _find(resources, "ci-role-policy")["inputs"]
    doc = json.loads(policy["policy"])
    doc["Statement"][0]["Action"] = ["s3:*"]
    policy["policy"] = json.dumps(doc)
    assert [(v.policy, v.resource) for v in evaluate(resources)] == [("iam-no-wildcard-actions", "ci-role-policy")]


def test_mutable_ecr_repository_is_refused_once() -> None:
    resources = baseline()
    _find(resources, "images")["inputs"]["imageTagMutability"] = "MUTABLE"
    assert [(v.policy, v.resource) for v in evaluate(resources)] == [("ecr-immutable-tags", "images")]


# --- unknown values (pulumi preview) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "prop", "sentinel"),
    [
        ("platform-key", "enableKeyRotation", UNKNOWN_BOOLEAN_VALUE),
        ("platform-key", "policy", UNKNOWN_STRING_VALUE),
        ("artifacts-policy", "policy", UNKNOWN_STRING_VALUE),
        ("artifacts-pab", "blockPublicAcls", UNKNOWN_BOOLEAN_VALUE),
        ("artifacts-sse", "bucket", UNKNOWN_STRING_VALUE),
        ("artifacts-sse", "rules", UNKNOWN_OBJECT_VALUE),
        ("artifacts-logging", "targetBucket", UNKNOWN_STRING_VALUE),
        ("images", "encryptionConfigurations", UNKNOWN_OBJECT_VALUE),
        ("ci-role", "assumeRolePolicy", UNKNOWN_STRING_VALUE),
        ("ci-role-policy", "policy", UNKNOWN_STRING_VALUE),
        ("endpoint-config", "kmsKeyArn", UNKNOWN_STRING_VALUE),
        ("endpoint-config", "productionVariants", UNKNOWN_OBJECT_VALUE),
        ("endpoint-config", "name", UNKNOWN_STRING_VALUE),
        ("endpoint", "tags", UNKNOWN_OBJECT_VALUE),
        ("endpoint", "endpointConfigName", UNKNOWN_STRING_VALUE),
        ("pipeline", "pipelineDefinition", UNKNOWN_STRING_VALUE),
        ("latency", "dimensions", UNKNOWN_OBJECT_VALUE),
        ("alerts", "kmsMasterKeyId", UNKNOWN_STRING_VALUE),
        ("endpoint-scaling-target", "resourceId", UNKNOWN_STRING_VALUE),
        ("model", "vpcConfig", UNKNOWN_OBJECT_VALUE),
        ("model", "enableNetworkIsolation", UNKNOWN_BOOLEAN_VALUE),
        ("workload", "egress", UNKNOWN_OBJECT_VALUE),
        ("trail", "kmsKeyId", UNKNOWN_STRING_VALUE),
        ("trail", "eventSelectors", UNKNOWN_OBJECT_VALUE),
        ("endpoint-logs", "retentionInDays", UNKNOWN_NUMBER_VALUE),
        ("model", "name", UNKNOWN_STRING_VALUE),
        ("endpoint-config", "asyncInferenceConfig", UNKNOWN_OBJECT_VALUE),
        ("batch-schedule", "target", UNKNOWN_OBJECT_VALUE),
        ("batch-schedule", "kmsKeyArn", UNKNOWN_STRING_VALUE),
    ],
)
def test_unknown_values_are_never_violations(resource: str, prop: str, sentinel: str) -> None:
    resources = baseline()
    _find(resources, resource)["inputs"][prop] = sentinel
    assert evaluate(resources) == []


def test_unknown_value_skips_only_the_checks_that_need_it() -> None:
    resources = baseline()
    key = _find(resources, "platform-key")["inputs"]
    key["policy"] = UNKNOWN_STRING_VALUE
    key["enableKeyRotation"] = False
    assert [v.policy for v in evaluate(resources)] == ["kms-key-rotation"]


def test_a_policy_reading_the_engine_proxy_directly_is_skipped_on_unknowns() -> None:
    def strict(args, report_violation) -> None:
        if args.props["enableKeyRotation"] is not True:  # raises UnknownValueError when unknown
            report_violation("not rotated", None)

    policy = ResourceValidationPolicy(name="strict-rotation", description="test", validate=strict)
    resources = [{"type": "aws:kms/key:Key", "name": "k", "inputs": {"enableKeyRotation": UNKNOWN_BOOLEAN_VALUE}}]
    assert evaluate(resources, policies=[policy]) == []
    resources[0]["inputs"]["enableKeyRotation"] = False
    assert evaluate(resources, policies=[policy]) == [Violation("strict-rotation", "k", "not rotated", "mandatory")]


# --- offline evaluator ------------------------------------------------------------------------------


def test_stack_violations_name_the_reported_resource_or_the_stack() -> None:
    def relation(args, report_violation) -> None:
        for resource in args.resources:
            report_violation(f"about {resource.resource_type}", resource.urn)
        report_violation("about the stack", None)

    policy = StackValidationPolicy(
        name="every-resource", description="test", validate=relation, enforcement_level=EnforcementLevel.ADVISORY
    )
    resources = [
        {"type": "aws:sns/topic:Topic", "name": "b-topic", "inputs": {}},  # no urn: one is made up
        {"type": "aws:kms/key:Key", "name": "a-key", "urn": "urn:pulumi:dev::p::aws:kms/key:Key::a-key", "inputs": {}},
    ]
    assert evaluate(resources, policies=[policy]) == [
        Violation("every-resource", STACK, "about the stack", "advisory"),
        Violation("every-resource", "a-key", "about aws:kms/key:Key", "advisory"),
        Violation("every-resource", "b-topic", "about aws:sns/topic:Topic", "advisory"),
    ]


def test_evaluate_is_deterministic_and_leaves_the_plan_untouched() -> None:
    resources = baseline()
    for name in ("artifacts-pab", "images-lifecycle"):
        resources.remove(_find(resources, name))
    _find(resources, "images")["inputs"]["imageTagMutability"] = "MUTABLE"
    before = copy.deepcopy(resources)
    first = evaluate(resources)
    assert first == evaluate(list(reversed(resources)))
    assert resources == before
    assert [(v.resource, v.policy) for v in first] == [
        ("artifacts", "s3-bucket-has-public-access-block"),
        ("images", "ecr-immutable-tags"),
        ("images", "ecr-repository-has-lifecycle-policy"),
    ]


def test_disabled_policies_do_not_run() -> None:
    policy = ResourceValidationPolicy(
        name="always",
        description="test",
        validate=lambda a, r: r("x", None),
        enforcement_level=EnforcementLevel.DISABLED,
    )
    assert evaluate([{"type": "aws:kms/key:Key", "name": "k", "inputs": {}}], policies=[policy]) == []


# --- taggability, checked against the provider ------------------------------------------------------


def _input_names(type_token: str) -> set[str]:
    module_path, class_name = type_token.split(":")[1].split("/")[0], type_token.rsplit(":", 1)[1]
    module = importlib.import_module(f"pulumi_aws.{module_path}")
    resource_module = importlib.import_module(getattr(module, class_name).__module__)
    args = getattr(resource_module, f"{class_name}InitArgs", None) or getattr(resource_module, f"{class_name}Args")
    return {
        getattr(prop.fget, "_pulumi_name", None) or attr
        for attr, prop in vars(args).items()
        if isinstance(prop, property)
    }


@pytest.mark.parametrize("type_token", sorted(TAGGABLE_TYPES))
def test_every_taggable_type_has_a_tags_input_in_pulumi_aws(type_token: str) -> None:
    assert "tags" in _input_names(type_token)


@pytest.mark.parametrize(
    "type_token",
    [
        "aws:kms/alias:Alias",
        "aws:cloudwatch/dashboard:Dashboard",
        "aws:cloudwatch/eventTarget:EventTarget",
        "aws:scheduler/schedule:Schedule",
        "aws:appautoscaling/policy:Policy",
        "aws:ecr/lifecyclePolicy:LifecyclePolicy",
        "aws:s3/bucketPolicy:BucketPolicy",
    ],
)
def test_types_left_out_really_have_no_tags_input(type_token: str) -> None:
    assert "tags" not in _input_names(type_token)


# --- packaging and import hygiene -------------------------------------------------------------------


def test_importing_the_policies_does_not_start_a_server() -> None:
    code = (
        "import sys, policies, policies.rules, policies.offline\n"
        "print(len(policies.rules.ALL_POLICIES), 'policies.__main__' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(ALL_POLICIES)), "False"]


def test_main_only_assembles_the_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[dict] = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: built.append(kwargs))
    monkeypatch.setattr(sys, "path", list(sys.path))
    runpy.run_path(str(POLICIES_DIR / "__main__.py"), run_name="__main__")
    assert len(built) == 1
    assert built[0]["name"] == PACK_NAME == "mlops-stack-policies"
    assert built[0]["enforcement_level"] is EnforcementLevel.MANDATORY
    assert [p.name for p in built[0]["policies"]] == [p.name for p in ALL_POLICIES]


def test_policy_project_file_uses_the_python_runtime_and_the_repo_venv() -> None:
    text = (POLICIES_DIR / "PulumiPolicy.yaml").read_text()
    assert re.search(r"^runtime:\n  name: python\n  options:\n", text, re.M)
    virtualenv = re.search(r"^\s+virtualenv: (\S+)$", text, re.M)
    assert virtualenv and (POLICIES_DIR / virtualenv.group(1)).resolve() == (REPO / ".venv").resolve()


def test_policies_import_only_stdlib_pulumi_policy_and_themselves() -> None:
    allowed = set(sys.stdlib_module_names) | {"pulumi_policy", "policies"}
    for path in POLICIES_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            assert set(roots) <= allowed, f"{path.relative_to(REPO)} imports {roots}"


def test_a_trust_pinned_to_a_source_known_only_after_deployment_is_no_violation() -> None:
    resources = baseline()
    _find(resources, "sagemaker-role")["inputs"]["assumeRolePolicy"]["Statement"]["Condition"] = {
        "ArnEquals": {"aws:SourceArn": UNKNOWN_STRING_VALUE}}
    assert evaluate(resources) == []
