"""``python -m vpsbackup_console`` is the ``vpsbackup`` command."""

from vpsbackup_console.cli import main

main()
