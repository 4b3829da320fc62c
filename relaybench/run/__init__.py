"""Run orchestration: ``relaybench run``, ``calibrate`` and the benches that drive several packages.

The only part of ``relaybench`` that may import ``mock_upstream``, ``relay``, ``loadtests`` and
``reports`` (lazily, by module path or inside functions).
"""
