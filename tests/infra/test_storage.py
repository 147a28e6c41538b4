"""Every storage promise, asserted on the inputs the mocks recorded, for every stack file."""

from __future__ import annotations

from mlops.naming import BUCKET_KINDS, Arns, Names
from mlops.plan import Plan
from mlops.settings import StackSettings
from tests.infra.helpers import as_list, by_bucket, document, statements

S3 = "aws:s3/"


def _bucket_names(settings: StackSettings) -> dict[str, str]:
    names = Names.of(settings)
    return {kind: names.bucket(kind) for kind in BUCKET_KINDS}


def test_one_customer_managed_key_with_rotation(plan: Plan, settings: StackSettings) -> None:
    [key] = plan.of_type("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == settings.kms_deletion_window_days
    [alias] = plan.of_type("aws:kms/alias:Alias")
    assert alias.inputs["name"] == f"alias/mlops-stack-{settings.stack}"


def test_key_policy_is_scoped_to_the_account(plan: Plan, settings: StackSettings) -> None:
    [key] = plan.of_type("aws:kms/key:Key")
    consumers = {f"arn:aws:iam::{a}:root" for a in settings.model_consumers}
    for statement in statements(key.inputs["policy"]):
        principal = statement["Principal"]
        assert principal != "*" and principal.get("AWS") != "*"
        assert all("*" not in action for action in as_list(statement["Action"]))
        if statement["Sid"] == "ConsumerAccountsReadModels":
            assert set(as_list(principal["AWS"])) == consumers
            assert statement["Action"] == ["kms:Decrypt", "kms:DescribeKey"]
            assert statement["Condition"]["StringEquals"]["kms:ViaService"] == [
                f"s3.{settings.region}.amazonaws.com", f"ecr.{settings.region}.amazonaws.com"]
        elif "AWS" in principal:
            assert principal["AWS"] == f"arn:aws:iam::{settings.account_id}:root"
        elif statement["Sid"] == "LogsEncryptSageMakerLogGroups":  # these groups only, by encryption context
            assert principal == {"Service": f"logs.{settings.region}.amazonaws.com"}
            assert statement["Condition"] == {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                f"arn:aws:logs:{settings.region}:{settings.account_id}:log-group:/aws/sagemaker/*"}}
        elif statement["Sid"] in ("CloudTrailEncryptsStackTrail", "CloudTrailDescribesKey"):  # its trail only
            assert statement["Condition"]["StringEquals"] == {"aws:SourceArn": Arns(Names.of(settings)).trail}
        else:
            assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == settings.account_id
    sids = {s["Sid"] for s in statements(key.inputs["policy"])}
    assert ("ConsumerAccountsReadModels" in sids) == bool(consumers)


def test_four_buckets_with_settings_driven_destroy_and_protection(plan: Plan, settings: StackSettings) -> None:
    buckets = {r.inputs["bucket"]: r for r in plan.of_type(f"{S3}bucket:Bucket")}
    assert set(buckets) == set(_bucket_names(settings).values())
    for bucket in buckets.values():
        assert bucket.inputs["forceDestroy"] is settings.force_destroy
        assert {"project", "environment", "owner"} <= set(bucket.inputs["tags"])


def test_kms_encryption_with_bucket_keys_except_the_log_bucket(plan: Plan, settings: StackSettings) -> None:
    encryption = by_bucket(plan, f"{S3}bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    key_arn = plan.outputs["kmsKeyArn"]
    names = _bucket_names(settings)
    assert set(encryption) == set(names.values())
    for kind, bucket in names.items():
        [rule] = encryption[bucket].inputs["rules"]
        default = rule["applyServerSideEncryptionByDefault"]
        if kind == "logs":
            # S3 server access logging cannot deliver into SSE-KMS buckets.
            assert default == {"sseAlgorithm": "AES256"}
        else:
            assert default == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn}
            assert rule["bucketKeyEnabled"] is True


def test_versioning_public_access_block_and_ownership(plan: Plan, settings: StackSettings) -> None:
    buckets = set(_bucket_names(settings).values())
    versioning = by_bucket(plan, f"{S3}bucketVersioning:BucketVersioning")
    blocks = by_bucket(plan, f"{S3}bucketPublicAccessBlock:BucketPublicAccessBlock")
    ownership = by_bucket(plan, f"{S3}bucketOwnershipControls:BucketOwnershipControls")
    assert set(versioning) == set(blocks) == set(ownership) == buckets
    for bucket in buckets:
        assert versioning[bucket].inputs["versioningConfiguration"]["status"] == "Enabled"
        flags = blocks[bucket].inputs
        assert all(
            flags[f] is True
            for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )
        assert ownership[bucket].inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"


def test_tls_only_bucket_policies(plan: Plan, settings: StackSettings) -> None:
    policies = by_bucket(plan, f"{S3}bucketPolicy:BucketPolicy")
    assert set(policies) == set(_bucket_names(settings).values())
    for bucket, policy in policies.items():
        denies = [s for s in statements(policy.inputs["policy"]) if s["Effect"] == "Deny"]
        assert denies == [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
        for allow in (s for s in statements(policy.inputs["policy"]) if s["Effect"] == "Allow"):
            if allow["Sid"] == "ConsumerAccountsReadModelArtifacts":
                assert bucket == Names.of(settings).bucket("artifacts")
                assert allow["Principal"] == {"AWS": [f"arn:aws:iam::{a}:root" for a in settings.model_consumers]}
                assert (allow["Action"], allow["Resource"]) == ("s3:GetObject", f"arn:aws:s3:::{bucket}/pipelines/*")
                continue
            if allow["Principal"] == {"Service": "cloudtrail.amazonaws.com"}:  # the stack's trail, into logs/
                assert bucket == Names.of(settings).bucket("logs")
                assert allow["Condition"]["StringEquals"]["aws:SourceArn"] == Arns(Names.of(settings)).trail
                continue
            assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}
            assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == settings.account_id


def test_access_logging_into_the_logs_bucket(plan: Plan, settings: StackSettings) -> None:
    names = _bucket_names(settings)
    logging = by_bucket(plan, f"{S3}bucketLogging:BucketLogging")
    assert set(logging) == {names[k] for k in ("data", "artifacts", "capture")}
    for bucket, resource in logging.items():
        assert resource.inputs["targetBucket"] == names["logs"]
        assert resource.inputs["targetPrefix"] == f"{bucket}/"
    log_policy = by_bucket(plan, f"{S3}bucketPolicy:BucketPolicy")[names["logs"]]
    [delivery] = [s for s in statements(log_policy.inputs["policy"]) if s["Sid"] == "S3ServerAccessLogDelivery"]
    assert sorted(document(delivery)["Condition"]["ArnLike"]["aws:SourceArn"]) == sorted(
        f"arn:aws:s3:::{b}" for b in logging
    )


def test_lifecycle_rules_follow_settings(plan: Plan, settings: StackSettings) -> None:
    names = _bucket_names(settings)
    lifecycle = by_bucket(plan, f"{S3}bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert set(lifecycle) == set(names.values())
    for kind, bucket in names.items():
        rule, *by_prefix = lifecycle[bucket].inputs["rules"]
        assert rule["status"] == "Enabled" and rule["filter"]["prefix"] == ""
        assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == settings.noncurrent_version_expiry_days
        assert rule.get("expiration", {}).get("days") == {"capture": settings.capture_retention_days}.get(kind)
        expiring = {r["filter"]["prefix"]: r["expiration"]["days"] for r in by_prefix}
        # the logs bucket: each source's access logs after their retention, the trail's files after the audit's
        assert expiring == ({**{f"{names[k]}/": settings.access_log_retention_days
                                for k in ("data", "artifacts", "capture")},
                             "cloudtrail/": settings.audit_log_retention_days} if kind == "logs" else {})
