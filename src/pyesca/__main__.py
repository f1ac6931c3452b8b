"""`python -m pyesca`: the `esca` command."""

import sys

from pyesca.cli import main

sys.exit(main())
