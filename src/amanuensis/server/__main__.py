"""`python -m amanuensis.server`: run the HTTP server (the same as `amanuensis serve`)."""

import sys

from .main import main

sys.exit(main())
