"""The keys file: SHA-256 hashes of client API keys with a plan each, plus an optional plans table.

```
{"plans": {"bench": {"rpm": 1000000000, "max_streams": 100000}},
 "keys": [{"sha256": "<hex>", "plan": "pro", "created_at": "2026-01-01T00:00:00Z"}]}
```

Plain keys are never stored: ``create_key`` (and ``relaybench keys new``) prints or returns a new
key once. ``plans`` entries override or extend the built-in plans (``rpm`` requests per minute,
``max_streams`` concurrent requests per key; 0 means unlimited).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import math
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from relaybench.cliargs import Parser
from relaybench.errors import UsageError

log = logging.getLogger("relay.keys")


@dataclass(frozen=True)
class Plan:
    name: str
    rpm: int  # requests per minute; 0: unlimited
    max_streams: int  # concurrent requests per key; 0: unlimited


DEFAULT_PLANS: dict[str, Plan] = {
    "basic": Plan("basic", 30, 5),
    "pro": Plan("pro", 100, 20),
    "enterprise": Plan("enterprise", 500, 100),
    "unlimited": Plan("unlimited", 0, 0),
}

KEY_PREFIX = "rk-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_plans(raw: object, where: str) -> dict[str, Plan]:
    """Validate a plans table (``{"name": {"rpm": int, "max_streams": int}}``)."""
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}: 'plans' must be an object")
    plans: dict[str, Plan] = {}
    for name, spec in raw.items():
        if not isinstance(spec, Mapping):
            raise UsageError(f"{where}: plan {name!r} must be an object")
        values = {}
        for field, default in (("rpm", None), ("max_streams", 0)):
            value = spec.get(field, default)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"{where}: plan {name!r}: {field} must be an integer >= 0")
            values[field] = value
        plans[str(name)] = Plan(str(name), values["rpm"], values["max_streams"])
    return plans


class KeyStore:
    """Hash -> plan lookups over the keys file.

    Before every lookup the file's (mtime, size, inode) is compared with what was loaded, at
    most once a second; a change is re-read, so an added key, a removed (revoked) key and a
    plan change all apply within about a second, whichever keys are being presented. A file
    that cannot be read or parsed keeps the last good table and logs a warning.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.plans: dict[str, Plan] = dict(DEFAULT_PLANS)
        self._plan_by_hash: dict[str, str] = {}
        self._signature: tuple[int, int, int] | None = None
        self._checked_at = -math.inf
        if path is not None:
            if not path.is_file():
                raise UsageError(
                    f"keys file {path} does not exist (create it: relaybench keys new)"
                )
            self._load(_signature(path.stat()))
            self._checked_at = time.monotonic()

    def _load(self, signature: tuple[int, int, int]) -> None:
        assert self.path is not None
        document = _read(self.path)
        plans = dict(DEFAULT_PLANS)
        plans.update(parse_plans(document.get("plans", {}), str(self.path)))
        by_hash: dict[str, str] = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("sha256"), str):
                raise UsageError(f"{self.path}: every key needs a 'sha256' string")
            by_hash[entry["sha256"]] = str(entry.get("plan", "basic"))
        self.plans, self._plan_by_hash, self._signature = plans, by_hash, signature

    def refresh(self, now: float) -> None:
        """Re-read the file if it changed; at most one ``stat`` per second (``now``: monotonic)."""
        if self.path is None or now - self._checked_at < 1.0:
            return
        self._checked_at = now
        try:
            signature = _signature(self.path.stat())
            if signature != self._signature:
                self._load(signature)
        except (OSError, UsageError) as exc:
            log.warning(
                "keys file not reloaded; keeping the last good one", extra={"error": str(exc)}
            )

    def plan_for_key(self, key: str, now: float) -> tuple[str, Plan] | None:
        """(key id, plan) for a presented key, or None. The key id is a hash prefix, safe to log."""
        self.refresh(now)
        digest = hash_key(key)
        name = self._plan_by_hash.get(digest)
        if name is None:
            return None
        plan = self.plans.get(name)
        return (f"key:{digest[:16]}", plan) if plan else None


def _signature(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _read(path: Path) -> dict:
    try:
        document = orjson.loads(path.read_bytes()) if path.stat().st_size else {}
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UsageError(f"cannot read keys file {path}: {exc}") from None
    if not isinstance(document, dict):
        raise UsageError(f"keys file {path}: must hold a JSON object")
    return document


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise writers (several bench workers may create keys at once).

    The lock is on the keys file's folder, not on a ``.lock`` file beside the keys (which would
    be left behind) nor on the keys file itself (it is replaced, so its inode changes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # closing the descriptor releases the lock


def create_key(keys_file: Path, plan: str, plans: dict | None = None) -> str:
    """Add a new key with ``plan`` to ``keys_file`` (created if missing); return the plain key.

    ``plans`` (``{"name": {"rpm": int, "max_streams": int}}``) is merged into the file's plans
    table first, so a caller can define the plan it asks for (e.g. a huge-limit bench plan).
    """
    keys_file = Path(keys_file)
    with _locked(keys_file):
        document = _read(keys_file) if keys_file.exists() else {}
        table = dict(document.get("plans", {}))
        if plans:
            parse_plans(plans, "plans argument")
            table.update(plans)
        known = {**DEFAULT_PLANS, **parse_plans(table, str(keys_file))}
        if plan not in known:
            raise UsageError(f"unknown plan {plan!r}; choose from {', '.join(sorted(known))}")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entries = list(document.get("keys", []))
        entries.append({"sha256": hash_key(key), "plan": plan, "created_at": created})
        document = {"plans": table, "keys": entries}
        tmp = keys_file.with_name(keys_file.name + f".tmp{os.getpid()}")
        tmp.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, keys_file)
    return key


def main(argv: Sequence[str]) -> int:
    """``relaybench keys new --plan NAME [--keys-file F]``: print a new key once."""
    parser = Parser(
        prog="relaybench keys",
        description="Manage relay API keys: relaybench keys new --plan NAME prints a new key once; "
        "only its SHA-256 is stored in the keys file.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = sub.add_parser(
        "new",
        help="create a key; it is printed once, only its hash is kept",
        description="Create a key with a plan; it is printed once, only its hash is kept.",
    )
    new.add_argument("--plan", default="basic", help="plan name (default basic)")
    new.add_argument(
        "--keys-file",
        default=os.environ.get("RELAY_KEYS_FILE", "relay-keys.json"),
        help="keys file [RELAY_KEYS_FILE, default relay-keys.json]",
    )
    args = parser.parse_args(list(argv))
    key = create_key(Path(args.keys_file), args.plan)
    print(key)
    print(f"stored its SHA-256 with plan {args.plan!r} in {args.keys_file}", file=sys.stderr)
    return 0
