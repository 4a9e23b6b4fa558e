"""Prefect flows: the only code of poisonguard that imports Prefect.

They only wire: each stage of ``poisonguard.pipelines.runner.execute`` (and of
each batch of a watch pass) becomes a task; the logic stays importable and
testable without Prefect.
"""
