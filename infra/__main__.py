"""Pulumi entry point: settings -> components -> exports (see infra/platform.py)."""

from infra.platform import build_platform
from mlops.settings import from_pulumi_config

build_platform(from_pulumi_config())
