"""Tools for people and tests: the local API simulator, demo, invoke and benchmarks. Never deployed."""
