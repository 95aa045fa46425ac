"""``ordercast run`` and ``ordercast worker`` tune the collector once set up (cli._tune_gc)."""

from __future__ import annotations

import gc

from ordercast import cli


def test_tune_gc_freezes_what_exists_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        assert gc.get_freeze_count() == 0
        cli._tune_gc()
        # everything alive at set-up is out of the collector's scans from now on
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold() == (cli.GC_GEN0_THRESHOLD, before[1], before[2])
        assert before[0] < cli.GC_GEN0_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
