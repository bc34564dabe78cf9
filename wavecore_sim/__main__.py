"""``python -m wavecore_sim``: the same as the ``wavecore-sim`` command."""

import sys

from .cli import main

sys.exit(main())
