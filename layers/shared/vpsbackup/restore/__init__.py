"""Restore on alarm: alarm parsing and the server it names (pure), the restore point (pure), the
atomic guardrails in StateTable, and the job that restores and tells people."""
