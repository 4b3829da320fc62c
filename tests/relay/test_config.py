"""Configuration: flags over RELAY_* environment over defaults; bad values are usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relay.config import OPTIONS, env_name, parse_config
from relaybench.errors import UsageError


def test_defaults():
    config = parse_config([], {})
    assert config.auth is True and config.port == 8080
    assert config.first_token_timeout_s == 60.0 and config.idle_timeout_s == 30.0
    assert config.max_body_bytes == 1024 * 1024 and config.ratelimit_fail == "open"
    assert config.keys_file is None and config.allowed_origins == ()


def test_env_then_flag_precedence():
    env = {
        "RELAY_UPSTREAM_URL": "http://up:1/",
        "RELAY_AUTH": "off",
        "RELAY_IDLE_TIMEOUT_MS": "250",
        "RELAY_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "RELAY_KEYS_FILE": "/tmp/k.json",
        "RELAY_RATELIMIT_FAIL": "closed",
    }
    config = parse_config([], env)
    assert config.upstream_url == "http://up:1"
    assert config.auth is False and config.idle_timeout_s == 0.25
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.keys_file == Path("/tmp/k.json") and config.ratelimit_fail == "closed"
    flagged = parse_config(["--idle-timeout-ms", "1000", "--auth", "on"], env)
    assert flagged.idle_timeout_s == 1.0 and flagged.auth is True


def test_every_flag_has_an_env_twin():
    names = {env_name(flag) for flag, *_ in OPTIONS}
    for name in (
        "RELAY_UPSTREAM_URL",
        "RELAY_UPSTREAM_API_KEY",
        "RELAY_KEYS_FILE",
        "RELAY_JWT_SECRET",
        "RELAY_REDIS_URL",
        "RELAY_ALLOWED_ORIGINS",
        "RELAY_AUTH",
    ):
        assert name in names


@pytest.mark.parametrize(
    "argv, env, source",
    [
        (["--port", "70000"], {}, "--port"),
        (["--auth", "maybe"], {}, "--auth"),
        ([], {"RELAY_IDLE_TIMEOUT_MS": "-5"}, "RELAY_IDLE_TIMEOUT_MS"),
        ([], {"RELAY_UPSTREAM_URL": "ftp://x"}, "RELAY_UPSTREAM_URL"),
        (["--ratelimit-fail", "sideways"], {}, "--ratelimit-fail"),
        (["--max-retries", "two"], {}, "--max-retries"),
        (["--workers", "0"], {}, "--workers"),
    ],
)
def test_bad_values_name_their_source(argv, env, source):
    with pytest.raises(UsageError) as info:
        parse_config(argv, env)
    assert info.value.message.startswith(source)
    assert info.value.exit_code == 2


def test_bad_value_exits_2_from_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "relay", "--port", "x"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --port='x'")


def test_secrets_stay_out_of_the_configs_repr():
    env = {"RELAY_UPSTREAM_API_KEY": "sk-upstream-0123456789", "RELAY_JWT_SECRET": "jwt-s3cret-xyz"}
    config = parse_config([], env)
    assert config.upstream_api_key == "sk-upstream-0123456789"  # still there to use
    assert config.jwt_secret == "jwt-s3cret-xyz"
    assert "sk-upstream-0123456789" not in repr(config) and "jwt-s3cret-xyz" not in repr(config)
