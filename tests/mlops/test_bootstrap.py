"""`mlops bootstrap`: the secrets key, the state bucket and the Pulumi stack of a new account (moto + a fake CLI).

The fake `pulumi` does what the real one does to a stack file on `stack init --secrets-provider` (and
`stack change-secrets-provider`): it rewrites the whole file, comments gone (pulumi/pulumi#5235), with
`secretsprovider:` and `encryptedkey:` on top. Its calls are recorded with their backend URL.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mlops.bootstrap import BootstrapError, bootstrap
from mlops.cli import EXIT_BAD_INPUT, EXIT_OK, main
from mlops.naming import pulumi_secrets_alias
from mlops.registry import Aws
from mlops.settings import REPO_ROOT, load_stack_file
from tests.mlops.moto_aws import moto_aws

ENCRYPTED_KEY = "AQICAHhmYWtlLWRhdGEta2V5LWNpcGhlcnRleHQ="
FAKE_PULUMI = f"""#!{sys.executable}
import json, os, pathlib, sys, yaml
args, cwd = sys.argv[1:], pathlib.Path.cwd()
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "backend": os.environ.get("PULUMI_BACKEND_URL")}}) + "\\n")
state = pathlib.Path(os.environ["FAKE_PULUMI_STATE"])
stacks = json.loads(state.read_text()) if state.exists() else []
def rewrite(name, provider):
    path = cwd / f"Pulumi.{{name}}.yaml"
    document = yaml.safe_load(path.read_text()) if path.exists() else {{}}
    document = {{"secretsprovider": provider, "encryptedkey": "{ENCRYPTED_KEY}", **document}}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
if args[:3] == ["stack", "ls", "--json"]:
    print(json.dumps([{{"name": name}} for name in stacks]))
elif args[:2] == ["stack", "init"]:
    if args[2] in stacks:
        sys.exit(f"error: stack '{{args[2]}}' already exists")
    stacks.append(args[2])
    state.write_text(json.dumps(stacks))
    rewrite(args[2], args[args.index("--secrets-provider") + 1])
elif args[:2] == ["stack", "change-secrets-provider"]:
    rewrite(args[args.index("--stack") + 1], args[-1])
else:
    sys.exit(f"fake pulumi: unexpected {{args}}")
"""


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with moto_aws(monkeypatch) as aws:
        yield aws


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml"):
        shutil.copy(REPO_ROOT / name, root / name)
    return root


@pytest.fixture
def pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin" / "pulumi"
    path.parent.mkdir()
    path.write_text(FAKE_PULUMI)
    path.chmod(0o755)
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(tmp_path / "pulumi.log"))
    monkeypatch.setenv("FAKE_PULUMI_STATE", str(tmp_path / "pulumi-state.json"))
    return path


def _calls(pulumi: Path) -> list[dict]:
    log = pulumi.parent.parent / "pulumi.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_new_account_gets_a_key_a_bucket_and_a_stack_with_the_kms_secrets_provider(
    aws: Aws, project: Path, pulumi: Path
) -> None:
    path = project / "Pulumi.dev.yaml"
    before = path.read_text()
    settings = load_stack_file(path)
    result = bootstrap(settings, path, aws=aws, pulumi=str(pulumi))

    kms, s3 = aws.client("kms", settings.region), aws.client("s3", settings.region)
    key = kms.describe_key(KeyId=pulumi_secrets_alias())["KeyMetadata"]
    assert result.key_arn == key["Arn"] and kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]
    assert result.bucket == settings.pulumi_state_bucket and result.created == ["key", "bucket", "pulumi stack"]
    assert s3.get_bucket_versioning(Bucket=result.bucket)["Status"] == "Enabled"
    [rule] = s3.get_bucket_encryption(Bucket=result.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]}
    assert all(s3.get_public_access_block(Bucket=result.bucket)["PublicAccessBlockConfiguration"].values())
    [deny] = json.loads(s3.get_bucket_policy(Bucket=result.bucket)["Policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    backend = f"s3://{result.bucket}?region={settings.region}&awssdk=v2"
    provider = f"awskms://{key['KeyId']}?region={settings.region}"
    assert (result.backend_url, result.secrets_provider) == (backend, provider)
    assert [c["args"] for c in _calls(pulumi)] == [["stack", "ls", "--json"],
                                                   ["stack", "init", "dev", "--secrets-provider", provider]]
    assert {c["backend"] for c in _calls(pulumi)} == {backend}

    # The stack file: the two Pulumi lines above `config:`, the key's ARN, every comment and other line kept.
    after = path.read_text()
    document = yaml.safe_load(after)
    assert (document["secretsprovider"], document["encryptedkey"]) == (provider, ENCRYPTED_KEY)
    assert document["config"]["mlops-stack:pulumiSecretsKeyArn"] == key["Arn"]
    kept = [line for line in before.splitlines() if "pulumiSecretsKeyArn" not in line]
    assert [line for line in after.splitlines()
            if not line.startswith(("secretsprovider:", "encryptedkey:")) and "pulumiSecretsKeyArn" not in line] == kept
    assert load_stack_file(path).pulumi_secrets_key_arn == key["Arn"]

    # A second run finds everything (the stack too: it asks the backend) and changes nothing.
    again = bootstrap(load_stack_file(path), path, aws=aws, pulumi=str(pulumi))
    assert (again.created, again.stack_file_changed, again.key_arn) == ([], False, key["Arn"])
    assert path.read_text() == after and [c["args"] for c in _calls(pulumi)[2:]] == [["stack", "ls", "--json"]]
    [tls] = json.loads(s3.get_bucket_policy(Bucket=result.bucket)["Policy"])["Statement"]  # not one more per run
    assert tls["Sid"] == "DenyInsecureTransport"

    # A new backend (the state bucket recreated) gets the stack again, though the file already says it all.
    (pulumi.parent.parent / "pulumi-state.json").write_text("[]")
    assert bootstrap(load_stack_file(path), path, aws=aws, pulumi=str(pulumi)).created == ["pulumi stack"]


def test_an_existing_stack_gets_the_kms_provider_by_change_secrets_provider(
    aws: Aws, project: Path, pulumi: Path
) -> None:
    (pulumi.parent.parent / "pulumi-state.json").write_text(json.dumps(["dev"]))  # made earlier with a passphrase
    path = project / "Pulumi.dev.yaml"
    result = bootstrap(load_stack_file(path), path, aws=aws, pulumi=str(pulumi))
    assert result.created == ["key", "bucket"]
    assert _calls(pulumi)[-1]["args"] == ["stack", "change-secrets-provider", "--stack", "dev", result.secrets_provider]


def test_secret_config_values_are_not_orphaned_by_new_secrets_lines(aws: Aws, project: Path, pulumi: Path) -> None:
    path = project / "Pulumi.dev.yaml"
    # A stack once initialised with a passphrase: its salt (the settings refuse `secure:` values outright).
    path.write_text("encryptionsalt: v1:Vv3mOcg5yts=:v1:9JhR3UeNnyz3Dl3k:7IHm3nhJeAk0eKD+xRjFjA==\n" + path.read_text())
    before = path.read_text()
    with pytest.raises(BootstrapError, match=r"holds `secure:` config values .*pulumi stack change-secrets-provider "
                                             r"--stack dev 'awskms://"):
        bootstrap(load_stack_file(path), path, aws=aws, pulumi=str(pulumi))
    assert path.read_text() == before


def test_an_existing_state_bucket_policy_is_kept(aws: Aws, project: Path, pulumi: Path) -> None:
    settings = load_stack_file(project / "Pulumi.dev.yaml")
    s3 = aws.client("s3", settings.region)
    bucket = settings.pulumi_state_bucket
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": settings.region})
    audit = {"Sid": "AuditRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
             "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [audit]}))
    result = bootstrap(settings, project / "Pulumi.dev.yaml", aws=aws, pulumi=str(pulumi))
    assert result.created == ["key", "pulumi stack"]
    statements = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["AuditRead", "DenyInsecureTransport"]


def test_credentials_of_another_account_change_nothing(aws: Aws, project: Path, pulumi: Path) -> None:
    path = project / "Pulumi.prod.yaml"  # account 222222222222; moto answers as dev's
    before = path.read_text()
    with pytest.raises(BootstrapError, match=r"the credentials are for account 111111111111 .*stack prod is account "
                                             r"222222222222 \(aws:allowedAccountIds\): nothing was changed"):
        bootstrap(load_stack_file(path), path, aws=aws, pulumi=str(pulumi))
    assert path.read_text() == before and _calls(pulumi) == []
    assert aws.client("s3", "eu-west-1").list_buckets()["Buckets"] == []


def test_without_the_pulumi_cli_the_error_gives_the_command(aws: Aws, project: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bootstrap", "--stack", "dev", "--root", str(project), "--pulumi", str(tmp_path / "no-pulumi")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "error: the Pulumi CLI is not on PATH" in err and "pulumi stack init dev --secrets-provider 'awskms://" in err


def test_the_cli_says_what_it_made_and_what_to_commit(aws: Aws, project: Path, pulumi: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bootstrap", "--stack", "dev", "--root", str(project), "--pulumi", str(pulumi)]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert "created       key, bucket, pulumi stack" in out and "Pulumi.dev.yaml changed: review and commit it" in out
    assert main(argv) == EXIT_OK
    assert "created       nothing (all there already)" in capsys.readouterr().out


def test_check_names_a_stack_file_pulumi_would_ask_a_passphrase_for(aws: Aws, project: Path, pulumi: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bootstrap", "--check", "--stack", "dev", "--root", str(project)]
    assert main(argv) == EXIT_BAD_INPUT  # the repo's files until their account is bootstrapped
    assert ("error: Pulumi.dev.yaml: no awskms secretsprovider with an encryptedkey (Pulumi would ask for a "
            "passphrase): run `mlops bootstrap --stack dev`") in capsys.readouterr().err
    assert main(["bootstrap", "--stack", "dev", "--root", str(project), "--pulumi", str(pulumi)]) == EXIT_OK
    capsys.readouterr()
    assert main(argv) == EXIT_OK
    assert "Pulumi.dev.yaml: bootstrapped" in capsys.readouterr().out
    path = project / "Pulumi.dev.yaml"  # a key changed by hand since: the provider no longer matches
    path.write_text(path.read_text().replace("mlops-stack:pulumiSecretsKeyArn: arn:aws:kms:eu-west-1:111111111111:key/",
                                             "mlops-stack:pulumiSecretsKeyArn: arn:aws:kms:eu-west-1:111111111111:key/x"))
    assert main(argv) == EXIT_BAD_INPUT
    assert "is not mlops-stack:pulumiSecretsKeyArn's key" in capsys.readouterr().err
