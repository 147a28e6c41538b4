"""S3 bucket rules that need only the resource itself (relations between a bucket and its
companion resources are stack rules, in ``stack.py``)."""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from ._common import (
    ADVISORY,
    InvalidDocument,
    allow_statements,
    as_list,
    dig,
    inputs,
    is_blank,
    is_unknown,
    parse_document,
    principal_is_public,
    show,
    statements,
)

BUCKET = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
SSE_CONFIG = frozenset(
    {
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    }
)
VERSIONING = frozenset({"aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2"})
PUBLIC_ACCESS_BLOCK = frozenset({"aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"})
BUCKET_POLICY = frozenset({"aws:s3/bucketPolicy:BucketPolicy"})
LOGGING = frozenset({"aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2"})
ACL = frozenset({"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"})
OWNERSHIP = frozenset({"aws:s3/bucketOwnershipControls:BucketOwnershipControls"})

PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
PUBLIC_CANNED_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
PUBLIC_GRANTEE_URIS = frozenset(
    {
        "http://acs.amazonaws.com/groups/global/AllUsers",
        "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
    }
)
KMS_ALGORITHMS = frozenset({"aws:kms", "aws:kms:dsse"})


def sse_rules(props: dict[str, Any]) -> Any:
    """The default-encryption rules of a BucketServerSideEncryptionConfiguration (``rules``, or
    ``rule`` on older schemas); UNKNOWN when unknown."""
    rules = props.get("rules", props.get("rule"))
    if is_unknown(rules):
        return rules
    return as_list(rules)


def s3_bucket_explicit_name(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, BUCKET)
    if props is None:
        return
    if is_blank(props.get("bucket")):
        report_violation(
            "bucket is not set; give the bucket an explicit name (from mlops.naming) so its encryption, "
            "versioning, public access block, policy and logging resources can be matched to it",
            None,
        )


def s3_versioning_enabled(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, VERSIONING)
    if props is None:
        return
    status = dig(props, "versioningConfiguration", "status")
    if not is_unknown(status) and status != "Enabled":
        report_violation(f'versioningConfiguration.status is {show(status)}; must be "Enabled"', None)


def s3_public_access_block_all(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, PUBLIC_ACCESS_BLOCK)
    if props is None:
        return
    for flag in PUBLIC_ACCESS_FLAGS:
        value = props.get(flag)
        if not is_unknown(value) and value is not True:
            report_violation(f"{flag} is {show(value)}; all four public access block flags must be true", None)


def _denies_insecure_transport(stmt: dict[str, Any]) -> bool:
    if stmt.get("Effect") != "Deny" or not principal_is_public(stmt.get("Principal")):
        return False
    if not {"s3:*", "*"} & set(as_list(stmt.get("Action"))):
        return False
    secure = dig(stmt, "Condition", "Bool", "aws:SecureTransport")
    return any(str(v).lower() == "false" for v in as_list(secure))


def s3_tls_only_policy(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, BUCKET_POLICY)
    if props is None:
        return
    try:
        doc = parse_document(props.get("policy"))
    except InvalidDocument as exc:
        report_violation(f"policy {exc}", None)
        return
    if is_unknown(doc):
        return
    covered: set[Any] = set()
    found = False
    for stmt in statements(doc):
        if _denies_insecure_transport(stmt):
            found = True
            covered.update(as_list(stmt.get("Resource")))
    bucket = props.get("bucket")
    if isinstance(bucket, str) and bucket:
        required = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
        missing = [arn for arn in required if arn not in covered and "*" not in covered]
    else:  # bucket name unknown during preview: only the presence of the Deny can be checked
        missing = [] if found else ["the bucket and its objects"]
    if missing:
        report_violation(
            'policy does not Deny "s3:*" to Principal "*" when aws:SecureTransport is "false" on ' + ", ".join(missing),
            None,
        )


def s3_no_public_policy(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, BUCKET_POLICY | BUCKET)
    if props is None:
        return
    try:
        doc = parse_document(props.get("policy"))
    except InvalidDocument as exc:
        if args.resource_type in BUCKET:  # BucketPolicy documents are reported by s3-tls-only-policy
            report_violation(f"policy {exc}", None)
        return
    for _index, label, stmt in allow_statements(doc):
        if principal_is_public(stmt.get("Principal")):
            report_violation(
                f'policy statement {label} allows {show(stmt.get("Action"))} to Principal "*"; '
                "bucket policies must not grant public access",
                None,
            )


def s3_no_public_acl(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, ACL | BUCKET)
    if props is None:
        return
    acl = props.get("acl")
    if isinstance(acl, str) and acl in PUBLIC_CANNED_ACLS:
        report_violation(f'acl is "{acl}"; canned ACLs that grant access to everyone are forbidden', None)
    grants = props.get("grants") if args.resource_type in BUCKET else dig(props, "accessControlPolicy", "grants")
    if is_unknown(grants):
        return
    for index, grant in enumerate(as_list(grants)):
        uri = dig(grant, "uri") if args.resource_type in BUCKET else dig(grant, "grantee", "uri")
        if isinstance(uri, str) and uri in PUBLIC_GRANTEE_URIS:
            where = "grants" if args.resource_type in BUCKET else "accessControlPolicy.grants"
            report_violation(f'{where}[{index}] grants to "{uri}"; ACL grants to everyone are forbidden', None)


def s3_ownership_enforced(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, OWNERSHIP)
    if props is None:
        return
    ownership = dig(props, "rule", "objectOwnership")
    if not is_unknown(ownership) and ownership != "BucketOwnerEnforced":
        report_violation(
            f'rule.objectOwnership is {show(ownership)}; must be "BucketOwnerEnforced" (ACLs disabled)', None
        )


def s3_bucket_key_enabled(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, SSE_CONFIG)
    if props is None:
        return
    rules = sse_rules(props)
    if is_unknown(rules):
        return
    for index, rule in enumerate(rules):
        algorithm = dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        enabled = dig(rule, "bucketKeyEnabled")
        if algorithm in KMS_ALGORITHMS and not is_unknown(enabled) and enabled is not True:
            report_violation(
                f"rules[{index}].bucketKeyEnabled is {show(enabled)}; enable S3 Bucket Keys with SSE-KMS "
                "to cut KMS request costs",
                None,
            )


POLICIES = [
    ResourceValidationPolicy(
        name="s3-bucket-explicit-name",
        description="S3 buckets set `bucket` explicitly: the stack rules match a bucket to its encryption, "
        "versioning, public access block, policy and logging resources by that name.",
        validate=s3_bucket_explicit_name,
    ),
    ResourceValidationPolicy(
        name="s3-versioning-enabled",
        description='BucketVersioning has versioningConfiguration.status "Enabled" (recover overwritten or '
        "deleted artifacts, models and data).",
        validate=s3_versioning_enabled,
    ),
    ResourceValidationPolicy(
        name="s3-public-access-block-all",
        description="BucketPublicAccessBlock sets all four flags (blockPublicAcls, blockPublicPolicy, "
        "ignorePublicAcls, restrictPublicBuckets) to true.",
        validate=s3_public_access_block_all,
    ),
    ResourceValidationPolicy(
        name="s3-tls-only-policy",
        description='Bucket policies Deny "s3:*" to Principal "*" when '
        'aws:SecureTransport is "false", on both '
        "arn:aws:s3:::<bucket> and arn:aws:s3:::<bucket>/* (no plaintext HTTP access).",
        validate=s3_tls_only_policy,
    ),
    ResourceValidationPolicy(
        name="s3-no-public-policy",
        description='No bucket policy statement Allows anything to Principal "*" (or {"AWS": "*"}), whatever '
        "its conditions: data and model buckets are never public.",
        validate=s3_no_public_policy,
    ),
    ResourceValidationPolicy(
        name="s3-no-public-acl",
        description="No public canned ACL (public-read, public-read-write, "
        "authenticated-read) and no ACL grant "
        "to the AllUsers or AuthenticatedUsers groups, on Bucket or BucketAcl.",
        validate=s3_no_public_acl,
    ),
    ResourceValidationPolicy(
        name="s3-ownership-enforced",
        description='BucketOwnershipControls uses objectOwnership "BucketOwnerEnforced", which disables ACLs '
        "altogether.",
        validate=s3_ownership_enforced,
    ),
    ResourceValidationPolicy(
        name="s3-bucket-key-enabled",
        description="SSE-KMS encryption rules enable S3 Bucket Keys (bucketKeyEnabled). Advisory: a cost "
        "optimisation (up to 99% fewer KMS requests), not a security control.",
        validate=s3_bucket_key_enabled,
        enforcement_level=ADVISORY,
    ),
]
