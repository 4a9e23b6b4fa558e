"""Orchestration around the detectors: config, batch I/O, the quarantine store,
signing, provenance, the report, the CLI and the Prefect flows."""

__version__ = "0.1.0"
