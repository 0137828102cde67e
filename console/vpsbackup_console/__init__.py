"""``vpsbackup``: the on-call console, on the same package the functions use (docs/console.md).

Not part of the Lambda layer: it is installed with the project (``pip install .``) and imports
:mod:`vpsbackup`. ``where`` resolves what it acts on (``--stack`` or the functions' environment
variables), ``views`` shapes what it shows (pure), ``cli`` holds the commands.
"""

__all__: list[str] = []
