"""Everything around the detectors: a run's stages, the store, signed outputs,
review, the inbox watcher, and the entry points (CLI, Prefect flows, web app).

Subpackages, each importing only those below it (``lint-imports`` checks it)::

    cli                    the ``poisonguard`` command (the only Typer/rich code)
    flows | web            Prefect flows (the only Prefect code) | review web app (the only FastAPI code)
    watch | redteam        inbox of batches into signed versions | attacks and ``evaluate``
    runner                 one run end to end: stages, store records, publication
    outputs                signing, signed folders, report, provenance, publish, emit, dataset versions
    review                 the review queue's rules: filters, reviewers, conflicts
    store                  the quarantine store (the only SQLAlchemy code)
    core                   config, tables, inputs, checks, decision, stages (pure)

``poisonguard.expectations`` and ``poisonguard.detectors`` sit below all of them
and never import ``poisonguard.pipelines``.
"""
