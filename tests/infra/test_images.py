from __future__ import annotations

import json

from mlops.plan import Plan
from mlops.settings import StackSettings


def test_repository_is_immutable_scanned_and_kms_encrypted(plan: Plan, settings: StackSettings) -> None:
    [repository] = plan.of_type("aws:ecr/repository:Repository")
    assert repository.inputs["name"] == f"mlops-stack/{settings.stack}/model"
    assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository.inputs["encryptionConfigurations"] == [
        {"encryptionType": "KMS", "kmsKey": plan.outputs["kmsKeyArn"]}
    ]
    assert repository.inputs["forceDelete"] is settings.force_destroy


def test_lifecycle_policy_keeps_n_tagged_and_expires_untagged(plan: Plan, settings: StackSettings) -> None:
    [policy] = plan.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert policy.inputs["repository"] == f"mlops-stack/{settings.stack}/model"
    rules = {r["selection"]["tagStatus"]: r["selection"] for r in json.loads(policy.inputs["policy"])["rules"]}
    assert rules["untagged"]["countType"] == "sinceImagePushed"
    assert rules["untagged"]["countNumber"] == settings.ecr_untagged_expiry_days
    assert rules["any"]["countType"] == "imageCountMoreThan"
    assert rules["any"]["countNumber"] == settings.ecr_keep_tagged_images
