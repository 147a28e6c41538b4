"""mlops/data_versions.py: a DVC revision read from git, its object versions staged for a run, and the digest
that ties a checkout to what Validate read."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops import data_versions
from mlops.data_versions import DataVersionError, resolve, stage
from mlops.naming import Names
from mlops.settings import REPO_ROOT, load_stack
from model_code.data import read_csv_input
from model_code.validate import validate_frame
from problems.adult.synthetic import ADULT, synthesize
from tests.mlops.moto_aws import moto_aws

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin"}


def commit_dvc_file(repo: Path, files: list[dict], dataset: str = "adult-income") -> str:
    """A commit whose datasets/<dataset>.dvc lists `files` as DVC 3 writes them for a version-aware remote."""
    if not (repo / ".git").exists():
        subprocess.run(["git", "init", "-q", str(repo)], check=True, env=GIT_ENV)
    (repo / "datasets").mkdir(exist_ok=True)
    (repo / "datasets" / f"{dataset}.dvc").write_text(yaml.safe_dump(
        {"outs": [{"hash": "md5", "path": dataset, "files": files}]}))
    for args in (["add", "-A"], ["commit", "-qm", "data"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=GIT_ENV)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, env=GIT_ENV,
                          capture_output=True, text=True).stdout.strip()


def pushed(name: str, version: str | None = "v1") -> dict:
    entry = {"relpath": name, "md5": "0" * 32, "size": 8}
    if version:
        entry["cloud"] = {"dev": {"etag": "0" * 32, "version_id": version}}
    return entry


def test_the_projects_remote_is_the_dev_stacks_data_bucket_and_version_aware():
    config = (REPO_ROOT / ".dvc" / "config").read_text()
    section = re.search(r"\['remote \"dev\"'\]\n((?:\s+.+\n)+)", config)
    assert section, config
    options = dict(re.findall(r"^\s+(\S+) = (.+)$", section.group(1), re.M))
    assert options == {"url": f"s3://{Names.of(load_stack('dev')).bucket('data')}/dvc/", "version_aware": "true"}
    assert re.search(r"^\s+remote = dev$", config, re.M)


def test_resolve_reads_each_files_s3_version_from_the_commit(tmp_path: Path):
    commit = commit_dvc_file(tmp_path, [pushed("part-2.csv", "b2"), pushed("part-1.csv.gz", "a1"),
                                        pushed("README.md", None)])
    revision = resolve(tmp_path, "HEAD", "adult-income", "dev")
    assert revision.commit == commit
    assert [(f.name, f.version_id) for f in revision.files] == [("part-2.csv", "b2"), ("part-1.csv.gz", "a1")]
    assert revision.key(revision.files[0]) == "dvc/datasets/adult-income/part-2.csv"


@pytest.mark.parametrize(("files", "message"), [
    ([pushed("part-1.csv", None)], "part-1.csv has no S3 version on remote `dev`: the .dvc file was committed before"),
    ([pushed("2024/part-1.csv")], "2024/part-1.csv is in a subfolder"),
    ([pushed("notes.txt")], "no *.csv or *.csv.gz file"),
    ([{**pushed("part-1.csv", None), "cloud": {"lab": {"version_id": "x"}}}],
     "part-1.csv was pushed to remote `lab`, not to `dev` (the stack's)"),
    ([], "no *.csv or *.csv.gz file"),
])
def test_resolve_refuses_a_revision_the_pipeline_cannot_read(tmp_path: Path, files, message):
    commit_dvc_file(tmp_path, files)
    with pytest.raises(DataVersionError, match=re.escape(message)):
        resolve(tmp_path, "HEAD", "adult-income", "dev")


def test_resolve_names_a_missing_commit_or_dvc_file(tmp_path: Path):
    commit_dvc_file(tmp_path, [pushed("part-1.csv")])
    with pytest.raises(DataVersionError, match="--data-rev v9: not a commit of"):
        resolve(tmp_path, "v9", "adult-income", "dev")
    with pytest.raises(DataVersionError, match=r"datasets/wine\.dvc is not in commit .* `dvc add datasets/wine`"):
        resolve(tmp_path, "HEAD", "wine", "dev")


def test_stage_copies_exactly_the_revisions_versions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with moto_aws(monkeypatch) as aws:
        s3 = aws.client("s3", "eu-west-1")
        bucket = "data-bucket"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        key = "dvc/datasets/adult-income/part-1.csv"
        old = s3.put_object(Bucket=bucket, Key=key, Body=b"a\n1\n")["VersionId"]
        s3.put_object(Bucket=bucket, Key=key, Body=b"a\n2\n")
        commit_dvc_file(tmp_path, [pushed("part-1.csv", old)])
        revision = resolve(tmp_path, "HEAD", "adult-income", "dev")
        uri = stage(s3, bucket, revision)
        assert uri == f"s3://{bucket}/revisions/adult-income/{revision.commit}/"
        body = s3.get_object(Bucket=bucket, Key=f"revisions/adult-income/{revision.commit}/part-1.csv")["Body"].read()
        assert body == b"a\n1\n"
        commit_dvc_file(tmp_path, [pushed("part-1.csv", "no-such-version")])
        with pytest.raises(DataVersionError, match="version no-such-version .* pushed to this stack's data bucket"):
            stage(s3, bucket, resolve(tmp_path, "HEAD", "adult-income", "dev"))


def test_a_checkouts_digest_is_the_one_validate_records(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    frame = synthesize(1500, seed=4)
    frame.iloc[:800].to_csv(folder / "part-1.csv", index=False)
    frame.iloc[800:].to_csv(folder / "part-2.csv", index=False)
    (folder / "notes.txt").write_text("not data")
    report = validate_frame(read_csv_input(folder), ADULT).report
    assert report["input"]["sha256"] == data_versions.folder_digest(folder)
    (folder / "part-2.csv").write_text((folder / "part-2.csv").read_text().replace("\n", "\r\n", 1))
    assert data_versions.folder_digest(folder) != report["input"]["sha256"]  # one byte of one file
