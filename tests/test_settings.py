"""Settings that cannot work together are refused at start-up with the reason; either of the two
core settings fixes the inference plan, and neither leaves it to the start-up calibration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.placement import configured_plan
from app.runtime.calibration import Plan
from app.settings import Settings


def test_side_by_side_batches_need_one_thread_sessions():
    with pytest.raises(ValidationError, match="BRUM_INTRA_OP_THREADS=1"):
        Settings(inference_workers=2, intra_op_threads=2)
    assert configured_plan(Settings(inference_workers=2, intra_op_threads=1), 4) == Plan(1, 2)


def test_several_processes_with_the_admin_api_need_the_shared_store():
    with pytest.raises(ValidationError, match="BRUM_REDIS_URL"):
        Settings(processes=2, admin_token="s3cret")
    assert Settings(processes=2, admin_token="s3cret", redis_url="redis://127.0.0.1:6379/0")
    assert Settings(processes=2).admin_token is None


@pytest.mark.parametrize(
    ("threads", "workers", "plan"),
    [
        (None, 0, None),  # neither: measured at start-up
        (1, 0, Plan(1, 4)),  # one-thread sessions: one batch per core
        (0, 0, Plan(4, 1)),  # one session on every core: one batch at a time
        (2, 0, Plan(2, 1)),
        (None, 1, Plan(4, 1)),
        (None, 3, Plan(1, 3)),
    ],
)
def test_either_setting_fixes_the_plan(threads, workers, plan):
    settings = Settings(intra_op_threads=threads, inference_workers=workers)
    assert configured_plan(settings, cores=4) == plan
