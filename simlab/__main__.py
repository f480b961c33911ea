"""``python -m simlab``: the same as the ``simlab`` console script."""
import sys

from simlab.cli import main

sys.exit(main())
