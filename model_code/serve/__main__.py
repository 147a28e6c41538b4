"""`python -m model_code.serve`: the same as `python -m model_code serve`."""

import sys

from model_code.serve.server import main

sys.exit(main())
