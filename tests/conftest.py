from __future__ import annotations

import pytest

from tests.helpers import CORPUS


def pytest_configure(config: pytest.Config) -> None:
    if not CORPUS.is_dir():
        raise pytest.UsageError(
            f"the shared fixtures are missing at {CORPUS.parent}; put ../shared beside the "
            "checkout or set SYNCSTREAM_FIXTURES"
        )
