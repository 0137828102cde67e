"""The Powertools logger, tracer and metrics, created once and imported everywhere.

The service name comes from ``POWERTOOLS_SERVICE_NAME`` (set per function in template.yaml) and the
namespace from ``POWERTOOLS_METRICS_NAMESPACE``.

Tracing costs only when it is on. Creating Powertools' ``Tracer`` imports the X-Ray SDK (which
builds a botocore client) even when tracing is disabled: about a third of a cold start. So
``tracer`` here is a :class:`LazyTracer`: with tracing off its decorators return what they decorate
and the X-Ray SDK is never imported; with tracing on it is Powertools' ``Tracer``. Tracing is on
where Powertools would trace: inside Lambda (``LAMBDA_TASK_ROOT``), not under ``sam local``, and
``POWERTOOLS_TRACE_DISABLED`` not true. template.yaml sets that variable from its ``Tracing``
parameter (docs/configuration.md).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

F = TypeVar("F", bound=Callable[..., Any])

_TRUE = frozenset({"1", "y", "yes", "t", "true", "on"})  # what Powertools reads as true


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Powertools would trace in this environment (its own rule, without importing X-Ray)."""
    if environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in _TRUE:
        return False
    in_lambda = bool(environ.get("LAMBDA_TASK_ROOT"))
    emulated = bool(environ.get("AWS_SAM_LOCAL") or environ.get("AWS_CHALICE_CLI_MODE"))
    return in_lambda and not emulated


class LazyTracer:
    """Powertools' ``Tracer`` when tracing is on, created at the first decorator; otherwise nothing.

    Decided once per process, when the first handler or method is decorated (at import).
    """

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        self._decided = False
        self._tracer: Tracer | None = None

    @property
    def enabled(self) -> bool:
        return self._get() is not None

    def _get(self) -> Tracer | None:
        if not self._decided:
            self._decided = True
            if tracing_enabled(self._environ):
                from aws_lambda_powertools import Tracer

                self._tracer = Tracer()
                logger.debug("tracing on: handlers and methods are traced in X-Ray")
            else:
                logger.debug("tracing off (POWERTOOLS_TRACE_DISABLED, or not in Lambda): X-Ray is not loaded")
        return self._tracer

    def capture_lambda_handler(self, handler: F) -> F:
        tracer = self._get()
        return handler if tracer is None else cast(F, tracer.capture_lambda_handler(handler))

    def capture_method(self, method: F) -> F:
        tracer = self._get()
        return method if tracer is None else tracer.capture_method(method)


logger = Logger()
tracer = LazyTracer()
metrics = Metrics()

_count_lock = threading.Lock()


def count(name: str, value: int = 1) -> None:
    """Add ``value`` to the Count metric ``name``; safe from worker threads (prune's deletions)."""
    with _count_lock:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
