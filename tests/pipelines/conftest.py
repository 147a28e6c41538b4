"""Definitions of the training pipeline for every stack file, built once per test session."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.naming import Names
from mlops.settings import StackSettings, load_stack, stack_names
from pipelines.bundle import bundle_uri

CODE_SHA256 = "3f" * 32
IMAGE_DIGEST = "sha256:" + "ab" * 32


def pipeline_kwargs(settings: StackSettings) -> dict[str, Any]:
    """What infra passes: image by digest, the content-addressed bundle, the role and key of the stack."""
    names = Names.of(settings)
    account, region = settings.account_id, settings.region
    return {
        "image_uri": f"{account}.dkr.ecr.{region}.amazonaws.com/{names.ecr_repository}@{IMAGE_DIGEST}",
        "code_bundle_uri": bundle_uri(names.bucket("artifacts"), CODE_SHA256),
        "role_arn": f"arn:aws:iam::{account}:role/{names.execution_role}",
        "kms_key_arn": f"arn:aws:kms:{region}:{account}:key/0b7e5f0e-3c1d-4d8a-9a51-5d2f3c9e7a10",
        "git_sha": "0123456789abcdef0123456789abcdef01234567",
    }


@pytest.fixture(scope="session")
def definition_texts() -> dict[str, str]:
    from pipelines.training import definition_json

    return {name: definition_json(load_stack(name), **pipeline_kwargs(load_stack(name))) for name in stack_names()}


@pytest.fixture
def document(definition_texts: dict[str, str], stack: str) -> dict[str, Any]:
    return json.loads(definition_texts[stack])
