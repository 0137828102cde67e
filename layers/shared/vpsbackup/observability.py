"""The Powertools logger, tracer and metrics, created once and imported everywhere.

The service name comes from ``POWERTOOLS_SERVICE_NAME`` (set per function in template.yaml) and the
namespace from ``POWERTOOLS_METRICS_NAMESPACE``.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
