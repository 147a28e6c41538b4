"""The code bundle: deterministic bytes, content-addressed key, what goes in, and that it runs."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pipelines.bundle import (
    SOURCE_DIR,
    build_bundle,
    bundle_key,
    bundle_uri,
    digest_of_uri,
)
from pipelines.training import launcher_entrypoint


def make_source(root: Path) -> Path:
    source = root / "model_code"
    (source / "sub").mkdir(parents=True)
    (source / "__init__.py").write_text("")
    (source / "hello.py").write_text(
        "import sys\nfrom model_code.sub.words import WORD\n"
        "if __name__ == '__main__':\n    print(WORD, *sys.argv[1:])\n"
    )
    (source / "sub" / "__init__.py").write_text("")
    (source / "sub" / "words.py").write_text("WORD = 'hello from the bundle'\n")
    return source


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def test_same_tree_same_bytes_regardless_of_mtimes_and_owners(tmp_path: Path) -> None:
    source = make_source(tmp_path / "a")
    first = build_bundle(source)
    for path in source.rglob("*"):
        os.utime(path, (1_000_000, 2_000_000))
    copy = tmp_path / "b" / "model_code"
    shutil.copytree(source, copy)  # different directory, creation order and times
    assert build_bundle(source) == first
    assert build_bundle(copy) == first
    assert first.sha256 == hashlib.sha256(first.data).hexdigest()


def test_archive_metadata_is_zeroed_and_sorted(tmp_path: Path) -> None:
    data = build_bundle(make_source(tmp_path)).data
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime
    infos = members(data)
    assert [i.name for i in infos] == [
        "model_code",
        "model_code/sub",
        "model_code/__init__.py",
        "model_code/hello.py",
        "model_code/sub/__init__.py",
        "model_code/sub/words.py",
    ]
    for info in infos:
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
        assert info.mode == (0o755 if info.isdir() else 0o644)


def test_changing_adding_or_removing_a_file_changes_the_digest(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    original = build_bundle(source).sha256
    (source / "sub" / "words.py").write_text("WORD = 'changed'\n")
    changed = build_bundle(source).sha256
    (source / "extra.py").write_text("")
    added = build_bundle(source).sha256
    (source / "extra.py").unlink()
    assert len({original, changed, added}) == 3
    assert build_bundle(source).sha256 == changed


def test_caches_compiled_files_and_tests_are_left_out(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    clean = build_bundle(source)
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "hello.cpython-311.pyc").write_bytes(b"\0")
    (source / "stray.pyc").write_bytes(b"\0")
    (source / "tests").mkdir()
    (source / "tests" / "test_x.py").write_text("")
    assert build_bundle(source) == clean


def test_the_real_model_code_bundle_is_deterministic_and_complete() -> None:
    first, second = build_bundle(), build_bundle()
    assert first == second
    names = {i.name for i in members(first.data)}
    for module in ("__init__", "__main__", "validate", "preprocess", "train", "evaluate"):
        assert f"model_code/{module}.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert SOURCE_DIR.name == "model_code"


def test_bundle_key_and_uri() -> None:
    digest = "0123456789abcdef" * 4
    assert bundle_key(digest) == f"code/{digest}/model_code.tar.gz"
    assert bundle_uri("artifacts", digest) == f"s3://artifacts/code/{digest}/model_code.tar.gz"
    assert digest_of_uri(bundle_uri("artifacts", digest)) == digest
    with pytest.raises(ValueError, match="is not a sha256 hex digest"):
        bundle_key("ABC")
    with pytest.raises(ValueError, match="is not a code bundle URI"):
        digest_of_uri("s3://artifacts/model_code.tar.gz")


def test_bundle_imports_only_the_standard_library() -> None:
    code = "import sys, pipelines.bundle; print(sorted(m for m in sys.modules if m.split('.')[0] in {'mlops', 'sagemaker', 'boto3'}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2], capture_output=True,
                            text=True, check=True, timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert result.stdout.strip() == "[]"


# --- the launcher, as the containers run it ---------------------------------------------------------


def run_launcher(tmp_path: Path, digest: str | None = None) -> subprocess.CompletedProcess[str]:
    bundle = build_bundle(make_source(tmp_path / "src"))
    path = tmp_path / "input" / "model_code.tar.gz"
    path.parent.mkdir()
    path.write_bytes(bundle.data)
    command = launcher_entrypoint(str(path), digest or bundle.sha256, "model_code.hello")
    command[0] = sys.executable
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([*command, "--flag", "value"], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_launcher_runs_the_module_from_the_bundle_with_its_arguments(tmp_path: Path) -> None:
    result = run_launcher(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from the bundle --flag value\n"


def test_launcher_refuses_a_bundle_with_another_digest(tmp_path: Path) -> None:
    result = run_launcher(tmp_path, digest="0" * 64)
    assert result.returncode == 1
    assert "has sha256" in result.stderr and "expected " + "0" * 64 in result.stderr


def test_gzip_stream_is_plain(tmp_path: Path) -> None:
    data = build_bundle(make_source(tmp_path)).data
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
        assert gz.read()[257:262] == b"ustar"  # a tar stream inside


def test_the_stack_problem_rides_beside_model_code_without_its_sample() -> None:
    from mlops.settings import load_stack
    from pipelines.training import code_bundle

    settings = load_stack("dev")
    names = {m.name for m in members(code_bundle(settings).data)}
    assert {"problem", "problem/problem.yaml", "problem/DATASET.md"} <= names
    assert "problem/data.csv.gz" not in names and "model_code/train.py" in names
    assert code_bundle(settings).sha256 != build_bundle().sha256  # a problem edit is a new bundle, a new key


def test_a_bundled_step_reads_the_bundled_problem(tmp_path: Path) -> None:
    """What the launcher does in a SageMaker job: extract, run a step; it finds problem/ itself."""
    import dataclasses

    from mlops.settings import load_stack
    from pipelines.training import code_bundle

    settings = dataclasses.replace(load_stack("dev"), problem="problems/wine", evaluation_min_metric="")
    with tarfile.open(fileobj=io.BytesIO(code_bundle(settings).data)) as tar:
        tar.extractall(tmp_path, filter="data")
    code = "from model_code.problem import step_problem; print(step_problem().name)"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "wine"
