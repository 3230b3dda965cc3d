import pytest

from gpu_bptt.emulator import unavailable_reason
from emulator_helpers import ORDERS
from tests.skips import EMULATOR, skip


@pytest.fixture(autouse=True)
def _needs_emulator():
    reason = unavailable_reason()
    if reason:
        skip(EMULATOR, reason)


@pytest.fixture(params=ORDERS)
def order(request):
    return request.param
