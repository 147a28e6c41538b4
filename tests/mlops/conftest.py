"""Fixtures of every control-plane test against moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlops.registry import Aws
from tests.mlops.moto_aws import RecordedScores


@pytest.fixture(autouse=True)
def scores(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RecordedScores]]:
    """The comparison job `release promote` starts, replaced by the recorded scores (see RecordedScores)."""
    from mlops import release

    made: list[RecordedScores] = []

    def jobs(aws: Aws, region: str, source: object = None) -> RecordedScores:
        made.append(RecordedScores(aws, region))
        return made[-1]

    monkeypatch.setattr(release, "SageMakerJobs", jobs)
    yield made
