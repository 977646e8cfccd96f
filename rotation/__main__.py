"""`python -m rotation rotate ...` (see rotation.cli)."""

import sys

from rotation.cli import main

sys.exit(main())
