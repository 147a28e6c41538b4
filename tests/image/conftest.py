"""The image as SageMaker runs it: built by `make image`'s script, run by docker or podman.

No container engine: the tests here are skipped with that reason (`make test` lists it), unless
MLOPS_REQUIRE_CONTAINER=1 (CI sets it), which makes a missing engine a failure.
"""

from __future__ import annotations

import os

import pytest

from mlops.local.container import REQUIRE_ENV, Engine, ensure_image, find_engine


@pytest.fixture(scope="session")
def engine() -> Engine:
    found = find_engine()
    if found is None:
        message = "no container engine (docker or podman) answers on this machine: image tests not run"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message}, and {REQUIRE_ENV}=1 requires them")
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def image(engine: Engine) -> str:
    """The image of this checkout (built with `make image`'s script when missing)."""
    return ensure_image(engine)
