"""Shared fixtures: the offline plan of every stack file in the repo, computed once per session."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pandas as pd
import pytest

from mlops.plan import Plan, plan_stack_file
from mlops.settings import StackSettings, load_stack, stack_file, stack_names

STACKS = stack_names()

# `make test` runs two workers on the machine's two cores: one OpenMP thread each (the tests' own fits and every
# process and local job they start), and threads that spin briefly at barriers where a process sets more
# (mlops/local/runners.py measures it). Two Adult Train jobs at once on 2 cores: 7.5 s wall with one thread each,
# 11.4 s with two spinning briefly. Set before any test module loads scikit-learn's OpenMP runtime.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GOMP_SPINCOUNT", "1000")


@pytest.fixture(scope="session")
def plans() -> dict[str, Plan]:
    return {name: plan_stack_file(stack_file(name)) for name in STACKS}


IMAGE_TAG = "0123abc"


@pytest.fixture(scope="session")
def plans_with_image() -> dict[str, Plan]:
    """Plans as CI makes them after pushing an image: `-c imageTag=<sha>`."""
    return {name: plan_stack_file(stack_file(name), {"mlops-stack:imageTag": IMAGE_TAG}) for name in STACKS}


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    """Parametrizes a test over every Pulumi.<stack>.yaml: a new stack file is tested at once."""
    return request.param


@pytest.fixture
def plan(plans: dict[str, Plan], stack: str) -> Plan:
    return plans[stack]


@pytest.fixture
def settings(stack: str) -> StackSettings:
    return load_stack(stack)


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4,000 rows of the bundled dataset as a CSV file: the same schema, a faster pipeline run."""
    from mlops.settings import REPO_ROOT

    with gzip.open(REPO_ROOT / "problems" / "adult" / "data.csv.gz", "rt") as source:
        frame = pd.read_csv(source, nrows=4000)
    path = tmp_path_factory.mktemp("data") / "sample.csv"
    frame.to_csv(path, index=False)
    return path
