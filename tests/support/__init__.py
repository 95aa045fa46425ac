"""Helpers shared by the test tiers (importable as ``support.*``: pytest puts ``tests/`` on
``sys.path`` through ``pythonpath`` in pyproject.toml). Fixtures stay in ``conftest.py``."""
