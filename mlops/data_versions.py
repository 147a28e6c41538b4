"""Data versions with DVC: a pipeline run on a DVC revision of a dataset, and that data checked out again.

The repository is a DVC project (`.dvc/config`). Its remote `dev` is `s3://<dev data bucket>/dvc/`, and it
has `version_aware = true`. `dvc push` uploads a tracked folder `datasets/<dataset>/` to
`dvc/datasets/<dataset>/<file>`, under the remote's own prefix, so nothing lands in the pipeline's default input,
`datasets/<dataset>/`. It writes each file's S3 VersionId into `datasets/<dataset>.dvc`, which is then committed.
A revision is that commit: its `.dvc` file names every file by md5 and S3 version, and the run reads those
versions even after newer pushes overwrite the keys.

- `resolve` reads the `.dvc` file at a revision from git (no DVC needed): the commit and each file's version.
- `stage` copies exactly those object versions, server-side, under `revisions/<dataset>/<commit>/` of the data
  bucket: the run's InputDataUri. The remote's prefix holds the newest versions only, and keeps files a later
  revision dropped (DVC never deletes from a remote), so the run does not read it.
- The run records the commit (pipeline parameter DataRevision, the package's `dvc_rev`). Validate records the
  digest of what it read (`data_sha256`, model_code.data.dataset_digest).
- `checkout_package` gets a model version's data back with `dvc get --rev <dvc_rev>`. The bucket's lifecycle
  expires noncurrent versions (`noncurrentVersionExpiryDays`), so when a version is gone it falls back to the
  run's own copy under `revisions/`, which is current and kept. Either way it checks the digest against the
  package's `data_sha256`.

The DVC CLI comes from `.venv-dvc/` (`make .venv-dvc/.installed`; requirements-dvc.txt says why a venv of its
own), `$MLOPS_DVC`, or `dvc` on PATH. In local mode it reaches the embedded AWS through AWS_ENDPOINT_URL, which
botocore reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops.settings import REPO_ROOT
from model_code.data import CSV_SUFFIXES, dataset_digest, sha256_file  # what Validate reads of a folder, and its digest

DATASETS_DIR = "datasets"
REMOTE_PREFIX = "dvc/"  # the remote's URL in .dvc/config: s3://<data bucket>/dvc/
REVISIONS_PREFIX = "revisions/"


class DataVersionError(ValueError):
    """A revision, dataset or checkout that cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class VersionedFile:
    name: str
    md5: str
    version_id: str


@dataclass(frozen=True)
class DataRevision:
    commit: str
    dataset: str
    files: tuple[VersionedFile, ...]

    def key(self, file: VersionedFile) -> str:
        """Where `dvc push` put the file: a version-aware remote keeps the file's path in the repository."""
        return f"{REMOTE_PREFIX}{DATASETS_DIR}/{self.dataset}/{file.name}"

    @property
    def staged_prefix(self) -> str:
        return staged_prefix(self.dataset, self.commit)


def staged_prefix(dataset: str, commit: str) -> str:
    return f"{REVISIONS_PREFIX}{dataset}/{commit}/"


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        raise DataVersionError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else
                               f"git {' '.join(args)} failed in {repo}")
    return result.stdout


def resolve(repo: Path, rev: str, dataset: str, remote: str) -> DataRevision:
    """The files of `datasets/<dataset>` at git revision `rev` of `repo`, each with its S3 version on `remote`."""
    try:
        commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except DataVersionError:
        raise DataVersionError(f"--data-rev {rev}: not a commit of {repo}") from None
    dvc_file = f"{DATASETS_DIR}/{dataset}.dvc"
    try:
        text = _git(repo, "show", f"{commit}:{dvc_file}")
    except DataVersionError:
        raise DataVersionError(f"{dvc_file} is not in commit {commit[:12]} of {repo}: track the folder with "
                               f"`dvc add {DATASETS_DIR}/{dataset}`, `dvc push -r {remote}`, then commit the "
                               f".dvc file") from None
    out = ((yaml.safe_load(text) or {}).get("outs") or [{}])[0]
    files = out.get("files")
    not_pushed = f"the .dvc file was committed before `dvc push -r {remote}` (push, then commit)"
    if not isinstance(files, list):
        # `dvc add` of a folder records its .dir hash; a version-aware push replaces it by the files and versions
        what = "records no files and S3 versions" if str(out.get("md5", "")).endswith(".dir") else \
            f"tracks a file, not the folder {DATASETS_DIR}/{dataset}/"
        raise DataVersionError(f"{dvc_file} at {commit[:12]}: {what}: {not_pushed}")
    versioned = []
    for entry in files:
        name = str(entry.get("relpath", ""))
        if not name.endswith(CSV_SUFFIXES):
            continue
        if "/" in name:
            raise DataVersionError(f"{dvc_file} at {commit[:12]}: {name} is in a subfolder; the pipeline reads the "
                                   f"CSV files at the top of {DATASETS_DIR}/{dataset}/")
        clouds = entry.get("cloud") or {}
        version = (clouds.get(remote) or {}).get("version_id")
        if not version and clouds:
            raise DataVersionError(f"{dvc_file} at {commit[:12]}: {name} was pushed to remote "
                                   f"{', '.join(f'`{r}`' for r in sorted(clouds))}, not to `{remote}` (the stack's)")
        if not version:
            raise DataVersionError(f"{dvc_file} at {commit[:12]}: {name} has no S3 version on remote `{remote}`: "
                                   f"{not_pushed}")
        versioned.append(VersionedFile(name, str(entry.get("md5", "")), str(version)))
    if not versioned:
        raise DataVersionError(f"{dvc_file} at {commit[:12]}: no *.csv or *.csv.gz file")
    return DataRevision(commit, dataset, tuple(versioned))


def stage(s3: Any, bucket: str, revision: DataRevision) -> str:
    """Copy the revision's object versions under `revisions/<dataset>/<commit>/`; that prefix's s3:// URI. A
    managed copy: multipart above CopyObject's 5 GB."""
    from botocore.exceptions import ClientError

    for file in revision.files:
        source = {"Bucket": bucket, "Key": revision.key(file), "VersionId": file.version_id}
        try:
            s3.copy(source, bucket, f"{revision.staged_prefix}{file.name}")
        except ClientError as error:
            raise DataVersionError(
                f"s3://{bucket}/{revision.key(file)} version {file.version_id} (revision {revision.commit[:12]}): "
                f"{error.response.get('Error', {}).get('Code', error)}; pushed to this stack's data bucket, and "
                f"not yet expired (noncurrentVersionExpiryDays)?"
            ) from None
    return f"s3://{bucket}/{revision.staged_prefix}"


def dvc_command() -> list[str]:
    for candidate in (os.environ.get("MLOPS_DVC"), str(REPO_ROOT / ".venv-dvc" / "bin" / "dvc"), shutil.which("dvc")):
        if candidate and Path(candidate).is_file():
            return [candidate]
    raise DataVersionError("dvc not found: `make .venv-dvc/.installed`, set MLOPS_DVC, or put dvc on PATH")


def checkout(repo: Path, revision: str, dataset: str, output: Path) -> Path:
    """`dvc get` of `datasets/<dataset>` at `revision` into `output` (which must not exist); the folder."""
    result = subprocess.run(
        [*dvc_command(), "get", str(repo), f"{DATASETS_DIR}/{dataset}", "--rev", revision, "-o", str(output)],
        capture_output=True, text=True, check=False, timeout=600,
    )
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise DataVersionError(f"dvc get {DATASETS_DIR}/{dataset} --rev {revision[:12]}: "
                               f"{lines[-1] if lines else f'exit {result.returncode}'}")
    return output


def folder_digest(folder: Path) -> str:
    """The digest Validate records for the CSV files at the top of `folder` (model_code.data.dataset_digest)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(CSV_SUFFIXES))
    return dataset_digest({p.name: sha256_file(p) for p in files})


@dataclass(frozen=True)
class CheckedOut:
    folder: Path
    revision: str
    source: str
    sha256: str
    expected: str


def checkout_package(package: Any, repo: Path, output: Path, s3: Any, bucket: str) -> CheckedOut:
    """The data a registered model package (mlops.registry.ModelPackage) was trained on, by its `dvc_rev`: with
    `dvc get`, else from the run's copy; its digest beside the package's `data_sha256`."""
    from pipelines.training import DATA_SHA256_KEY, DVC_REVISION_KEY, NO_DVC_REVISION

    revision = package.metadata.get(DVC_REVISION_KEY, NO_DVC_REVISION)
    if revision == NO_DVC_REVISION:
        raise DataVersionError(f"model package {package.arn} was not trained on a DVC revision (no {DVC_REVISION_KEY};"
                               f" its run was not started with --data-rev)")
    if output.exists():
        raise DataVersionError(f"--output {output}: exists; give a new folder")
    dataset = package.metadata.get("problem", "")
    expected = package.metadata.get(DATA_SHA256_KEY, "")
    try:
        try:
            folder, source = checkout(repo, revision, dataset, output), "dvc get"
        except DataVersionError as dvc_failed:
            shutil.rmtree(output, ignore_errors=True)  # what a failed dvc get left: the folder did not exist before
            folder, source = _download_staged(s3, bucket, staged_prefix(dataset, revision), output, dvc_failed)
    except BaseException:  # failed or interrupted (Ctrl-C): no half-written folder for the next try to refuse
        shutil.rmtree(output, ignore_errors=True)
        raise
    return CheckedOut(folder, revision, source, folder_digest(folder), expected)


def _download_staged(s3: Any, bucket: str, prefix: str, output: Path, dvc_failed: Exception) -> tuple[Path, str]:
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    if not keys:
        raise DataVersionError(f"{dvc_failed}; and s3://{bucket}/{prefix} (the run's copy) is empty") from None
    output.mkdir(parents=True)
    for key in keys:
        s3.download_file(bucket, key, str(output / key.removeprefix(prefix)))
    return output, f"the run's copy s3://{bucket}/{prefix} ({dvc_failed})"
