"""Backup on deploy: the deploy request (pure), the webhook signature (pure), the exactly-once claims
in StateTable, and the job that creates and records the backups."""
