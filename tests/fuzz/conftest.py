"""Make the repository root importable: `fuzz` is not part of the installed distribution
(the image must not ship it), so it is imported from the checkout."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
