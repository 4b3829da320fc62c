"""The mock OpenAI-compatible SSE upstream (``relaybench mock`` / ``python -m mock_upstream``).

Modules, one noun each: ``config`` (typed settings), ``latency`` (seeded distributions and the
per-request plan), ``content`` (text and pre-encoded chunk bytes), ``faults`` (fault forms and
rates), ``load`` (admission queue, slowdown), ``stats`` (counters, lateness), ``history`` (the
per-request log), ``validation`` (request parsing, headers and message tags), ``errors``
(OpenAI-shaped errors), ``state``, ``completions`` (the streaming
endpoint), ``app`` (routes), ``cli`` (flags, server), ``bench`` (``make bench-mock``).
"""
