"""Every ```sh block of README.md runs as written on a fresh clone (issue 12, item 7).

The rules (servers in the background, OS-chosen ports, shortened load, skip markers) are in
``tests/readme/runner.py``; ``python -m tests.readme.runner [LINE ...]`` runs the same blocks by
hand. A failure names the README line of the command that failed and shows its output.
"""

from __future__ import annotations

import pytest

from tests.readme import runner

BLOCKS = runner.blocks()


@pytest.mark.slow
@pytest.mark.timeout(runner.TIMEOUT_S + 60)
@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_block_runs(block: runner.Block, tmp_path):
    if block.skip:
        pytest.skip(f"README.md line {block.line}: {block.skip}")
    try:
        runner.run_block(block, runner.scratch(tmp_path))
    except runner.ReadmeError as exc:
        pytest.fail(str(exc), pytrace=False)


def test_the_readme_has_runnable_blocks_and_few_skips():
    runnable = [b for b in BLOCKS if not b.skip]
    assert len(runnable) >= 5
    assert len(BLOCKS) - len(runnable) <= 4, [(b.line, b.skip) for b in BLOCKS if b.skip]


def test_every_skip_line_marker_matches_a_command():
    stale = [
        (block.line, prefix)
        for block in BLOCKS
        for prefix, _ in block.skipped_lines
        if not any(c.text.startswith(prefix) for c in block.commands)
    ]
    assert not stale, f"readme-test skip-line markers that match no command: {stale}"
