"""Install the system binaries the test suite needs, when missing (Debian's packages).

``make test`` runs this first, so a fresh machine needs nothing installed by hand:
``redis-server`` (relay rate limits shared across replicas), ``chromium`` (the HTML report
rendered in a real headless browser), ``wrk`` (the eager reader of ``make bench-mock``) and
``nginx`` (the reference proxy ``make bench-relay`` measures the relay against; Debian's
``nginx-light``).
Already present: nothing to do, nothing printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

NEEDED = {
    "redis-server": "redis-server",
    "chromium": "chromium",
    "wrk": "wrk",
    "nginx": "nginx-light",
}
SBIN = "/usr/sbin:/usr/local/sbin"  # nginx lives there, often not on a user's PATH


def missing() -> list[str]:
    return [
        pkg
        for binary, pkg in NEEDED.items()
        if shutil.which(binary) is None and shutil.which(binary, path=SBIN) is None
    ]


def main() -> int:
    packages = missing()
    if not packages:
        return 0
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {', '.join(packages)} (Debian packages) ...", flush=True)
    steps = [
        [*sudo, "apt-get", "update", "-qq"],
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ]
    for step in steps:
        if subprocess.run(step, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            print(f"error: {' '.join(step)} failed; install {' '.join(packages)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
