"""Model code of mlops-stack: what runs inside the one container image.

Imports only the standard library, its own modules and model_code/requirements.txt.

The Python floor is stated here once and enforced on import: loading a model.tar.gz uses
``tarfile``'s extraction filters (``extractall(filter="data")``), which arrived in 3.11.4; on an
older 3.11 every model load would fail with a TypeError. ``pyproject.toml`` states the same floor
(a test keeps the two equal).
"""

import sys

MIN_PYTHON = (3, 11, 4)

if sys.version_info < MIN_PYTHON:
    raise SystemExit(
        f"model_code needs Python >= {'.'.join(map(str, MIN_PYTHON))} (tarfile extraction filters); "
        f"this is {sys.version.split()[0]} at {sys.executable}"
    )
