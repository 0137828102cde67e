"""The shared package of the VPS backup automation: one room per concern.

- ``provider/`` — the provider's Backups API: ``client`` (httpx, retries), ``models``, ``errors``,
  ``token`` (the API token from Secrets Manager).
- ``aws/`` — the AWS side: ``state`` (the StateTable layout and I/O), ``notifications`` (SNS),
  ``runtime`` (what warm invocations reuse).
- ``deploy/``, ``prune/``, ``restore/`` — one package per job. Inside each, ``request``/``alarm``,
  ``plan``/``point``/``retention`` and ``claims``/``guard`` hold the job's pieces; a module named
  ``job`` acts (calls the API and AWS), ``messages`` words what people read, ``settings`` is the
  function's configuration. The pure modules take what they need as arguments.
- At the top: the small basics every room uses — ``settings`` (the shared variables and the
  loader), ``durations``, ``markers``, ``records`` (the StateTable records as plain models),
  ``errors`` (the base error and the settings error), ``observability`` (logger, tracer, metrics).

The job packages never import each other; the pure modules never import boto3, httpx or an effect
module (checked by import-linter in ``make lint``).
"""

__all__: list[str] = []
