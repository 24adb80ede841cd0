"""``python -m ir2net.cli``: what the workflow and torchrun call."""
import sys

from . import main

sys.exit(main())
