"""Shared package of the VPS backup automation: API client, models, settings and domain decisions.

Everything the three Lambda functions share lives here, one module per concern. Domain modules
(retention, restore point, ...) are pure: they get what they need as arguments and never read the
environment or talk to AWS or the provider.
"""

__all__: list[str] = []
