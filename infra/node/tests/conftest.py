"""Puts this folder on the path: the test modules share node_api.py (pytest runs in
importlib mode, which does not)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
