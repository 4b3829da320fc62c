"""Run orchestration: ``relaybench run``, ``calibrate`` and the benches that drive several packages.

With ``relaybench/cli.py`` and the feature folders, the part of ``relaybench`` allowed to import
``mock_upstream``, ``relay``, ``loadtests`` and ``reports`` (lazily, inside functions or by module
path): the core modules stay importable by all four. ``config.py`` is also read by the Locust
process, so it must import none of the four.
"""
