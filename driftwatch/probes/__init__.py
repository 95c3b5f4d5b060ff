"""Probe kinds: how items become model requests and how model outputs become per-item scores.

``base`` defines the plugin interface (:class:`~driftwatch.probes.base.ProbeKind`, the request
and output types); ``registry`` is the one table the suite loader and the runner dispatch
through. One module per kind (``choice``, ``target``, ``generate``, ``distribution``), plus
``group`` (paraphrase consistency), ``verifiers`` (checks for generated text) and their
helpers (``structured``, ``refusal``, ``style``). The modules are pure tensor/text functions;
only :mod:`driftwatch.runner` touches the model.
"""
