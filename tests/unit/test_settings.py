"""Settings from DISPATCHER_* variables and API key pairs. The environment is always passed in."""

from __future__ import annotations

import pytest

from dispatcher.errors import ConfigError
from dispatcher.settings import (
    AgentSettings,
    ApiSettings,
    SchedulerSettings,
    api_key_pairs,
    check_environment,
    load,
)

# --- load ------------------------------------------------------------------------------------


def test_load_without_variables_gives_the_defaults() -> None:
    assert load(ApiSettings, environ={}) == ApiSettings()


def test_load_reads_and_converts_integer_variables() -> None:
    settings = load(ApiSettings, environ={"DISPATCHER_PORT": "9000"})

    assert settings.port == 9000


def test_load_reads_and_converts_float_variables() -> None:
    settings = load(SchedulerSettings, environ={"DISPATCHER_LOAD_THRESHOLD": "0.5"})

    assert settings.load_threshold == 0.5


def test_load_reads_string_variables() -> None:
    environ = {"DISPATCHER_REDIS_URL": "redis://cache:6380", "DISPATCHER_NODE_ID": "sched-0"}

    settings = load(SchedulerSettings, environ=environ)

    assert settings.redis_url == "redis://cache:6380"
    assert settings.node_id == "sched-0"


def test_load_reads_inherited_redis_settings_for_every_role() -> None:
    environ = {"DISPATCHER_PARTITIONS": "16"}

    assert load(ApiSettings, environ=environ).partitions == 16
    assert load(SchedulerSettings, environ=environ).partitions == 16
    assert load(AgentSettings, environ=environ).partitions == 16


def test_load_accepts_variables_of_other_roles_without_using_them() -> None:
    settings = load(ApiSettings, environ={"DISPATCHER_NODE_ID": "sched-0"})

    assert settings == ApiSettings()


def test_load_ignores_variables_without_the_prefix() -> None:
    assert load(ApiSettings, environ={"PORT": "1", "LIVEKIT_API_KEY": "k"}) == ApiSettings()


def test_explicit_overrides_win_over_the_environment() -> None:
    settings = load(ApiSettings, overrides={"port": 9100}, environ={"DISPATCHER_PORT": "9000"})

    assert settings.port == 9100


def test_none_overrides_leave_the_environment_value() -> None:
    settings = load(ApiSettings, overrides={"port": None}, environ={"DISPATCHER_PORT": "9000"})

    assert settings.port == 9000


def test_overrides_apply_without_any_environment() -> None:
    settings = load(SchedulerSettings, overrides={"batch_size": 7}, environ={})

    assert settings.batch_size == 7


def test_unknown_dispatcher_variable_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="DISPATCHER_PROT"):
        load(ApiSettings, environ={"DISPATCHER_PROT": "9000"})


def test_every_unknown_dispatcher_variable_is_named() -> None:
    environ = {"DISPATCHER_B_TYPO": "1", "DISPATCHER_A_TYPO": "2", "DISPATCHER_PORT": "1"}

    with pytest.raises(ConfigError, match="DISPATCHER_A_TYPO, DISPATCHER_B_TYPO"):
        load(ApiSettings, environ=environ)


def test_check_environment_accepts_every_known_variable() -> None:
    check_environment(
        {
            "DISPATCHER_PORT": "1",
            "DISPATCHER_NODE_ID": "x",
            "DISPATCHER_HEARTBEAT_TTL_MS": "1",
            "DISPATCHER_REDIS_URL": "redis://x",
        }
    )


def test_badly_typed_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match="invalid setting"):
        load(ApiSettings, environ={"DISPATCHER_PORT": "not-a-number"})


def test_badly_typed_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="invalid setting"):
        load(SchedulerSettings, overrides={"load_threshold": "high"}, environ={})


# --- api_key_pairs ---------------------------------------------------------------------------


def api(keys: str) -> ApiSettings:
    return ApiSettings(api_keys=keys)


def test_api_keys_are_parsed_into_key_secret_pairs() -> None:
    assert api_key_pairs(api("k:s,k2:s2"), environ={}) == {"k": "s", "k2": "s2"}


def test_api_key_entries_are_trimmed_and_empty_entries_skipped() -> None:
    assert api_key_pairs(api(" k:s , ,k2:s2,"), environ={}) == {"k": "s", "k2": "s2"}


def test_api_key_secret_may_contain_colons() -> None:
    assert api_key_pairs(api("k:s:t"), environ={}) == {"k": "s:t"}


def test_livekit_api_key_and_secret_are_added() -> None:
    environ = {"LIVEKIT_API_KEY": "lk", "LIVEKIT_API_SECRET": "lks"}

    assert api_key_pairs(api("k:s"), environ=environ) == {"k": "s", "lk": "lks"}


def test_livekit_api_key_alone_is_enough() -> None:
    environ = {"LIVEKIT_API_KEY": "lk", "LIVEKIT_API_SECRET": "lks"}

    assert api_key_pairs(api(""), environ=environ) == {"lk": "lks"}


def test_livekit_api_key_without_a_secret_is_not_added() -> None:
    assert api_key_pairs(api("k:s"), environ={"LIVEKIT_API_KEY": "lk"}) == {"k": "s"}


@pytest.mark.parametrize("entry", ["k", "k:", ":s", "k:s,broken"])
def test_malformed_api_key_entry_is_refused(entry: str) -> None:
    with pytest.raises(ConfigError, match="not 'key:secret'"):
        api_key_pairs(api(entry), environ={})


def test_no_api_key_at_all_is_refused() -> None:
    with pytest.raises(ConfigError, match="no API key configured"):
        api_key_pairs(api(""), environ={})


def test_livekit_secret_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="no API key configured"):
        api_key_pairs(api(""), environ={"LIVEKIT_API_SECRET": "lks"})


def test_the_log_level_the_command_reads_is_a_known_variable() -> None:
    check_environment({"DISPATCHER_LOG_LEVEL": "debug"})
    assert load(ApiSettings, environ={"DISPATCHER_LOG_LEVEL": "debug"}).port == 7880
