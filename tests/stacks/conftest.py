from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stacks.pulumi_mocks import Recorder, recording


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording() as mocks:
        yield mocks
