"""`python -m amanuensis.cli`: the same as the `amanuensis` command."""

import sys

from . import main

sys.exit(main())
