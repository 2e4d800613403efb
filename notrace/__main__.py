"""`python -m notrace`: the same command as `notrace` (notrace.cli)."""
import sys

from notrace.cli import main

sys.exit(main())
