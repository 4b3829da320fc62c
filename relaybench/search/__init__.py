"""``relaybench search``: the highest load at which a target meets its SLOs, found by probing.

- ``slo``      — the SLOs and the verdict of one probe's measurements, with bootstrap intervals.
- ``bracket``  — the search itself, pure logic over a ``Probe`` callable (doubling, bisection,
  repeats, confirmation, honest stops); unit-tested with fake probes.
- ``probe``    — the real probe: one ``relaybench run`` of one target at one load, in a sub-folder.
- ``scaling``  — ``--relay-workers``: the search repeated over relay worker counts, one Redis.
- ``cli``      — the command line, ``search.json`` and the report.
- ``rebuild``  — ``relaybench report`` on a search folder: every probe re-judged from its records.
"""
