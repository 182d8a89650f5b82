"""``python -m smi`` runs the CLI."""

import sys

from smi.cli import main

sys.exit(main())
