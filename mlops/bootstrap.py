"""`mlops bootstrap --stack NAME`: what a stack needs before its first `pulumi up`, made once per account.

Run by a platform engineer with the stack account's credentials and the Pulumi CLI:

1. the credentials must be the stack's account (`aws:allowedAccountIds`), else nothing is touched;
2. the Pulumi secrets key: the one `pulumiSecretsKeyArn` names when it exists, else the account's
   `alias/mlops-stack-pulumi-secrets`, else a new customer-managed key with rotation and that alias;
3. the Pulumi state bucket `pulumiStateBucket` (default `mlops-stack-pulumi-state-<account>-<region>`):
   created if missing, and in any case versioned, SSE-KMS with that key, owner-enforced, all public
   access blocked, TLS only;
4. the Pulumi stack in that backend with the KMS secrets provider (`pulumi stack init --secrets-provider
   awskms://...`), then `secretsprovider:`/`encryptedkey:` and the two settings written into
   `Pulumi.<stack>.yaml` for a reviewed commit. Pulumi rewrites a stack file without its comments
   (pulumi/pulumi#5235), so it initialises the stack on a scratch copy and only its two lines are taken.

Idempotent: a second run changes nothing and says so. Errors are `BootstrapError`, one line naming
what is at fault. The data the pipeline trains on first is not bootstrap's: `pulumi up` uploads the
problem's sample to the pipeline's default input (`seedSampleData`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import BotoCoreError, ClientError

from mlops.naming import pulumi_secrets_alias, pulumi_state_bucket
from mlops.processes import run_group
from mlops.registry import Aws, aws_error
from mlops.settings import PROJECT, StackSettings, config_key
from mlops.stack_files import StackFileError, write_secrets_provider, write_setting

TLS_ONLY_SID = "DenyInsecureTransport"  # the Sid of the stack buckets' statement (infra/components/storage.py)
PULUMI_TIMEOUT_S = 300


class BootstrapError(RuntimeError):
    """Bootstrap cannot proceed; the message names the account, key, bucket, file or command at fault."""


@dataclass
class Bootstrap:
    stack: str
    key_arn: str
    bucket: str
    backend_url: str
    secrets_provider: str
    created: list[str] = field(default_factory=list)
    """What this run made: "key", "bucket", "pulumi stack"; empty on a second run."""
    stack_file_changed: bool = False


def state_bucket(settings: StackSettings) -> str:
    return settings.pulumi_state_bucket or pulumi_state_bucket(settings.account_id, settings.region)


def backend_url(bucket: str, region: str) -> str:
    """The DIY S3 backend URL CI logs in to (`*_PULUMI_BACKEND_URL`)."""
    return f"s3://{bucket}?region={region}&awssdk=v2"


def secrets_provider(key_arn: str, region: str) -> str:
    return f"awskms://{key_arn.rsplit('/', 1)[-1]}?region={region}"


def _aws(action: str, call: Any, /, *, missing: tuple[str, ...] = (), **request: Any) -> Any:
    """`call(**request)`; None when AWS answers with one of the `missing` error codes, else one line."""
    try:
        return call(**request)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in missing:
            return None
        raise BootstrapError(str(aws_error(action, error))) from None
    except BotoCoreError as error:
        raise BootstrapError(str(aws_error(action, error))) from None


def check_account(settings: StackSettings, aws: Aws) -> None:
    identity = _aws("sts:GetCallerIdentity", aws.client("sts", settings.region).get_caller_identity)
    if identity["Account"] != settings.account_id:
        raise BootstrapError(
            f"the credentials are for account {identity['Account']} ({identity['Arn']}), stack {settings.stack} is "
            f"account {settings.account_id} (aws:allowedAccountIds): nothing was changed"
        )


def _existing_key(kms: Any, key_id: str) -> str | None:
    found = _aws(f"kms:DescribeKey {key_id}", kms.describe_key, missing=("NotFoundException",), KeyId=key_id)
    if found is None:
        return None
    metadata = found["KeyMetadata"]
    if metadata.get("KeyState") != "Enabled":
        raise BootstrapError(f"KMS key {metadata['Arn']} is {metadata.get('KeyState')}, not Enabled")
    return metadata["Arn"]


def ensure_key(settings: StackSettings, aws: Aws) -> tuple[str, bool]:
    """(key ARN, created) of the account's Pulumi secrets key."""
    kms = aws.client("kms", settings.region)
    alias = pulumi_secrets_alias()
    for key_id in filter(None, (settings.pulumi_secrets_key_arn, alias)):
        if (arn := _existing_key(kms, key_id)) is not None:
            return arn, False
    metadata = _aws(
        "kms:CreateKey",
        kms.create_key,
        Description=f"{PROJECT}: Pulumi state secrets of this account",
        KeyUsage="ENCRYPT_DECRYPT",
        Tags=[{"TagKey": "project", "TagValue": PROJECT}, {"TagKey": "purpose", "TagValue": "pulumi-secrets"}],
    )
    arn = metadata["KeyMetadata"]["Arn"]
    # The alias first: a run that fails after it finds this key again instead of making another one.
    _aws("kms:CreateAlias", kms.create_alias, AliasName=alias, TargetKeyId=arn)
    _aws("kms:EnableKeyRotation", kms.enable_key_rotation, KeyId=arn)
    return arn, True


def ensure_bucket(settings: StackSettings, aws: Aws, bucket: str, key_arn: str) -> bool:
    """Make the state bucket exist with the project's storage rules; True when it was created."""
    s3 = aws.client("s3", settings.region)
    created = False
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=settings.account_id)
    except BotoCoreError as error:
        raise BootstrapError(f"s3:HeadBucket {bucket}: {error}") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code not in ("404", "NoSuchBucket"):
            raise BootstrapError(
                f"state bucket {bucket} exists but not in account {settings.account_id} ({code}): choose another "
                f"name with {config_key('pulumi_state_bucket')}"
            ) from None
        location = (
            {}
            if settings.region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": settings.region}}
        )
        _aws(f"s3:CreateBucket {bucket}", lambda: s3.create_bucket(Bucket=bucket, **location))
        created = True
    _aws(
        "s3:PutBucketOwnershipControls",
        s3.put_bucket_ownership_controls,
        Bucket=bucket,
        OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    )
    _aws(
        "s3:PutPublicAccessBlock",
        s3.put_public_access_block,
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    _aws(
        "s3:PutBucketVersioning", s3.put_bucket_versioning, Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    _aws(
        "s3:PutBucketEncryption",
        s3.put_bucket_encryption,
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    tls_only = {
        "Version": "2012-10-17",
        "Statement": [
            *_other_statements(s3, bucket),
            {
                "Sid": TLS_ONLY_SID,
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }
    _aws("s3:PutBucketPolicy", s3.put_bucket_policy, Bucket=bucket, Policy=json.dumps(tls_only))
    return created


def _other_statements(s3: Any, bucket: str) -> list[dict]:
    """The statements an existing bucket policy holds besides ours: kept, not overwritten."""
    found = _aws(f"s3:GetBucketPolicy {bucket}", s3.get_bucket_policy, missing=("NoSuchBucketPolicy",), Bucket=bucket)
    statements = json.loads(found["Policy"]).get("Statement", []) if found else []
    return [s for s in ([statements] if isinstance(statements, dict) else statements) if s.get("Sid") != TLS_ONLY_SID]


def _pulumi(pulumi: str, args: list[str], cwd: Path, backend: str) -> str:
    command = [pulumi, *args]
    env = {**os.environ, "PULUMI_BACKEND_URL": backend, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    try:
        done = run_group(command, cwd=cwd, env=env, timeout=PULUMI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BootstrapError(f"`{' '.join(command)}` did not finish within {PULUMI_TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "(no output)").splitlines()[-1]
        raise BootstrapError(f"`{' '.join(command)}` failed with exit code {done.returncode}: {last}")
    return done.stdout


def _holds_secrets(stack_file: Path) -> bool:
    document = yaml.safe_load(stack_file.read_text()) or {}
    config = document.get("config") or {}
    return "encryptionsalt" in document or any(isinstance(v, dict) and "secure" in v for v in config.values())


def _refuse_orphaned_secrets(settings: StackSettings, stack_file: Path, backend: str, provider: str) -> None:
    """New secrets lines would orphan ciphertext made with the file's current data key: refuse before any write."""
    current, encrypted = _secrets_lines(stack_file)
    if (current != provider or not encrypted) and _holds_secrets(stack_file):
        raise BootstrapError(
            f"{stack_file.name} holds `secure:` config values (or an encryptionsalt) encrypted by its current "
            f"secrets provider: run `PULUMI_BACKEND_URL='{backend}' pulumi stack change-secrets-provider "
            f"--stack {settings.stack} '{provider}'` yourself (it re-encrypts them) and commit the file"
        )


def _secrets_lines(stack_file: Path) -> tuple[str, str]:
    document = yaml.safe_load(stack_file.read_text()) or {}
    return str(document.get("secretsprovider") or ""), str(document.get("encryptedkey") or "")


def init_stack(
    settings: StackSettings, stack_file: Path, backend: str, provider: str, pulumi: str = "pulumi"
) -> tuple[bool, bool]:
    """(stack created, stack file changed): the stack in the backend, its secrets lines in the stack file."""
    found = shutil.which(pulumi)
    if found is None:
        raise BootstrapError(
            "the Pulumi CLI is not on PATH (https://www.pulumi.com/docs/iac/download-install/); install it, or run "
            f"`PULUMI_BACKEND_URL='{backend}' pulumi stack init {settings.stack} --secrets-provider '{provider}'` "
            "and keep the secretsprovider/encryptedkey lines it writes"
        )
    current, encrypted = _secrets_lines(stack_file)
    project = stack_file.parent / "Pulumi.yaml"
    with tempfile.TemporaryDirectory(prefix="mlops-bootstrap-") as scratch:
        # A copy of the project whose stack file Pulumi may rewrite: it carries only the secrets lines back.
        shutil.copy(project, Path(scratch) / "Pulumi.yaml")
        copy = Path(scratch) / stack_file.name
        shutil.copy(stack_file, copy)
        stacks = json.loads(_pulumi(found, ["stack", "ls", "--json"], Path(scratch), backend) or "[]")
        exists = any(entry.get("name", "").split("/")[-1] == settings.stack for entry in stacks)
        if exists and current == provider and encrypted:
            return False, False
        if exists:
            _pulumi(
                found, ["stack", "change-secrets-provider", "--stack", settings.stack, provider], Path(scratch), backend
            )
        else:
            _pulumi(found, ["stack", "init", settings.stack, "--secrets-provider", provider], Path(scratch), backend)
        written_provider, written_key = _secrets_lines(copy)
    if written_provider != provider or not written_key:
        raise BootstrapError(
            f"pulumi left no secretsprovider {provider!r} with an encryptedkey in {stack_file.name}'s copy"
        )
    try:
        changed = write_secrets_provider(stack_file, written_provider, written_key)
    except StackFileError as error:
        raise BootstrapError(str(error)) from None
    return not exists, changed


def check(settings: StackSettings, stack_file: Path) -> None:
    """Offline, before CI's `pulumi` commands: the stack file says what `bootstrap` writes, else a BootstrapError.

    Without `secretsprovider` Pulumi falls back to a passphrase and stops ("passphrase must be set with
    PULUMI_CONFIG_PASSPHRASE", pulumi/pulumi#17236); this says what to run instead.
    """
    provider, encrypted = _secrets_lines(stack_file)
    problems = []
    if not provider.startswith("awskms://") or not encrypted:
        problems.append("no awskms secretsprovider with an encryptedkey (Pulumi would ask for a passphrase)")
    elif settings.pulumi_secrets_key_arn and provider != secrets_provider(
        settings.pulumi_secrets_key_arn, settings.region
    ):
        problems.append(f"secretsprovider {provider} is not {config_key('pulumi_secrets_key_arn')}'s key")
    if not settings.pulumi_state_bucket:
        problems.append(f"no {config_key('pulumi_state_bucket')}")
    if problems:
        raise BootstrapError(
            f"{stack_file.name}: {'; '.join(problems)}: run `mlops bootstrap --stack {settings.stack}` with the "
            "account's credentials and commit the file"
        )


def bootstrap(
    settings: StackSettings, stack_file: Path, *, aws: Aws | None = None, pulumi: str = "pulumi"
) -> Bootstrap:
    aws = aws or Aws.from_env()
    check_account(settings, aws)
    key_arn, key_created = ensure_key(settings, aws)
    bucket = state_bucket(settings)
    bucket_created = ensure_bucket(settings, aws, bucket, key_arn)
    backend, provider = backend_url(bucket, settings.region), secrets_provider(key_arn, settings.region)
    result = Bootstrap(settings.stack, key_arn, bucket, backend, provider)
    result.created = [what for what, made in (("key", key_created), ("bucket", bucket_created)) if made]
    _refuse_orphaned_secrets(settings, stack_file, backend, provider)
    try:
        for key, value in (
            (config_key("pulumi_state_bucket"), bucket),
            (config_key("pulumi_secrets_key_arn"), key_arn),
        ):
            old, new = write_setting(stack_file, key, value)
            result.stack_file_changed |= old != new
    except StackFileError as error:
        raise BootstrapError(str(error)) from None
    stack_created, secrets_changed = init_stack(settings, stack_file, backend, provider, pulumi)
    if stack_created:
        result.created.append("pulumi stack")
    result.stack_file_changed |= secrets_changed
    return result
