"""The training pipeline definition: structure, data flow, parameters, security, determinism."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlops.naming import Names
from mlops.settings import REPO_ROOT, load_stack
from pipelines import training
from pipelines.training import (
    CHAMPION_FAIL,
    CHECK,
    CHECK_CHAMPION,
    COMPARE,
    EVALUATE,
    FAIL,
    GUARD,
    PREPROCESS,
    PRIMARY_JSON_PATH,
    REGISTER,
    TRAIN,
    VALIDATE,
    definition_json,
    get_pipeline,
)
from tests.pipelines.conftest import CODE_SHA256, IMAGE_DIGEST, pipeline_kwargs

EVALUATION_FILE = {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"}


def all_steps(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    def walk(steps: list[dict[str, Any]]) -> None:
        for step in steps:
            found[step["Name"]] = step
            walk(step["Arguments"].get("IfSteps", []) if step["Type"] == "Condition" else [])
            walk(step["Arguments"].get("ElseSteps", []) if step["Type"] == "Condition" else [])

    walk(doc["Steps"])
    return found


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return all_steps(doc)[name]


def processing_inputs(doc: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {i["InputName"]: i["S3Input"] for i in step(doc, name)["Arguments"]["ProcessingInputs"]}


def processing_outputs(doc: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {o["OutputName"]: o["S3Output"] for o in step(doc, name)["Arguments"]["ProcessingOutputConfig"]["Outputs"]}


def output_ref(step_name: str, output: str) -> dict[str, str]:
    return {"Get": f"Steps.{step_name}.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri"}


def json_get(path: str) -> dict[str, Any]:
    return {"Std:JsonGet": {"Path": path, "PropertyFile": EVALUATION_FILE}}


# --- structure --------------------------------------------------------------------------------------


def test_steps_names_types_and_order(document: dict[str, Any]) -> None:
    assert [(s["Name"], s["Type"]) for s in document["Steps"]] == [
        (GUARD, "Processing"),
        (VALIDATE, "Processing"),
        (PREPROCESS, "Processing"),
        (TRAIN, "Training"),
        (EVALUATE, "Processing"),
        (COMPARE, "Processing"),
        (CHECK, "Condition"),
    ]
    condition = step(document, CHECK)["Arguments"]
    assert [(s["Name"], s["Type"]) for s in condition["IfSteps"]] == [(CHECK_CHAMPION, "Condition")]
    assert [(s["Name"], s["Type"]) for s in condition["ElseSteps"]] == [(FAIL, "Fail")]
    champion = step(document, CHECK_CHAMPION)["Arguments"]
    assert [(s["Name"], s["Type"]) for s in champion["IfSteps"]] == [(REGISTER, "RegisterModel")]
    assert [(s["Name"], s["Type"]) for s in champion["ElseSteps"]] == [(CHAMPION_FAIL, "Fail")]
    assert [s["Name"] for s in all_steps(document).values()] == list(training.STEP_ORDER)


def test_validate_runs_before_preprocess(document: dict[str, Any]) -> None:
    assert step(document, PREPROCESS)["DependsOn"] == [VALIDATE]
    for name in (VALIDATE, PREPROCESS):
        assert processing_inputs(document, name)["data"]["S3Uri"] == {"Get": "Parameters.InputDataUri"}


def test_preprocess_outputs_feed_train_channels(document: dict[str, Any]) -> None:
    assert set(processing_outputs(document, PREPROCESS)) == {"train", "validation", "test", "baseline"}
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in step(document, TRAIN)["Arguments"]["InputDataConfig"]
    }
    assert channels["train"] == output_ref(PREPROCESS, "train")
    assert channels["validation"] == output_ref(PREPROCESS, "validation")


def test_train_model_and_test_split_feed_evaluate(document: dict[str, Any]) -> None:
    inputs = processing_inputs(document, EVALUATE)
    assert inputs["model"]["S3Uri"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["test"]["S3Uri"] == output_ref(PREPROCESS, "test")


def test_evaluation_report_is_a_property_file_of_an_evaluate_output(document: dict[str, Any]) -> None:
    evaluate = step(document, EVALUATE)
    assert evaluate["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]
    assert processing_outputs(document, EVALUATE)["evaluation"]["LocalPath"] == "/opt/ml/processing/output/evaluation"
    assert "/opt/ml/processing/output/evaluation" in evaluate["Arguments"]["AppSpecification"]["ContainerArguments"]


def test_condition_compares_test_auc_with_the_threshold_parameter(document: dict[str, Any]) -> None:
    assert step(document, CHECK)["Arguments"]["Conditions"] == [
        {
            "Type": "GreaterThanOrEqualTo",
            "LeftValue": json_get(PRIMARY_JSON_PATH),
            "RightValue": {"Get": "Parameters.MinTestMetric"},
        }
    ]


def test_fail_message_names_the_metric_and_the_threshold(document: dict[str, Any]) -> None:
    message = step(document, FAIL)["Arguments"]["ErrorMessage"]["Std:Join"]
    assert message["On"] == ""
    assert json_get(PRIMARY_JSON_PATH) in message["Values"]
    assert {"Get": "Parameters.MinTestMetric"} in message["Values"]
    assert any("test auc" in v for v in message["Values"] if isinstance(v, str))
    assert any("(higher is better)" in v for v in message["Values"] if isinstance(v, str))


def test_register_uses_train_model_evaluation_report_and_approval_parameter(document: dict[str, Any], stack: str) -> None:
    args = step(document, REGISTER)["Arguments"]
    assert args["ModelPackageGroupName"] == Names.of(load_stack(stack)).model_package_group
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    (container,) = args["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert container["Image"] == pipeline_kwargs(load_stack(stack))["image_uri"]
    statistics = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    assert statistics["S3Uri"] == {"Std:Join": {"On": "/", "Values": [output_ref(EVALUATE, "evaluation"), "evaluation.json"]}}


def test_register_metadata_carries_metrics_and_lineage(document: dict[str, Any]) -> None:
    metadata = step(document, REGISTER)["Arguments"]["CustomerMetadataProperties"]
    for key in ("auc", "accuracy", "precision", "recall", "f1", "log_loss", "brier"):
        assert metadata[key] == {"Std:Join": {"On": "", "Values": [json_get(f"metrics.{key}.value")]}}
    assert metadata["mlflow_run_id"] == {"Std:Join": {"On": "", "Values": [json_get("model.mlflow_run_id")]}}
    assert metadata["code_bundle_sha256"] == CODE_SHA256
    assert metadata["image_digest"] == IMAGE_DIGEST
    assert metadata["git_sha"] == {"Get": "Parameters.GitSha"}
    assert metadata["data_sha256"] == {"Std:Join": {"On": "", "Values": [{"Std:JsonGet": {
        "PropertyFile": {"Get": "Steps.Validate.PropertyFiles.ValidationReport"}, "Path": "input.sha256"}}]}}
    assert metadata["dvc_rev"] == {"Get": "Parameters.DataRevision"}
    validate = step(document, VALIDATE)
    assert validate["PropertyFiles"] == [{"PropertyFileName": "ValidationReport", "OutputName": "report",
                                          "FilePath": "validation_report.json"}]
    assert metadata["drift_baseline_uri"] == {
        "Std:Join": {"On": "/", "Values": [output_ref(PREPROCESS, "baseline"), "baseline.json"]}
    }


def test_parameters_and_defaults_come_from_the_stack_file(document: dict[str, Any], stack: str) -> None:
    settings = load_stack(stack)
    parameters = {p["Name"]: (p["Type"], p["DefaultValue"]) for p in document["Parameters"]}
    assert parameters == {
        "InputDataUri": ("String", f"s3://{Names.of(settings).bucket('data')}/datasets/adult-income/"),
        "DataRevision": ("String", "none"),
        "ProcessingInstanceType": ("String", settings.processing_instance_type),
        "TrainingInstanceType": ("String", settings.training_instance_type),
        "MinTestMetric": ("Float", settings.min_test_metric),
        "PromotionMinImprovement": ("Float", settings.min_improvement),
        "ModelApprovalStatus": ("String", "PendingManualApproval"),
        "GitSha": ("String", pipeline_kwargs(settings)["git_sha"]),
        "Seed": ("Integer", 42),
        "Trigger": ("String", "manual"),
        "CooldownHours": ("Integer", settings.retrain_cooldown_hours),
        "Candidate": ("String", ""),
        **{f"gbm__{name}": ("String", value) for name, value in (
            ("learning_rate", "0.1"), ("max_iter", "300"), ("max_leaf_nodes", "31"), ("max_depth", "0"),
            ("min_samples_leaf", "20"), ("l2_regularization", "0.0"), ("early_stopping", "true"),
            ("validation_fraction", "0.1"), ("n_iter_no_change", "10"))},
    }
    hyperparameters = step(document, TRAIN)["Arguments"]["HyperParameters"]
    assert hyperparameters["gbm__max_iter"] == {"Get": "Parameters.gbm__max_iter"}
    assert hyperparameters["candidate"] == {"Get": "Parameters.Candidate"}
    approval = next(p for p in document["Parameters"] if p["Name"] == "ModelApprovalStatus")
    assert approval["EnumValues"] == ["PendingManualApproval", "Approved", "Rejected"]


def test_instance_types_are_the_parameters(document: dict[str, Any]) -> None:
    for name in (VALIDATE, PREPROCESS, EVALUATE):
        cluster = step(document, name)["Arguments"]["ProcessingResources"]["ClusterConfig"]
        assert cluster["InstanceType"] == {"Get": "Parameters.ProcessingInstanceType"}
    resources = step(document, TRAIN)["Arguments"]["ResourceConfig"]
    assert resources["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}


def _normalised_leaves(value: Any, identity: dict[str, str], path: str = "") -> dict[str, Any]:
    """path -> leaf value; a stack's identity strings replaced by placeholders, named items keyed by name."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _normalised_leaves(item, identity, f"{path}/{key}").items()}
    if isinstance(value, list):
        keys = [i["Name"] if isinstance(i, dict) and "Name" in i else str(n) for n, i in enumerate(value)]
        return {k: v for key, item in zip(keys, value, strict=True)
                for k, v in _normalised_leaves(item, identity, f"{path}/{key}").items()}
    if isinstance(value, str):
        for literal, placeholder in identity.items():
            value = value.replace(literal, placeholder)
    return {path: value}


def test_stacks_differ_only_where_their_settings_differ(definition_texts: dict[str, str]) -> None:
    """Identity (account, region, stack-derived names) aside, dev and prod differ exactly in their tunables."""
    leaves = {}
    for stack in ("dev", "prod"):
        settings, names = load_stack(stack), Names.of(load_stack(stack))
        identity = {settings.account_id: "<account>", settings.region: "<region>",
                    names.ecr_repository: "<ecr-repository>", names.prefix: "<prefix>"}
        leaves[stack] = _normalised_leaves(json.loads(definition_texts[stack]), identity)
    assert leaves["dev"].keys() == leaves["prod"].keys()
    differing = {path: (leaves["dev"][path], leaves["prod"][path])
                 for path in leaves["dev"] if leaves["dev"][path] != leaves["prod"][path]}

    dev, prod = load_stack("dev"), load_stack("prod")
    register = f"/Steps/{CHECK}/Arguments/IfSteps/{CHECK_CHAMPION}/Arguments/IfSteps/{REGISTER}/Arguments"
    assert differing == {
        "/Parameters/ProcessingInstanceType/DefaultValue": (dev.processing_instance_type,
                                                            prod.processing_instance_type),
        "/Parameters/TrainingInstanceType/DefaultValue": (dev.training_instance_type, prod.training_instance_type),
        "/Parameters/MinTestMetric/DefaultValue": (dev.min_test_metric, prod.min_test_metric),
        "/Parameters/CooldownHours/DefaultValue": (dev.retrain_cooldown_hours, prod.retrain_cooldown_hours),
        f"{register}/InferenceSpecification/SupportedRealtimeInferenceInstanceTypes/0": (
            dev.endpoint_instance_type, prod.endpoint_instance_type),
    }


def test_training_container_environment(document: dict[str, Any], stack: str) -> None:
    settings = load_stack(stack)
    names = Names.of(settings)
    environment = step(document, TRAIN)["Arguments"]["Environment"]
    assert environment == {
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
        "SM_CHANNEL_CODE": "/opt/ml/input/data/code",
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "SM_OUTPUT_DIR": "/opt/ml/output",
        "SM_INPUT_CONFIG_DIR": "/opt/ml/input/config",
        "MLOPS_GIT_SHA": {"Get": "Parameters.GitSha"},
        "MLOPS_IMAGE_URI": pipeline_kwargs(settings)["image_uri"],
        "MLOPS_CODE_SHA256": CODE_SHA256,
        "MLFLOW_TRACKING_URI": (
            f"arn:aws:sagemaker:{settings.region}:{settings.account_id}:mlflow-tracking-server/{names.mlflow_server}"
        ),
        "MLFLOW_EXPERIMENT_NAME": names.pipeline,
    }


def test_without_mlflow_and_image_digest_no_tracking_uri_and_no_such_metadata() -> None:
    settings = dataclasses.replace(load_stack("dev"), mlflow_enabled=False)
    kwargs = {**pipeline_kwargs(settings), "image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/model:abc"}
    doc = json.loads(definition_json(settings, **kwargs))
    assert "MLFLOW_TRACKING_URI" not in step(doc, TRAIN)["Arguments"]["Environment"]
    metadata = step(doc, REGISTER)["Arguments"]["CustomerMetadataProperties"]
    assert "mlflow_run_id" not in metadata
    assert "image_digest" not in metadata


def test_an_explicit_tracking_uri_wins() -> None:
    settings = load_stack("dev")
    inputs = training.PipelineInputs(
        **{k: v for k, v in pipeline_kwargs(settings).items()},
        mlflow_tracking_uri="http://127.0.0.1:5000", mlflow_experiment="exp", dataset="adult-income",
        problem=settings.problem_declaration(), min_test_metric=settings.min_test_metric,
    )
    environment = training.training_environment(SimpleNamespace(git_sha="sha"), inputs)
    assert environment["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert environment["MLFLOW_EXPERIMENT_NAME"] == "exp"


def test_a_code_bundle_uri_that_is_not_content_addressed_is_refused() -> None:
    settings = load_stack("dev")
    kwargs = {**pipeline_kwargs(settings), "code_bundle_uri": "s3://bucket/code/latest/model_code.tar.gz"}
    with pytest.raises(ValueError, match="is not a sha256 hex digest"):
        get_pipeline(settings, **kwargs)


def test_role_must_be_an_arn() -> None:
    settings = load_stack("dev")
    with pytest.raises(ValueError, match="role_arn 'sagemaker-role' is not an IAM role ARN"):
        get_pipeline(settings, **{**pipeline_kwargs(settings), "role_arn": "sagemaker-role"})


# --- the code bundle is what runs --------------------------------------------------------------------


def test_every_job_runs_the_bundle_through_the_launcher(document: dict[str, Any], stack: str) -> None:
    bundle = pipeline_kwargs(load_stack(stack))["code_bundle_uri"]
    modules = {VALIDATE: "model_code.validate", PREPROCESS: "model_code.preprocess", EVALUATE: "model_code.evaluate"}
    for name, module in modules.items():
        args = step(document, name)["Arguments"]
        assert processing_inputs(document, name)["code"]["S3Uri"] == bundle
        assert args["AppSpecification"]["ContainerEntrypoint"] == training.launcher_entrypoint(
            "/opt/ml/processing/input/code/model_code.tar.gz", CODE_SHA256, module
        )
    train = step(document, TRAIN)["Arguments"]
    code = next(c for c in train["InputDataConfig"] if c["ChannelName"] == "code")
    assert code["DataSource"]["S3DataSource"]["S3Uri"] == bundle
    assert train["AlgorithmSpecification"]["ContainerEntrypoint"] == training.launcher_entrypoint(
        "/opt/ml/input/data/code/model_code.tar.gz", CODE_SHA256, "model_code.train"
    )


def test_container_arguments_parse_with_the_model_code_command_lines(document: dict[str, Any]) -> None:
    from model_code import evaluate, preprocess, validate

    def plain(args: list[Any]) -> list[str]:  # pipeline variables take their parameter's default here
        return [a if isinstance(a, str) else "42" for a in args]

    parsed = {
        name: module.build_parser().parse_args(plain(step(document, name)["Arguments"]["AppSpecification"]["ContainerArguments"]))
        for name, module in ((VALIDATE, validate), (PREPROCESS, preprocess), (EVALUATE, evaluate))
    }
    assert str(parsed[VALIDATE].output) == processing_outputs(document, VALIDATE)["report"]["LocalPath"]
    assert str(parsed[PREPROCESS].input) == processing_inputs(document, PREPROCESS)["data"]["LocalPath"]
    for split in ("train", "validation", "test", "baseline"):
        assert processing_outputs(document, PREPROCESS)[split]["LocalPath"] == f"{parsed[PREPROCESS].output}/{split}"
    assert parsed[PREPROCESS].seed == 42
    assert str(parsed[EVALUATE].model) == processing_inputs(document, EVALUATE)["model"]["LocalPath"]
    assert str(parsed[EVALUATE].test) == processing_inputs(document, EVALUATE)["test"]["LocalPath"]
    assert evaluate.EVALUATION_NAME == "evaluation.json"


def test_the_champion_is_scored_on_this_executions_test_split_and_gates_registration(
        document: dict[str, Any], stack: str) -> None:
    from model_code import champion

    settings = load_stack(stack)
    inputs = processing_inputs(document, COMPARE)
    assert inputs["model"]["S3Uri"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["test"]["S3Uri"] == output_ref(PREPROCESS, "test")  # the very split Evaluate scores
    arguments = [a if isinstance(a, str) else "0.0"
                 for a in step(document, COMPARE)["Arguments"]["AppSpecification"]["ContainerArguments"]]
    parsed = champion.build_parser().parse_args(arguments)
    assert parsed.champion_group == Names.of(settings).model_package_group and parsed.region == settings.region
    assert str(parsed.model) == inputs["model"]["LocalPath"] and str(parsed.test) == inputs["test"]["LocalPath"]
    assert str(parsed.output) == processing_outputs(document, COMPARE)["comparison"]["LocalPath"]
    assert step(document, COMPARE)["PropertyFiles"] == [
        {"PropertyFileName": "ChampionComparison", "OutputName": "comparison", "FilePath": champion.COMPARISON_NAME}]

    comparison = {"Get": "Steps.CompareChampion.PropertyFiles.ChampionComparison"}
    [condition] = step(document, CHECK_CHAMPION)["Arguments"]["Conditions"]
    assert condition == {"Type": "GreaterThanOrEqualTo",
                         "LeftValue": {"Std:JsonGet": {"Path": "challenger.value", "PropertyFile": comparison}},
                         "RightValue": {"Std:JsonGet": {"Path": "required", "PropertyFile": comparison}}}
    metadata = step(document, REGISTER)["Arguments"]["CustomerMetadataProperties"]
    for key in ("champion_model_package_arn", "champion_status", "champion_auc", "promotion_min_improvement"):
        assert metadata[key] == {"Std:Join": {"On": "", "Values": [
            {"Std:JsonGet": {"Path": f"metadata.{key}", "PropertyFile": comparison}}]}}
    assert metadata["test_data_uri"] == {"Std:Join": {"On": "", "Values": [output_ref(PREPROCESS, "test")]}}
    message = json.dumps(step(document, CHAMPION_FAIL)["Arguments"]["ErrorMessage"])
    assert "PromotionMinImprovement" in message and "the model is not registered" in message


# --- security -----------------------------------------------------------------------------------------


def test_every_job_encrypts_volumes_outputs_and_traffic(document: dict[str, Any], stack: str) -> None:
    key = pipeline_kwargs(load_stack(stack))["kms_key_arn"]
    for name in (VALIDATE, PREPROCESS, EVALUATE, COMPARE):
        args = step(document, name)["Arguments"]
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == key
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == key
        assert args["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True
    train = step(document, TRAIN)["Arguments"]
    assert train["ResourceConfig"]["VolumeKmsKeyId"] == key
    assert train["OutputDataConfig"]["KmsKeyId"] == key
    assert train["EnableInterContainerTrafficEncryption"] is True


def test_policy_pack_accepts_the_definition(definition_texts: dict[str, str], stack: str) -> None:
    from policies.offline import evaluate

    settings = load_stack(stack)
    resource = {
        "type": "aws:sagemaker/pipeline:Pipeline",
        "name": "training-pipeline",
        "inputs": {
            "pipelineName": Names.of(settings).pipeline,
            "pipelineDisplayName": Names.of(settings).pipeline,
            "roleArn": pipeline_kwargs(settings)["role_arn"],
            "pipelineDefinition": definition_texts[stack],
            "tags": {"project": "mlops-stack", "environment": stack, "owner": settings.owner},
        },
    }
    assert evaluate([resource]) == []


def test_policy_pack_would_catch_a_missing_key(definition_texts: dict[str, str]) -> None:
    """The check above is not vacuous: the same definition without the training volume key fails."""
    from policies.offline import evaluate

    doc = json.loads(definition_texts["dev"])
    del step(doc, TRAIN)["Arguments"]["ResourceConfig"]["VolumeKmsKeyId"]
    resource = {
        "type": "aws:sagemaker/pipeline:Pipeline",
        "name": "p",
        "inputs": {
            "pipelineName": "p",
            "roleArn": "arn:aws:iam::111111111111:role/r",
            "pipelineDefinition": json.dumps(doc),
            "tags": {"project": "mlops-stack", "environment": "dev", "owner": "x"},
        },
    }
    assert [v.policy for v in evaluate([resource])] == ["sagemaker-pipeline-steps-kms"]


# --- determinism and no network -----------------------------------------------------------------------


def test_definition_json_is_canonical(definition_texts: dict[str, str], stack: str) -> None:
    text = definition_texts[stack]
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NO_NETWORK_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS",
                  "AWS_ENDPOINT_URL_IAM")


def test_no_network_call_and_no_lasting_side_effect_while_building(
    monkeypatch: pytest.MonkeyPatch, definition_texts: dict[str, str]
) -> None:
    """AWS endpoints point at a closed port and every socket connect raises (in any thread); the
    build still succeeds, leaves the environment as it was, and gives the same bytes again."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    for name in NO_NETWORK_ENV:
        monkeypatch.setenv(name, endpoint)
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "SAGEMAKER_VALIDATE_ROLE", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    attempts: list[tuple[str, Any]] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append((threading.current_thread().name, address))
        raise OSError(f"network call during pipeline generation: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    before = dict(os.environ)
    settings = load_stack("prod")
    pipeline = get_pipeline(settings, **pipeline_kwargs(settings))
    text = training.canonical_json(json.loads(pipeline.definition()))
    assert attempts == []
    assert dict(os.environ) == before
    assert pipeline.name == Names.of(settings).pipeline
    assert text == definition_texts["prod"]


SUBPROCESS_BUILD = """
import json, socket, sys
attempts = []
def refuse(self, address):
    attempts.append(address)
    raise OSError(f"network call during pipeline generation: {address}")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
from mlops.settings import load_stack
from pipelines.training import definition_json
from tests.pipelines.conftest import pipeline_kwargs
settings = load_stack(sys.argv[1])
text = definition_json(settings, **pipeline_kwargs(settings))
sys.stdout.write(json.dumps({"definition": text, "attempts": [repr(a) for a in attempts]}))
"""


def test_another_process_builds_the_same_bytes_offline(definition_texts: dict[str, str]) -> None:
    """A fresh interpreter (the SDK imported under the no-network guard too), without any AWS region
    or credentials configured, produces the same bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({name: f"http://127.0.0.1:{_closed_port()}" for name in NO_NETWORK_ENV})
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONHASHSEED"] = "12345"
    result = subprocess.run(
        [sys.executable, "-c", SUBPROCESS_BUILD, "dev"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, f"{shlex.join(result.args)} failed:\n{result.stderr[-3000:]}"
    out = json.loads(result.stdout)
    assert out["attempts"] == []
    assert out["definition"] == definition_texts["dev"]


def test_import_is_cheap_and_sdk_free() -> None:
    """infra and the CLI import pipelines.training; the SDK is imported only when a pipeline is built."""
    code = "import sys, pipelines.training, pipelines.bundle; print(any(m.startswith('sagemaker') for m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert result.stdout.strip() == "False"


def test_pipelines_import_only_settings_naming_the_problem_sdk_and_stdlib() -> None:
    import ast

    allowed_roots = {"mlops", "pipelines", "sagemaker", "boto3"}
    for path in sorted(Path(REPO_ROOT, "pipelines").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root == "mlops":
                    assert name in ("mlops.settings", "mlops.naming"), f"{path.name} imports {name}"
                elif root == "pipelines" and path.name == "bundle.py":
                    pytest.fail(f"bundle.py must use the standard library only; imports {name}")
                elif root == "model_code":  # the problem decides the condition and metadata; the launcher runs jobs
                    assert name in ("model_code.problem", "model_code.launcher"), f"{path.name} imports {name}"
                else:
                    assert root in allowed_roots or root in sys.stdlib_module_names, f"{path.name} imports {name}"
                if path.name == "bundle.py":
                    assert root in sys.stdlib_module_names, f"bundle.py imports {name}"


def test_sdk_config_files_do_not_leak_into_the_definition(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, definition_texts: dict[str, str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "SchemaVersion: '1.0'\n"
        "SageMaker:\n"
        "  ProcessingJob:\n    Environment: {LEAKED: 'yes'}\n    Tags: [{Key: leaked, Value: 'yes'}]\n"
        "  TrainingJob:\n    Environment: {LEAKED: 'yes'}\n"
    )
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    settings = load_stack("dev")
    assert definition_json(settings, **pipeline_kwargs(settings)) == definition_texts["dev"]


def test_cooldown_guard_runs_first_with_the_trigger(document: dict[str, Any]) -> None:
    guard = step(document, GUARD)
    arguments = guard["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--trigger") + 1] == {"Get": "Parameters.Trigger"}
    assert arguments[arguments.index("--execution-arn") + 1] == {"Get": "Execution.PipelineExecutionArn"}
    assert step(document, VALIDATE)["DependsOn"] == [GUARD]
    trigger = next(p for p in document["Parameters"] if p["Name"] == "Trigger")
    assert trigger["EnumValues"] == ["manual", "drift", "quality", "schedule", "new-data"]


def test_the_condition_and_metadata_follow_the_stack_problem() -> None:
    """A regression problem: the condition is `<=` on its RMSE, the threshold its own, the metadata its metrics."""
    settings = dataclasses.replace(load_stack("dev"), problem="problems/diabetes", evaluation_min_metric="")
    document = json.loads(definition_json(settings, **pipeline_kwargs(settings)))
    [condition] = step(document, CHECK)["Arguments"]["Conditions"]
    assert condition["Type"] == "LessThanOrEqualTo"
    assert condition["LeftValue"] == json_get(PRIMARY_JSON_PATH)
    parameters = {p["Name"]: p for p in document["Parameters"]}
    assert parameters["MinTestMetric"]["DefaultValue"] == 70.0  # problems/diabetes: rmse <= 70
    metadata = step(document, REGISTER)["Arguments"]["CustomerMetadataProperties"]
    assert {"rmse", "mae", "median_ae", "r2"} <= set(metadata) and "auc" not in metadata
    assert (metadata["primary_metric"], metadata["primary_metric_direction"], metadata["problem"]) == \
        ("rmse", "lower", "diabetes")
    message = step(document, FAIL)["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert "test rmse " in message and any("(lower is better)" in v for v in message if isinstance(v, str))
    inputs = processing_inputs(document, VALIDATE)
    assert inputs["data"]["S3Uri"] == {"Get": "Parameters.InputDataUri"}
    assert parameters["InputDataUri"]["DefaultValue"].endswith("/datasets/diabetes/")


def test_a_tuning_stack_trains_through_a_tuning_step_over_the_problem_spaces() -> None:
    settings = dataclasses.replace(load_stack("dev"), problem="problems/wine", evaluation_min_metric="",
                                   tuning_max_jobs=12, tuning_parallel_jobs=3)
    document = json.loads(definition_json(settings, **pipeline_kwargs(settings)))
    train = step(document, TRAIN)
    assert train["Type"] == "Tuning"
    config, job = train["Arguments"]["HyperParameterTuningJobConfig"], train["Arguments"]["TrainingJobDefinition"]
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 12, "MaxParallelTrainingJobs": 3}
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:balanced_accuracy"}
    ranges = config["ParameterRanges"]
    assert ranges["CategoricalParameterRanges"] == [{"Name": "candidate", "Values": ["gbm", "forest", "linear", "knn"]}]
    assert {"Name": "linear__alpha", "MinValue": "0.001", "MaxValue": "100.0", "ScalingType": "Logarithmic"} in \
        ranges["ContinuousParameterRanges"]
    # the module's estimator: its int parameter's range, its str parameter fixed (a pipeline parameter)
    assert {"Name": "knn__n_neighbors", "MinValue": "3", "MaxValue": "30", "ScalingType": "Linear"} in \
        ranges["IntegerParameterRanges"]
    static = job["StaticHyperParameters"]
    assert static["mlops_code_sha256"] == CODE_SHA256 and static["gbm__max_iter"] == {"Get": "Parameters.gbm__max_iter"}
    assert "linear__alpha" not in static and "candidate" not in static  # tuned, not fixed
    assert static["knn__weights"] == {"Get": "Parameters.knn__weights"}
    assert [d["Name"] for d in job["AlgorithmSpecification"]["MetricDefinitions"]] == ["validation:balanced_accuracy"]
    assert "ContainerEntrypoint" not in job["AlgorithmSpecification"]  # the image's `train` runs the bundle
    assert any(c["ChannelName"] == "code" for c in job["InputDataConfig"])
    assert job["Environment"]["SM_CHANNEL_CODE"] == "/opt/ml/input/data/code"
    assert job["ResourceConfig"]["VolumeKmsKeyId"] == pipeline_kwargs(settings)["kms_key_arn"]
    assert job["EnableInterContainerTrafficEncryption"] is True
    model = processing_inputs(document, EVALUATE)["model"]["S3Uri"]["Std:Join"]["Values"]
    assert {"Get": "Steps.Train.TrainingJobSummaries[0].TrainingJobName"} in model


def test_the_policy_pack_passes_a_stack_that_tunes() -> None:
    from mlops.plan import plan_stack_file
    from mlops.settings import stack_file
    from policies.offline import evaluate

    overrides = {"mlops-stack:imageTag": "0123abc", "mlops-stack:tuningMaxJobs": "8", "mlops-stack:tuningParallelJobs": "2",
                 "mlops-stack:problem": "problems/wine", "mlops-stack:evaluationMinMetric": ""}
    plan = plan_stack_file(stack_file("dev"), overrides)
    [pipeline] = [r for r in plan.resources if r.type == "aws:sagemaker/pipeline:Pipeline"]
    steps = json.loads(pipeline.inputs["pipelineDefinition"])["Steps"]
    assert [s["Type"] for s in steps if s["Name"] == TRAIN] == ["Tuning"]
    assert evaluate([r.as_json() for r in plan.resources]) == []


def test_a_regression_tuning_job_minimises_its_metric() -> None:
    settings = dataclasses.replace(load_stack("dev"), problem="problems/diabetes", evaluation_min_metric="",
                                   tuning_max_jobs=4, tuning_parallel_jobs=2)
    document = json.loads(definition_json(settings, **pipeline_kwargs(settings)))
    objective = step(document, TRAIN)["Arguments"]["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert objective == {"Type": "Minimize", "MetricName": "validation:rmse"}
