import sys

from autocut.cli import main

sys.exit(main())
