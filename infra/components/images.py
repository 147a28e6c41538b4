"""Images: the ECR repository of the one model image (processing, training, serving, monitoring).

Tags are immutable (a git sha always names the same image), every push is scanned, layers are
encrypted with the stack key, and a lifecycle policy bounds storage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.storage import consumer_principals


def lifecycle_policy(keep_tagged: int, untagged_expiry_days: int) -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"expire untagged images after {untagged_expiry_days} days",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": untagged_expiry_days,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"keep the last {keep_tagged} tagged images",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_tagged},
                    "action": {"type": "expire"},
                },
            ]
        },
        sort_keys=True,
    )


@dataclass(frozen=True)
class ImagesArgs:
    repository_name: str
    kms_key_arn: pulumi.Input[str]
    keep_tagged_images: int
    untagged_expiry_days: int
    force_delete: bool
    protect: bool
    tags: dict[str, str]
    model_consumers: tuple[str, ...] = ()


class Images(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ImagesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops-stack:images:Images", name, None, opts)
        repository = aws.ecr.Repository(
            f"{name}-repository",
            name=args.repository_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=args.kms_key_arn)
            ],
            force_delete=args.force_delete,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repository.name,
            policy=lifecycle_policy(args.keep_tagged_images, args.untagged_expiry_days),
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args.model_consumers:
            # Consumer accounts (prod) run this stack's registered models, whose image lives here.
            aws.ecr.RepositoryPolicy(
                f"{name}-consumer-pull",
                repository=repository.name,
                policy=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "ConsumerAccountsPull",
                                "Effect": "Allow",
                                "Principal": consumer_principals(list(args.model_consumers)),
                                "Action": [
                                    "ecr:BatchCheckLayerAvailability",
                                    "ecr:BatchGetImage",
                                    "ecr:GetDownloadUrlForLayer",
                                ],
                            }
                        ],
                    },
                    sort_keys=True,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.repository_url = repository.repository_url
        self.repository_arn = repository.arn
        self.register_outputs({"repositoryUrl": self.repository_url, "repositoryArn": self.repository_arn})
