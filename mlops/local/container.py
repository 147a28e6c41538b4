"""The container engine of local mode and of the image tests: docker or podman, whichever answers.

`make image` (scripts/image.sh) builds `model_code/Dockerfile` and tags it by the content hash of
`model_code/` (the code bundle's sha256, 12 hex digits), so the image of this checkout has a
reference computed here without asking the engine (`image_reference`). Podman runs with the
project's `containers.conf` (rlimits and runtime this kind of machine needs; ../shared/CONTAINERS.md)
unless the caller set `CONTAINERS_CONF`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlops.settings import REPO_ROOT
from pipelines.bundle import build_bundle

IMAGE_NAME = "mlops-stack-model"
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
IMAGE_SCRIPT = REPO_ROOT / "scripts" / "image.sh"
ENGINE_ENV = "MLOPS_CONTAINER_ENGINE"
"""Environment variable: `docker` or `podman` to choose the engine (default: docker if it answers, else podman)."""
REQUIRE_ENV = "MLOPS_REQUIRE_CONTAINER"
"""Environment variable: `1` turns "no container engine" from a skipped image test into a failure (CI sets it)."""


class ContainerError(RuntimeError):
    """No engine, or the image could not be built."""


@dataclass(frozen=True)
class Engine:
    name: str  # docker | podman

    def environment(self) -> dict[str, str]:
        extra = {"CONTAINERS_CONF": str(CONTAINERS_CONF)} if self.name == "podman" else {}
        return {**extra, **os.environ}

    def run(self, *args: str, timeout: float = 120, check: bool = False,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`<engine> args...`, output captured as text."""
        return subprocess.run([self.name, *args], env=self.environment(), capture_output=True, text=True,
                              timeout=timeout, check=check, input=input)

    def image_exists(self, reference: str) -> bool:
        return self.run("image", "inspect", reference, timeout=60).returncode == 0

    def image_reference(self) -> str:
        """The reference `make image` gives the image of this checkout's model_code/."""
        reference = f"{IMAGE_NAME}:{build_bundle().sha256[:12]}"
        return f"localhost/{reference}" if self.name == "podman" else reference


def _answers(name: str) -> bool:
    if shutil.which(name) is None:
        return False
    try:
        return subprocess.run([name, "info"], capture_output=True, timeout=60, check=False,
                              env=Engine(name).environment()).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def find_engine() -> Engine | None:
    """The engine to use, or None when this machine has none that answers."""
    chosen = os.environ.get(ENGINE_ENV, "")
    if chosen:
        if chosen not in ("docker", "podman"):
            raise ContainerError(f"{ENGINE_ENV}={chosen!r}: expected docker or podman")
        return Engine(chosen) if _answers(chosen) else None
    for name in ("docker", "podman"):
        if _answers(name):
            return Engine(name)
    return None


def ensure_image(engine: Engine) -> str:
    """The image of this checkout, built with `make image`'s script if the engine lacks it.

    Concurrent callers (pytest-xdist workers) wait for one build instead of racing.
    """
    reference = engine.image_reference()
    if engine.image_exists(reference):
        return reference
    lock_path = REPO_ROOT / ".cache" / "image.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if engine.image_exists(reference):
            return reference
        result = subprocess.run(["bash", str(IMAGE_SCRIPT)], capture_output=True, text=True, check=False,
                                env={**engine.environment(), ENGINE_ENV: engine.name}, timeout=1800)
        if result.returncode != 0:
            raise ContainerError(f"make image failed: {result.stderr.strip()[-2000:]}")
        built = result.stdout.strip().split()[-1]
        if built != reference:
            raise ContainerError(f"make image built {built}, expected {reference}")
    return reference
