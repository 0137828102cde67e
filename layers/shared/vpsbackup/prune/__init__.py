"""Prune: the run request, the restic-style retention engine and the whole-fleet plan (all pure), and
the job that lists, deletes and reports."""
