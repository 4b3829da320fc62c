"""``keys new`` leaves nothing beside the keys file but the keys file."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import orjson

from relay.keys import create_key


def test_keys_new_leaves_no_lock_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    argv = ["keys", "new", "--plan", "pro", "--keys-file", str(keys)]
    done = subprocess.run(
        [sys.executable, "-m", "relaybench", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_concurrent_writers_keep_every_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    threads = [threading.Thread(target=create_key, args=(keys, "basic")) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(orjson.loads(keys.read_bytes())["keys"]) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]
