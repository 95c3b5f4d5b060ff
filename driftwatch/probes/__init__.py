"""Probe kinds: how items become model requests and how model outputs become per-item scores.

One module per kind (``choice``, ``target``, ``generate``, ``distribution``) plus ``group``
(paraphrase consistency) and ``verifiers`` (checks for generated text). The modules are pure
tensor/text functions; only :mod:`driftwatch.runner` touches the model.
"""
