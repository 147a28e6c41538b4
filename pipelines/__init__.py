"""SageMaker pipeline definitions, built offline from a stack's settings.

- ``pipelines.bundle``: the deterministic, content-addressed code bundle of ``model_code/`` (stdlib only).
- ``pipelines.training``: ``get_pipeline(settings, ...)`` and ``definition_json(settings, ...)``.

Imports from the repo are limited to ``mlops.settings`` and ``mlops.naming`` (DESIGN.md, import rules).
"""
