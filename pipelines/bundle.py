"""The code bundle: a deterministic tar.gz of ``model_code/`` and the stack's problem declaration,
addressed by its content hash.

Pipeline steps run the bundle, not whatever the image happens to hold, and the pipeline definition
references it only by S3 URI (``s3://<artifacts bucket>/code/<sha256>/model_code.tar.gz``), so
building the definition uploads nothing and the same code always has the same key. Infra uploads
the bytes (``pulumi up``); the CLI builds the same bytes for local runs.

Determinism: entries sorted by path, every mtime/uid/gid zeroed and owner names empty, modes
normalised (0644 files, 0755 directories and executables), PAX-free ``GNU`` format, gzip header
mtime 0 and no file name. Excluded: ``__pycache__/``, ``*.pyc``/``*.pyo``, ``tests/`` and
tool caches. The same tree gives byte-identical archives on any machine.

The problem folder (``mlops-stack:problem``) goes in as ``problem/`` beside ``model_code/``, where
``model_code/problem.py`` finds it; its sample data stays out (the pipeline's input is the data).

Only the standard library is imported here: infra and the CLI import this module.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = REPO_ROOT / "model_code"
ARCHIVE_ROOT = "model_code"
PROBLEM_ROOT = "problem"
"""Top-level folder inside the archive: extract it anywhere and put that folder on PYTHONPATH."""
BUNDLE_NAME = "model_code.tar.gz"
KEY_PREFIX = "code"

EXCLUDED_DIRS = frozenset({"__pycache__", "tests", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Bundle:
    """The archive bytes and their sha256 (hex)."""

    data: bytes
    sha256: str

    @property
    def key(self) -> str:
        return bundle_key(self.sha256)

    def uri(self, bucket: str) -> str:
        return bundle_uri(bucket, self.sha256)


def bundle_key(digest: str) -> str:
    """S3 key of the bundle with this sha256 in the artifacts bucket: ``code/<digest>/model_code.tar.gz``."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{digest!r} is not a sha256 hex digest (64 lowercase hex characters)")
    return f"{KEY_PREFIX}/{digest}/{BUNDLE_NAME}"


def bundle_uri(bucket: str, digest: str) -> str:
    """``s3://<bucket>/code/<digest>/model_code.tar.gz``."""
    return f"s3://{bucket}/{bundle_key(digest)}"


def digest_of_uri(uri: str) -> str:
    """The sha256 that a bundle URI (as made by ``bundle_uri``) is addressed by."""
    parts = uri.removeprefix("s3://").split("/")
    if not uri.startswith("s3://") or len(parts) != 4 or parts[1] != KEY_PREFIX or parts[3] != BUNDLE_NAME:
        raise ValueError(f"{uri!r} is not a code bundle URI (s3://<bucket>/{KEY_PREFIX}/<sha256>/{BUNDLE_NAME})")
    bundle_key(parts[2])  # validates the digest
    return parts[2]


def bundle_files(source: Path = SOURCE_DIR) -> list[Path]:
    """Files that go into the bundle, sorted by their path relative to ``source``."""
    if not source.is_dir():
        raise FileNotFoundError(f"code bundle source {source} is not a directory")
    files = []
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if any(part in EXCLUDED_DIRS for part in relative.parts):
            continue
        if path.is_file() and not path.name.endswith(EXCLUDED_SUFFIXES):
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(source).as_posix())


def _info(name: str, *, directory: bool = False, size: int = 0, executable: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory or executable else 0o644
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_tree(tar: tarfile.TarFile, source: Path, root: str, files: list[Path]) -> None:
    directories = sorted(
        {parent.as_posix() for f in files for parent in f.relative_to(source).parents if parent != Path(".")}
    )
    tar.addfile(_info(root, directory=True))
    for directory in directories:
        tar.addfile(_info(f"{root}/{directory}", directory=True))
    for path in files:
        data = path.read_bytes()
        executable = bool(path.stat().st_mode & 0o111)
        info = _info(f"{root}/{path.relative_to(source).as_posix()}", size=len(data), executable=executable)
        tar.addfile(info, io.BytesIO(data))


def problem_files(problem: Path, sample: str = "") -> list[Path]:
    """The problem folder's files but its sample data (``sample``, relative to the folder)."""
    excluded = (problem / sample).resolve() if sample else None
    return [p for p in bundle_files(problem) if p.resolve() != excluded]


def build_bundle(source: Path = SOURCE_DIR, root: str = ARCHIVE_ROOT, problem: Path | None = None,
                 problem_sample: str = "") -> Bundle:
    """The deterministic tar.gz of ``source`` under folder ``root`` (and of ``problem`` under
    ``problem/``, without its sample ``problem_sample``) and its sha256."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        _add_tree(tar, source, root, bundle_files(source))
        if problem is not None:
            _add_tree(tar, problem, PROBLEM_ROOT, problem_files(problem, problem_sample))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    data = compressed.getvalue()
    return Bundle(data=data, sha256=hashlib.sha256(data).hexdigest())
