"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os

# Offline AWS: fake credentials and a region, so nothing can reach a real account.
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SECURITY_TOKEN"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "VpsBackupAutomationTests")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "vpsbackup-tests")
