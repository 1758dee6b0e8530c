"""`python -m autocut.demo`: what `make demo` runs."""

import sys

from autocut.demo.cli import main

sys.exit(main())
