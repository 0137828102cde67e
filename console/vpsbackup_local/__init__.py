"""The local world of ``vpsbackup --local``: the provider simulator and local AWS (the ``local`` extra)."""
