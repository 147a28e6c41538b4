"""Pulumi CrossGuard policy pack for mlops-stack.

Layout:
  rules/           the policies: plain ``(args, report_violation)`` functions wrapped in
                   ``ResourceValidationPolicy`` / ``StackValidationPolicy``, one module per domain;
                   relations between resources (bucket -> its encryption, endpoint -> its alarms) live
                   in ``rules/stack.py``.
  offline.py       runs every policy without the Pulumi engine (``mlops infra plan``).
  __main__.py      only assembles the ``PolicyPack`` for the Pulumi analyzer; never import it
                   (constructing a ``PolicyPack`` starts a gRPC server and blocks forever).

This package imports nothing from the rest of the repository: the analyzer loads it on its own.
"""
