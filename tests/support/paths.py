"""Where things are in the checkout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# The Node clients (package.json, the driver scripts); `make node` installs node_modules here.
NODE_DIR = ROOT / "tests" / "node"
