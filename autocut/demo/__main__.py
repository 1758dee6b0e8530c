"""`python -m autocut.demo`: what `make demo` runs."""

import sys

from autocut.demo.main import main

sys.exit(main())
