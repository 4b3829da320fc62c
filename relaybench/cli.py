"""The ``relaybench`` console script: a table of subcommands, each owned by its package.

Every subcommand is ``module:function`` taking ``argv`` (the arguments after the subcommand
name) and returning an exit code. Modules are imported only when their command runs, so
``relaybench mock`` never pays for pandas and ``relaybench report`` never imports Locust.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from relaybench.errors import RelaybenchError

COMMANDS: dict[str, tuple[str, str]] = {
    "mock": ("mock_upstream.cli:main", "run the mock OpenAI-compatible SSE upstream"),
    "relay": ("relay.cli:main", "run the bundled relay"),
    "keys": ("relay.keys:main", "manage relay API keys (keys new --plan NAME)"),
    "run": ("relaybench.run.cli:main", "run a benchmark and write a run folder"),
    "calibrate": ("relaybench.run.calibrate:main", "measure the harness's own floor and capacity"),
    "report": ("relaybench.search.rebuild:report_main", "rebuild a run or search folder's report"),
    "compare": ("reports.cli:compare_main", "compare two run folders (exit 1: B regressed)"),
    "plan": ("reports.cli:plan_main", "capacity planning from a step run or a search folder"),
    "gate": ("reports.gate_cli:main", "check a run against performance thresholds"),
    "search": ("relaybench.search.cli:main", "the highest load meeting the SLOs, and its plan"),
    "faults": ("relaybench.faults.cli:main", "score how honestly a relay fails (fault suite)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: relaybench COMMAND [ARGS]...", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "relaybench COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(
            f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(rest) or 0)
    except RelaybenchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
