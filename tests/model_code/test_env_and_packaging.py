"""The container contract: imports, environment variables, requirements, Dockerfile, entrypoint."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import model_code
from model_code import env
from model_code.__main__ import STEPS, main

PKG = Path(model_code.__file__).resolve().parent
MODULES = sorted(PKG.rglob("*.py"))  # packages (serve/) too
# import name -> distribution in requirements.txt
IMPORT_TO_DIST = {
    "numpy": "numpy", "pandas": "pandas", "sklearn": "scikit-learn", "matplotlib": "matplotlib",
    "joblib": "joblib", "mlflow": "mlflow-skinny", "cloudpickle": "cloudpickle", "boto3": "boto3",
    "botocore": "boto3", "scipy": "scipy", "gunicorn": "gunicorn", "uvicorn": "uvicorn",
    "uvicorn_worker": "uvicorn-worker", "httptools": "httptools", "prometheus_client": "prometheus-client",
    "msgspec": "msgspec", "threadpoolctl": "threadpoolctl", "yaml": "pyyaml",
    "onnx": "onnx", "onnxruntime": "onnxruntime", "skl2onnx": "skl2onnx",
}
# distributions in requirements.txt that nothing imports: plugins MLflow loads by entry point
# (distribution -> (entry-point group, name)); sagemaker-mlflow resolves `arn:` tracking URIs.
PLUGINS = {"sagemaker-mlflow": ("mlflow.tracking_store", "arn")}
# distributions a library imports by the name the code gives it: uvicorn's loop="uvloop" (serve.transport)
BY_NAME = {"uvloop": "uvloop"}
# distributions pinned so that the image runs what the tests ran, though imported only through another:
# onnx's protobuf, held at the control plane's version (pulumi-policy requires protobuf 5)
PINNED_FOR = {"protobuf": "onnx"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (PKG / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[0-9][0-9A-Za-z.]*", version), f"not pinned with ==: {line!r}"
            pins[name.lower()] = version
    return pins


def test_modules_import_only_stdlib_own_code_and_requirements():
    pins = _requirements()
    used = set()
    for path in MODULES:
        for name in _imports(path):
            if name in sys.stdlib_module_names or name == "model_code":
                continue
            assert name in IMPORT_TO_DIST, f"{path.name} imports {name!r}, not stdlib nor a requirement"
            assert IMPORT_TO_DIST[name] in pins, f"{path.name} imports {name!r}; add it to requirements.txt"
            used.add(IMPORT_TO_DIST[name])
    unused = set(pins) - used - set(PLUGINS) - set(BY_NAME) - {d for d, by in PINNED_FOR.items() if by in used}
    assert not unused, f"requirements not imported anywhere: {unused}"


def test_requirements_loaded_by_name_import():
    import importlib

    from model_code.serve.transport import Worker

    assert Worker.CONFIG_KWARGS["loop"] == "uvloop"
    for dist, module in BY_NAME.items():
        assert dist in _requirements()
        importlib.import_module(module)


def test_plugin_requirements_register_their_entry_points():
    from importlib.metadata import entry_points

    pins = _requirements()
    for dist, (group, name) in PLUGINS.items():
        assert dist in pins
        points = [p for p in entry_points(group=group) if p.name == name]
        assert points and points[0].dist is not None and points[0].dist.name.lower() == dist, (group, name, points)


def test_model_code_runs_from_a_folder_holding_only_itself_and_its_problem(tmp_path):
    """The code bundle's layout: model_code/ and the problem beside it as problem/ (pipelines/bundle.py)."""
    shutil.copytree(PKG, tmp_path / "model_code", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PKG.parent / "problems" / "wine", tmp_path / "problem")
    code = ("import model_code.validate, model_code.preprocess, model_code.train, model_code.evaluate, "
            "model_code.model, model_code.baseline, model_code.data, model_code.env, model_code.__main__; "
            "import sys; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('mlops', 'infra', 'pipelines', 'policies', 'tests')]; assert not bad, bad; "
            "from model_code.problem import step_problem; p = step_problem(); "
            "assert p.name == 'wine' and p.sample_path.is_file(), p")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False,
                       env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr


def test_only_env_py_reads_the_environment():
    for path in MODULES:
        if path.name == "env.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            # os.environ / os.getenv, or `from os import environ, getenv`
            name = node.attr if isinstance(node, ast.Attribute) else None
            if isinstance(node, ast.alias):
                name = node.name
            assert name not in {"environ", "getenv", "environb"}, \
                f"{path.name}:{getattr(node, 'lineno', '?')} reads the environment directly; use model_code.env"


def test_every_environment_name_in_the_code_is_declared():
    pattern = re.compile(r"""["'](SM_[A-Z_]+|MLFLOW_[A-Z_]+|MLOPS_[A-Z_]+)["']""")
    for path in MODULES:
        for name in pattern.findall(path.read_text()):
            assert name in env.NAMES, f"{path.name} uses undeclared environment variable {name}"
    for var in env.ALL:
        assert var.doc, var.name
    assert len(env.NAMES) == len(env.ALL)


def test_env_var_parsing():
    assert env.SM_MODEL_DIR.get({}) == Path("/opt/ml/model")
    assert env.SM_MODEL_DIR.get({"SM_MODEL_DIR": "/tmp/m"}) == Path("/tmp/m")
    assert env.MLFLOW_TRACKING_URI.get({"MLFLOW_TRACKING_URI": ""}) is None
    assert env.MLFLOW_ALLOW_FILE_STORE.get({"MLFLOW_ALLOW_FILE_STORE": "Yes"}) is True
    with pytest.raises(env.EnvError, match="MLFLOW_ALLOW_FILE_STORE='maybe' is invalid"):
        env.MLFLOW_ALLOW_FILE_STORE.get({"MLFLOW_ALLOW_FILE_STORE": "maybe"})
    assert env.provenance({"MLOPS_GIT_SHA": "abc", "MLOPS_IMAGE_URI": ""}) == {"MLOPS_GIT_SHA": "abc"}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_entrypoint_step_resolves(step, capsys):
    with pytest.raises(SystemExit) as exc:
        main([step, "--help"])
    assert exc.value.code == 0
    assert f"python -m model_code.{step}" in capsys.readouterr().out


def test_entrypoint_rejects_unknown_steps_and_lists_env(capsys):
    assert main(["serve-everything"]) == 2
    assert "unknown step 'serve-everything'" in capsys.readouterr().err
    assert main(["env"]) == 0
    assert "SM_CHANNEL_TRAIN" in capsys.readouterr().out


def _stages(dockerfile: str) -> list[list[str]]:
    stages: list[list[str]] = []
    for line in dockerfile.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_contract():
    text = (PKG / "Dockerfile").read_text()
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert arg and re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*@sha256:[0-9a-f]{64}", arg.group(1))
    stages = _stages(text)
    assert len(stages) >= 2, "multi-stage build expected"
    assert all(s[0].split()[1] == "${PYTHON_IMAGE}" for s in stages), "every stage uses the pinned base"
    final = "\n".join(stages[-1])
    # SageMaker's contract: root (tests/image/ shows a non-root user failing on root-owned mounts)
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users and users[-1] in ("root", "0", "0:0"), "final stage must run as root (SageMaker's contract)"
    assert 'ENTRYPOINT ["python", "-m", "model_code"]' in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final), "no build tooling in the final stage"
    assert "--only-binary=:all:" in text
    for line in stages[0] + stages[-1]:
        if line.startswith("COPY") and "--from" not in line:
            src = line.split()[-2]
            assert (PKG / src).exists(), f"COPY source {src} is not in the model_code/ build context"


def test_python_floor_is_stated_once_and_matches_the_distribution():
    import tomllib

    project = tomllib.loads((PKG.parent / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=" + ".".join(map(str, model_code.MIN_PYTHON))
    result = subprocess.run(
        [sys.executable, "-c", "import sys; sys.version_info = (3, 11, 2, 'final', 0); import model_code"],
        capture_output=True, text=True, cwd=PKG.parent, check=False)
    assert result.returncode == 1
    assert "model_code needs Python >= 3.11.4 (tarfile extraction filters)" in result.stderr
