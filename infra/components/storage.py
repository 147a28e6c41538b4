"""Storage: the stack's customer-managed KMS key and its S3 buckets.

Buckets: data (datasets, raw landing), artifacts (models, code bundles, MLflow artifacts),
capture (endpoint data capture), logs (S3 server access logs of the other three).

Every bucket: versioning, all four public-access-block flags, BucketOwnerEnforced (no ACLs), a
TLS-only bucket policy, lifecycle rules. Data, artifacts and capture: SSE-KMS with the stack key
and bucket keys, access logging into the logs bucket. The logs bucket uses SSE-S3, because S3
server access logging cannot deliver into a bucket whose default encryption is SSE-KMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlops.naming import BUCKET_KINDS, ENCRYPTED_BUCKET_KINDS, Names

# Key administration for the account root (which delegates to IAM policies); listed, not `kms:*`.
_KEY_ACCOUNT_ACTIONS = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
]
# Services that write into KMS-encrypted SNS topics on the stack's behalf (alarms, events).
_KEY_SERVICE_PRINCIPALS = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]


# Where the stack's trail writes in the logs bucket (infra/components/audit.py).
TRAIL_LOG_PREFIX = "cloudtrail"
# Where the pipeline writes model artifacts in the artifacts bucket (pipelines/training.py).
MODEL_ARTIFACTS_PREFIX = "pipelines/"


def consumer_principals(accounts: list[str]) -> dict:
    return {"AWS": [f"arn:aws:iam::{account}:root" for account in accounts]}


def key_policy(account_id: str, region: str = "", consumers: list[str] | None = None, trail_arn: str = "") -> dict:
    """Account administration, alarm/event publishing, the SageMaker log groups' encryption, the stack trail's log
    files (`trail_arn`, when the stack has its own) and, for consumer accounts (prod deploying dev's models),
    decryption of model artifacts and image layers through S3 and ECR only."""
    statements: list[dict] = [
        {
            "Sid": "AccountAdministersAndDelegatesToIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
            "Action": _KEY_ACCOUNT_ACTIONS,
            "Resource": "*",
        },
        {
            "Sid": "AlarmAndEventServicesPublishToEncryptedTopics",
            "Effect": "Allow",
            "Principal": {"Service": _KEY_SERVICE_PRINCIPALS},
            # DescribeKey: EventBridge checks a bus's key (the retrain buses are encrypted with this one)
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        },
        {
            # CloudWatch Logs encrypts the stack's /aws/sagemaker/* groups (infra/components/audit.py, serving.py):
            # each use carries the group's ARN as encryption context, so the key serves those groups only.
            "Sid": "LogsEncryptSageMakerLogGroups",
            "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey",
                       "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"],
            "Resource": "*",
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                      f"arn:aws:logs:{region}:{account_id}:log-group:/aws/sagemaker/*"}},
        },
    ]
    if trail_arn:
        # CloudTrail's documented key policy for a trail's log files, confined to this trail (aws:SourceArn). Two
        # statements: DescribeKey carries no encryption context, so under the context condition it would be
        # denied and CreateTrail would fail (InsufficientEncryptionPolicyException).
        cloudtrail = {"Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Resource": "*"}
        statements += [
            {"Sid": "CloudTrailEncryptsStackTrail", **cloudtrail, "Action": "kms:GenerateDataKey",
             "Condition": {"StringEquals": {"aws:SourceArn": trail_arn},
                           "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                          f"arn:aws:cloudtrail:*:{account_id}:trail/*"}}},
            {"Sid": "CloudTrailDescribesKey", **cloudtrail, "Action": "kms:DescribeKey",
             "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}}},
        ]
    if consumers:
        statements.append(
            {
                "Sid": "ConsumerAccountsReadModels",
                "Effect": "Allow",
                "Principal": consumer_principals(consumers),
                "Action": ["kms:Decrypt", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": [f"s3.{region}.amazonaws.com", f"ecr.{region}.amazonaws.com"]}
                },
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def tls_only_statement(bucket: str) -> dict:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def bucket_policy(bucket: str, *, account_id: str, log_sources: list[str], consumers: list[str] | None = None,
                  trail_arn: str = "") -> dict:
    """TLS-only for every bucket; the logs bucket also lets S3's log delivery write (ACLs are off), and the stack's
    trail (`trail_arn`) deliver under cloudtrail/; the artifacts bucket lets consumer accounts read model artifacts."""
    statements = [tls_only_statement(bucket)]
    if trail_arn:
        from_trail = {"StringEquals": {"aws:SourceArn": trail_arn}}
        statements += [
            {"Sid": "CloudTrailChecksBucket", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
             "Action": "s3:GetBucketAcl", "Resource": f"arn:aws:s3:::{bucket}", "Condition": from_trail},
            {"Sid": "CloudTrailDelivers", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
             "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/{TRAIL_LOG_PREFIX}/AWSLogs/{account_id}/*",
             "Condition": {"StringEquals": {"aws:SourceArn": trail_arn, "s3:x-amz-acl": "bucket-owner-full-control"}}},
        ]
    if consumers:
        statements.append(
            {
                "Sid": "ConsumerAccountsReadModelArtifacts",
                "Effect": "Allow",
                "Principal": consumer_principals(consumers),
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{MODEL_ARTIFACTS_PREFIX}*",
            }
        )
    if log_sources:
        statements.append(
            {
                "Sid": "S3ServerAccessLogDelivery",
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnLike": {"aws:SourceArn": [f"arn:aws:s3:::{source}" for source in log_sources]},
                },
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass(frozen=True)
class StorageArgs:
    names: Names
    tags: dict[str, str]
    force_destroy: bool
    protect: bool
    kms_deletion_window_days: int
    noncurrent_version_expiry_days: int
    capture_retention_days: int
    access_log_retention_days: int
    audit_log_retention_days: int = 365
    model_consumers: tuple[str, ...] = ()
    trail_arn: str = ""  # the stack's own trail, which writes into the logs bucket with the key (audit.py)


class Storage(pulumi.ComponentResource):
    key_arn: pulumi.Output[str]
    key_id: pulumi.Output[str]
    bucket_names: dict[str, str]
    bucket_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops-stack:storage:Storage", name, None, opts)
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        stateful = pulumi.ResourceOptions(parent=self, protect=args.protect)

        key = aws.kms.Key(
            f"{name}-key",
            description=f"{names.prefix}: data, artifacts, capture, images, topics",
            enable_key_rotation=True,
            deletion_window_in_days=args.kms_deletion_window_days,
            policy=pulumi.Output.json_dumps(key_policy(names.account_id, names.region, list(args.model_consumers),
                                                       args.trail_arn)),
            tags=args.tags,
            opts=stateful,
        )
        aws.kms.Alias(f"{name}-key-alias", name=names.kms_alias, target_key_id=key.key_id, opts=child)

        self.bucket_names = {kind: names.bucket(kind) for kind in BUCKET_KINDS}
        logs_bucket = self.bucket_names["logs"]
        buckets: dict[str, aws.s3.Bucket] = {}
        self.bucket_policies: dict[str, aws.s3.BucketPolicy] = {}
        for kind, bucket_name in self.bucket_names.items():
            bucket = aws.s3.Bucket(
                f"{name}-{kind}",
                bucket=bucket_name,
                force_destroy=args.force_destroy,
                tags={**args.tags, "purpose": "access-logs" if kind == "logs" else kind},
                opts=stateful,
            )
            buckets[kind] = bucket
            # Children reference the bucket by its known name (bucket.bucket), so previews and the
            # policy pack can relate them to the bucket before it exists.
            on_bucket = pulumi.ResourceOptions(parent=self, depends_on=[bucket])
            aws.s3.BucketPublicAccessBlock(
                f"{name}-{kind}-public-access-block",
                bucket=bucket.bucket,
                block_public_acls=True,
                block_public_policy=True,
                ignore_public_acls=True,
                restrict_public_buckets=True,
                opts=on_bucket,
            )
            aws.s3.BucketOwnershipControls(
                f"{name}-{kind}-ownership",
                bucket=bucket.bucket,
                rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
                opts=on_bucket,
            )
            aws.s3.BucketVersioning(
                f"{name}-{kind}-versioning",
                bucket=bucket.bucket,
                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
                opts=on_bucket,
            )
            encryption_by_default = (
                aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"
                )
                if kind == "logs"
                else aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=key.arn
                )
            )
            aws.s3.BucketServerSideEncryptionConfiguration(
                f"{name}-{kind}-encryption",
                bucket=bucket.bucket,
                rules=[
                    aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                        apply_server_side_encryption_by_default=encryption_by_default,
                        bucket_key_enabled=kind != "logs",
                    )
                ],
                opts=on_bucket,
            )
            log_sources = [self.bucket_names[k] for k in ENCRYPTED_BUCKET_KINDS] if kind == "logs" else []
            self.bucket_policies[kind] = aws.s3.BucketPolicy(
                f"{name}-{kind}-policy",
                bucket=bucket.bucket,
                policy=pulumi.Output.json_dumps(
                    bucket_policy(
                        bucket_name,
                        account_id=names.account_id,
                        log_sources=log_sources,
                        consumers=list(args.model_consumers) if kind == "artifacts" else None,
                        trail_arn=args.trail_arn if kind == "logs" else "",
                    )
                ),
                opts=on_bucket,
            )
            aws.s3.BucketLifecycleConfiguration(
                f"{name}-{kind}-lifecycle",
                bucket=bucket.bucket,
                rules=self._lifecycle_rules(kind, args),
                opts=on_bucket,
            )
            if kind != "logs":
                aws.s3.BucketLogging(
                    f"{name}-{kind}-access-logging",
                    bucket=bucket.bucket,
                    target_bucket=logs_bucket,
                    target_prefix=f"{bucket_name}/",
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[bucket]),
                )

        self.key_arn = key.arn
        self.key_id = key.key_id
        self.bucket_arns = {kind: bucket.arn for kind, bucket in buckets.items()}
        self.register_outputs(
            {
                "keyArn": self.key_arn,
                "bucketNames": self.bucket_names,
                "bucketArns": self.bucket_arns,
            }
        )

    @staticmethod
    def _lifecycle_rules(kind: str, args: StorageArgs) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
        """One rule over the whole bucket (noncurrent versions, uploads, the capture's retention); in the logs
        bucket each source bucket's access logs expire on their own, and the trail's files (cloudtrail/) after
        the audit retention: one rule over the bucket would delete the audit record with the access logs."""
        retention = {"capture": args.capture_retention_days}.get(kind)
        rules = [
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="retention",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=retention) if retention else None,
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=args.noncurrent_version_expiry_days
                ),
                abort_incomplete_multipart_upload=(
                    aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=7)
                ),
            )
        ]
        if kind == "logs":
            expiring = {f"{args.names.bucket(source)}/": args.access_log_retention_days
                        for source in ENCRYPTED_BUCKET_KINDS}
            if args.trail_arn:
                expiring[f"{TRAIL_LOG_PREFIX}/"] = args.audit_log_retention_days
            rules += [
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id=f"expire-{prefix.rstrip('/')}"[:255], status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days))
                for prefix, days in expiring.items()
            ]
        return rules
