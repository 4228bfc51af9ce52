"""Settings that cannot work together are refused at start-up with the reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.runtime.session import available_cores
from app.settings import Settings


def test_side_by_side_batches_need_one_thread_sessions():
    with pytest.raises(ValidationError, match="BRUM_INTRA_OP_THREADS=1"):
        Settings(inference_workers=2, intra_op_threads=2)
    assert Settings(inference_workers=2, intra_op_threads=1).concurrent_batches == 2


def test_by_default_one_one_thread_batch_runs_per_core():
    assert Settings().concurrent_batches == available_cores()
    assert Settings(intra_op_threads=0).concurrent_batches == 1
