"""Local simulator of the VPS provider's Backups API (standard library only; see ``server``)."""

from vpsbackup_local.simulator.clock import SimulatedClock
from vpsbackup_local.simulator.server import (
    API_PREFIX,
    CREATE_MESSAGE,
    OTHER_HOST,
    Fault,
    FaultKind,
    LoggedRequest,
    NextLinkFault,
    RateLimit,
    Simulator,
    format_timestamp,
    seed_demo_fleet,
)

__all__ = [
    "API_PREFIX",
    "CREATE_MESSAGE",
    "OTHER_HOST",
    "Fault",
    "FaultKind",
    "LoggedRequest",
    "NextLinkFault",
    "RateLimit",
    "SimulatedClock",
    "Simulator",
    "format_timestamp",
    "seed_demo_fleet",
]
