"""``nextaction chaos``: the real pipeline (embedded broker, real Triton, workers as child
processes) run through injected faults, with every input message accounted for afterwards.

Modules: ``accounting`` (pure: messages in against records and dead letters out, windows
against a replay), ``fuzz`` (malformed messages), ``report`` (rows, table, JSON), ``rig``
(servers, workers, load, measurements), ``worker_faults``, ``server_faults`` and
``load_scenarios`` (the scenarios), ``runner`` (which scenarios, in what order, the output).
"""
