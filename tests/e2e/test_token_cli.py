"""``dispatcher token create`` mints tokens the verifier accepts, with the asked-for grants."""

from __future__ import annotations

import subprocess

import orjson

from dispatcher.api.auth import TokenVerifier
from tests.e2e.procs import DISPATCHER, env
from tests.stack import API_KEY, API_SECRET


def _token(*args: str) -> str:
    result = subprocess.run(
        [DISPATCHER, "token", "create", "--api-key", API_KEY, "--api-secret", API_SECRET, *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def test_join_token_with_an_agent_carries_room_config() -> None:
    token = _token(
        "--identity",
        "alice",
        "--room",
        "my-room",
        "--join",
        "--agent",
        "test-agent",
        "--metadata",
        '{"user_id": "12345"}',
        "--valid-for",
        "30m",
    )
    claims = TokenVerifier({API_KEY: API_SECRET}).verify(token)
    assert claims.sub == "alice" and claims.video.room_join and claims.video.room == "my-room"
    assert claims.room_config is not None
    config = orjson.loads(bytes(claims.room_config))
    assert config["agents"] == [{"agentName": "test-agent", "metadata": '{"user_id": "12345"}'}]
    assert claims.exp - claims.nbf == 1800


def test_admin_token_grants_room_admin_only() -> None:
    claims = TokenVerifier({API_KEY: API_SECRET}).verify(
        _token("--identity", "ops", "--room", "r", "--admin")
    )
    assert claims.video.room_admin and not claims.video.room_join and claims.room_config is None


def test_a_short_secret_is_one_line_of_warning_not_pyjwts() -> None:
    result = subprocess.run(
        [DISPATCHER, "token", "create", "--api-key", API_KEY, "--api-secret", "short",
         "--identity", "a", "--room", "r", "--join"],
        capture_output=True, text=True, env=env(), timeout=30, check=True,
    )  # fmt: skip
    assert result.stderr.splitlines() == [
        "warning: the API secret is 5 bytes, shorter than 32: a server may refuse tokens "
        "signed with it"
    ]
    assert result.stdout.count(".") == 2  # the token all the same
