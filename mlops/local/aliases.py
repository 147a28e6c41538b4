"""MLflow aliases that follow the model registry: `champion` and `challenger`.

The SageMaker model registry decides (approval is the release gate); MLflow mirrors it, so
`models:/<group>@champion` loads what the dev endpoint serves and `@challenger` what waits for
approval:

- champion: the MLflow version of the newest Approved model package;
- challenger: the version of the newest PendingManualApproval package registered after the champion.

A version is matched to its package by the tag `model_package_arn` that `run_local` sets. An alias
whose package is missing is removed. Called after every local registration and approval.
"""

from __future__ import annotations

from pathlib import Path

from mlops.local import tracking
from mlops.naming import Names
from mlops.registry import APPROVED, PENDING, Aws, list_packages
from mlops.settings import StackSettings

CHAMPION, CHALLENGER = "champion", "challenger"


def sync_aliases(settings: StackSettings, state_dir: Path, aws: Aws) -> dict[str, str]:
    """Point the aliases at the registry's champion and challenger; returns {alias: version}."""
    import mlflow

    name = Names.of(settings).model_package_group
    client = mlflow.MlflowClient(tracking.store_uri(state_dir))
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        return {}
    # The newest version of each package ARN: a restarted embedded AWS numbers its packages from 1 again.
    versions: dict[str, int] = {}
    for v in client.search_model_versions(f"name = '{name}'"):
        arn = v.tags.get("model_package_arn", "")
        versions[arn] = max(versions.get(arn, 0), int(v.version))
    packages = list_packages(settings, aws=aws)  # newest first
    champion = next((p for p in packages if p.status == APPROVED), None)
    challenger = next((p for p in packages if p.status == PENDING
                       and (champion is None or p.created > champion.created)), None)
    aliases: dict[str, str] = {}
    for alias, package in ((CHAMPION, champion), (CHALLENGER, challenger)):
        version = versions.get(package.arn) if package else None
        if version is None:
            if alias in client.get_registered_model(name).aliases:
                client.delete_registered_model_alias(name, alias)
            continue
        client.set_registered_model_alias(name, alias, str(version))
        aliases[alias] = str(version)
    return aliases
