import sys

from sandbox.check import main

sys.exit(main())
