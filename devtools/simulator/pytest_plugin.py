"""pytest fixtures for the simulator: register with ``pytest_plugins`` or import the fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vpsbackup_local.simulator.server import Simulator

SIM_TOKEN = "test-token"  # noqa: S105 - the simulator's fake token
SIM_SERVERS = ((12345, "web-server-01"), (12346, "web-server-02"))


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A started simulator (token ``SIM_TOKEN``, page size 10, no completion delay, seed 0).

    Servers 12345 ``web-server-01`` and 12346 ``web-server-02`` exist, with no backups.
    """
    sim = Simulator(tokens={SIM_TOKEN}, page_size=10, completion_delay=0.0, seed=0)
    for server_id, name in SIM_SERVERS:
        sim.add_server(server_id, name)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()
