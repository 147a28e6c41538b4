"""`python -m model_code.quality`: the quality job (as `python -m model_code quality`)."""

import sys

from model_code.quality.job import main

sys.exit(main())
