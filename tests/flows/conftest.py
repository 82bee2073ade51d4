"""One Prefect test server for the flow tests (about 8 s to start), not for the library tests."""

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_server():
    """A throwaway Prefect API and database for this test session."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
