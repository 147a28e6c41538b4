"""Entry point of the policy pack for the Pulumi analyzer (``pulumi preview --policy-pack policies``).

Only assembles the pack. Constructing ``PolicyPack`` starts the analyzer's gRPC server and blocks
forever, so nothing may import this module: the CLI and the tests use ``policies.rules`` and
``policies.offline`` instead.
"""

import sys
from pathlib import Path

# The analyzer runs this file with policies/ as the working directory and as sys.path[0], so the
# package `policies` itself is not importable from here. Put the repository root first so the rules
# resolve as `policies.rules`, exactly as they do for `mlops infra plan` and the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack  # noqa: E402

from policies.rules import ALL_POLICIES, PACK_ENFORCEMENT_LEVEL, PACK_NAME  # noqa: E402

PolicyPack(name=PACK_NAME, enforcement_level=PACK_ENFORCEMENT_LEVEL, policies=ALL_POLICIES)
