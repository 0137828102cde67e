"""The local simulator of the VPS provider's Backups API, as the development tools import it.

The simulator itself ships with the console's local world (``vpsbackup_local.simulator``, for
``vpsbackup --local``); this package adds what only development needs: ``python -m
devtools.simulator`` (``make simulator``) and the pytest fixture (``pytest_plugin``).
"""

from vpsbackup_local import simulator as _simulator
from vpsbackup_local.simulator import *  # noqa: F403 - the same names, re-exported

__all__ = _simulator.__all__
