import pytest

from emulator_helpers import ORDERS
from tests.skips import require_emulator


@pytest.fixture(autouse=True)
def _needs_emulator():
    require_emulator()


@pytest.fixture(params=ORDERS)
def order(request):
    return request.param
