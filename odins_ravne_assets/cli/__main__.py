"""``python -m odins_ravne_assets.cli``: the same as the ``odins-ravne`` script."""

import sys

from odins_ravne_assets.cli import main

sys.exit(main())
