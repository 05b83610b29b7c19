"""What a worker does once it has started: its startup heap kept out of full collections."""

from __future__ import annotations

import gc

from face_api.ops.startup import freeze_heap


def test_what_a_worker_built_at_start_is_out_of_the_collectors_full_walks():
    """A full collection walked everything an API worker had built (100-130 ms, the process
    paused, every few seconds under load); frozen, it walks only what came after."""
    built = [[n] for n in range(100_000)]  # modules, schemas, clients: objects the GC tracks
    frozen_before = gc.get_freeze_count()
    try:
        freeze_heap()
        assert gc.get_freeze_count() >= frozen_before + len(built)
        gc.collect()
        assert gc.get_freeze_count() >= frozen_before + len(built)  # still out of its walks
    finally:
        gc.unfreeze()
