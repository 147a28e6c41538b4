"""The code bundle's launcher: how a job runs the pipeline's content-hashed code instead of the image's.

A processing or training job of the pipeline has the launcher as its container entrypoint
(``python -c LAUNCHER <bundle file> <sha256> <module> [args...]``, pipelines/training.py). A
hyperparameter tuning job cannot set an entrypoint (SageMaker's HyperParameterAlgorithmSpecification
has none): its training jobs start the image as ``<entrypoint> train``, and ``python -m model_code
train`` hands over to the bundle when the job has one, a ``code`` channel holding it and its sha256
in the static hyperparameter ``mlops_code_sha256`` (``bundle_handover``).
"""

from __future__ import annotations

import json
import os
import sys

LAUNCHER = (
    "import hashlib, runpy, sys, tarfile, tempfile\n"
    "bundle, digest, module = sys.argv[1:4]\n"
    "with open(bundle, 'rb') as f:\n"
    "    actual = hashlib.sha256(f.read()).hexdigest()\n"
    "if actual != digest:\n"
    "    sys.exit(f'code bundle {bundle} has sha256 {actual}, expected {digest}')\n"
    "target = tempfile.mkdtemp(prefix='model-code-')\n"
    "with tarfile.open(bundle) as tar:\n"
    "    tar.extractall(target, filter='data')\n"
    "sys.path.insert(0, target)\n"
    "sys.argv = [module, *sys.argv[4:]]\n"
    "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
)
"""Container entrypoint program: ``python -c LAUNCHER <bundle file> <sha256> <module> [args...]``."""
BUNDLE_NAME = "model_code.tar.gz"
CODE_CHANNEL = "code"
CODE_SHA256_HYPERPARAMETER = "mlops_code_sha256"


def launcher_command(bundle_path: str, digest: str, module: str) -> list[str]:
    return ["python", "-c", LAUNCHER, bundle_path, digest, module]


def bundle_handover(args: list[str]) -> list[str] | None:
    """The command that runs ``model_code.train`` from the job's code bundle, or None when the job
    has no bundle (a training job of the image's own code)."""
    from model_code import env

    bundle = env.SM_CHANNEL_CODE.get() / BUNDLE_NAME
    config = env.SM_INPUT_CONFIG_DIR.get() / "hyperparameters.json"
    if not bundle.is_file() or not config.is_file():
        return None
    digest = json.loads(config.read_text()).get(CODE_SHA256_HYPERPARAMETER)
    if not digest:
        return None
    digest = str(digest).strip('"')
    return [sys.executable, "-c", LAUNCHER, str(bundle), digest, "model_code.train", *args]


def exec_bundle(command: list[str]) -> None:
    """Replace this process with the bundle's train (its exit code is the job's)."""
    os.execv(command[0], command)



