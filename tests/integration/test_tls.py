"""TLS to Redis on both lanes, redis-py's and the fast lane, against real TLS-only servers:
one node, one that requires client certificates, and a 3-master cluster that requires them
(nodes found through CLUSTER SLOTS included). The URL's ``ssl_*`` options are read alike
by both lanes, and one that cannot be used stops ``connect`` before any connection."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import cast
from urllib.parse import quote, urlencode

import pytest
import redis.asyncio as aioredis
import trustme
from cryptography.hazmat.primitives import serialization
from livekit import api
from redis.asyncio.connection import SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from dispatcher.store.client import connect, is_cluster
from dispatcher.store.fastlane import Endpoint, FastLane
from tests.redis_servers import HOST, RedisCluster, RedisServer, TlsFiles
from tests.stack import API_KEY, API_SECRET, api_url, start_api

KEY_PASSWORD = "key pass/word"  # quoted in URLs like any other value


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return TlsFiles.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def stranger_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed none of the servers' certificates."""
    path = tmp_path_factory.mktemp("stranger") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(path)
    return path


@pytest.fixture(scope="module")
def encrypted_key(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client key, encrypted with ``KEY_PASSWORD``."""
    key = serialization.load_pem_private_key(tls_files.client_key.read_bytes(), password=None)
    path = tmp_path_factory.mktemp("encrypted") / "client.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return path


@pytest.fixture(scope="module")
def tls_server(tls_files: TlsFiles) -> Iterator[RedisServer]:
    with RedisServer(tls=tls_files, name="redis-tls") as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(tls_files: TlsFiles) -> Iterator[RedisServer]:
    with RedisServer(tls=tls_files, tls_auth_clients=True, name="redis-mtls") as server:
        yield server


@pytest.fixture(scope="module")
def tls_cluster(tls_files: TlsFiles) -> Iterator[RedisCluster]:
    with RedisCluster(tls=tls_files, tls_auth_clients=True) as cluster:
        yield cluster


def _url(port: int, userinfo: str = "", **options: str | Path) -> str:
    query = urlencode({name: str(value) for name, value in options.items()}, safe="/")
    return f"rediss://{userinfo}{HOST}:{port}?{query}"


async def _ping_fast_lane(url: str) -> None:
    lane = FastLane(url, cluster=False)
    try:
        assert await lane.execute("PING") == b"PONG"
    finally:
        await lane.aclose()


async def _ping_both_lanes(url: str) -> None:
    """The full client answers on redis-py and on the fast lane."""
    client = await connect(url)
    try:
        assert await client.ping()
        assert await client.fast.execute("PING") == b"PONG"
    finally:
        await client.aclose()


# --- one node -------------------------------------------------------------------------


async def test_both_lanes_trust_the_ca_named_in_the_url(tls_server: RedisServer) -> None:
    assert "ssl_certfile" not in tls_server.url  # only ssl_ca_certs
    client = await connect(tls_server.url)
    try:
        assert await client.set("greeting", "hello")
        assert await client.fast.execute("GET", "greeting") == b"hello"
        assert await client.fast.execute("PING") == b"PONG"
        await client.fast.execute("SET", "reply", "fast")
        assert await client.get("reply") == b"fast"
    finally:
        await client.aclose()


async def test_acl_user_logs_in_over_tls_on_both_lanes(
    tls_server: RedisServer, tls_files: TlsFiles
) -> None:
    password = "p@ss:w/rd"
    with tls_server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "dispatch", "on", f">{password}", "~*", "+@all")
    url = _url(tls_server.port, f"dispatch:{quote(password, safe='')}@", ssl_ca_certs=tls_files.ca)
    client = await connect(url)
    try:
        assert await client.acl_whoami() == "dispatch"
        assert await client.fast.execute("ACL", "WHOAMI") == b"dispatch"
    finally:
        await client.aclose()
        with tls_server.client() as admin:
            admin.execute_command("ACL", "DELUSER", "dispatch")


async def test_verification_off_needs_no_ca_on_either_lane(tls_server: RedisServer) -> None:
    await _ping_both_lanes(_url(tls_server.port, ssl_cert_reqs="none"))


async def test_a_ca_that_did_not_sign_the_server_fails_on_both_lanes(
    tls_server: RedisServer, stranger_ca: Path
) -> None:
    url = _url(tls_server.port, ssl_ca_certs=stranger_ca)
    with pytest.raises(RedisConnectionError, match="certificate verify failed"):
        await connect(url)
    where = f"{HOST}:{tls_server.port}"
    with pytest.raises(RedisConnectionError, match=f"TLS handshake with {where} failed: .*"):
        await _ping_fast_lane(url)


async def test_the_system_cas_are_the_default_and_do_not_know_a_private_ca(
    tls_server: RedisServer,
) -> None:
    url = f"rediss://{HOST}:{tls_server.port}"
    with pytest.raises(RedisConnectionError, match="certificate verify failed"):
        await connect(url)
    with pytest.raises(RedisConnectionError, match="certificate verify failed"):
        await _ping_fast_lane(url)


# --- client certificates --------------------------------------------------------------


async def test_client_certificate_admits_both_lanes(mtls_server: RedisServer) -> None:
    assert "ssl_certfile" in mtls_server.url and "ssl_keyfile" in mtls_server.url
    await _ping_both_lanes(mtls_server.url)


async def test_a_client_without_certificate_is_refused_on_both_lanes(
    mtls_server: RedisServer, tls_files: TlsFiles
) -> None:
    url = _url(mtls_server.port, ssl_ca_certs=tls_files.ca)
    with pytest.raises(RedisConnectionError):
        await connect(url)
    with pytest.raises(RedisConnectionError):
        await _ping_fast_lane(url)


async def test_an_encrypted_client_key_opens_with_ssl_password(
    mtls_server: RedisServer, tls_files: TlsFiles, encrypted_key: Path
) -> None:
    url = _url(
        mtls_server.port,
        ssl_ca_certs=tls_files.ca,
        ssl_certfile=tls_files.client_cert,
        ssl_keyfile=encrypted_key,
        ssl_password=KEY_PASSWORD,
    )
    await _ping_both_lanes(url)


async def test_an_encrypted_key_without_its_password_stops_connect(
    tls_files: TlsFiles, encrypted_key: Path
) -> None:
    url = _url(1, ssl_certfile=tls_files.client_cert, ssl_keyfile=encrypted_key)
    with pytest.raises(ValueError, match="encrypted and the URL has no ssl_password"):
        await connect(url)


# --- options read alike ---------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "ssl_cert_reqs=none",
        "ssl_cert_reqs=optional",
        "ssl_cert_reqs=required&ssl_check_hostname=false",
        "ssl_check_hostname=no",
        "ssl_min_version=772",
        "ssl_include_verify_flags=VERIFY_X509_STRICT,VERIFY_CRL_CHECK_LEAF",
        "ssl_exclude_verify_flags=[VERIFY_X509_TRUSTED_FIRST]",
        "ssl_ciphers=ECDHE+AESGCM",
    ],
)
def test_the_fast_lane_builds_the_context_redis_py_builds(query: str, tls_files: TlsFiles) -> None:
    url = f"rediss://{HOST}:6379?ssl_ca_certs={tls_files.ca}" + (f"&{query}" if query else "")
    ours = Endpoint.from_url(url).tls
    pool = aioredis.ConnectionPool.from_url(url)
    theirs = cast(SSLConnection, pool.connection_class(**pool.connection_kwargs)).ssl_context.get()
    assert ours is not None

    def settings(context: ssl.SSLContext) -> tuple[object, ...]:
        return (
            context.verify_mode,
            context.check_hostname,
            context.minimum_version,
            context.verify_flags,
            context.cert_store_stats(),
            sorted(cipher["name"] for cipher in context.get_ciphers()),
        )

    assert settings(ours) == settings(theirs)


def test_every_node_of_an_endpoint_shares_its_context(tls_files: TlsFiles) -> None:
    endpoint = Endpoint.from_url(_url(7000, ssl_ca_certs=tls_files.ca))
    assert endpoint.tls is not None
    assert endpoint.at(("10.0.0.2", 7001)).tls is endpoint.tls


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ssl_cert_reqs=sometimes", "ssl_cert_reqs='sometimes': expected one of none, "),
        ("ssl_check_hostname=maybe", "ssl_check_hostname='maybe': expected true or false"),
        ("ssl_min_version=TLSv1_2", "ssl_min_version='TLSv1_2'"),
        ("ssl_include_verify_flags=VERIFY_NOTHING", "unknown flag"),
        ("ssl_ca_cert=/etc/ca.pem", "unknown Redis URL option.* ssl_ca_cert;"),
        ("ssl_ca_certs=/nonexistent/ca.pem", "cannot load the CA certificates"),
        ("ssl_certfile=/nonexistent/c.pem", "cannot load the client certificate"),
        ("ssl_keyfile=/etc/client.key", "ssl_keyfile needs ssl_certfile"),
        ("ssl_ciphers=NO-SUCH-CIPHER", "ssl_ciphers"),
    ],
)
async def test_an_unusable_tls_option_stops_connect(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):  # port 1: nothing was dialled
        await connect(f"rediss://{HOST}:1?{query}")


async def test_tls_options_on_a_plain_url_stop_connect(tls_files: TlsFiles) -> None:
    with pytest.raises(ValueError, match="ssl_ca_certs need a rediss:// URL"):
        await connect(f"redis://{HOST}:1?ssl_ca_certs={tls_files.ca}")


def test_an_invalid_password_value_is_not_repeated() -> None:
    with pytest.raises(ValueError, match="cannot load") as raised:
        Endpoint.from_url(f"rediss://{HOST}:1?ssl_certfile=/nonexistent&ssl_password=hunter2")
    assert "hunter2" not in str(raised.value)


# --- cluster --------------------------------------------------------------------------


async def test_cluster_over_tls_reaches_every_master_on_both_lanes(
    tls_cluster: RedisCluster,
) -> None:
    tls_cluster.flushall()
    client = await connect(tls_cluster.url)
    try:
        assert is_cluster(client)
        keys = [f"key{i}" for i in range(30)]
        for key in keys:
            assert await client.fast.execute("SET", key, key) == b"OK"
        assert [await client.get(key) for key in keys] == [key.encode() for key in keys]
    finally:
        await client.aclose()
    for node in tls_cluster.nodes:  # the fast lane wrote to each master, over TLS
        with node.client() as admin:
            assert admin.dbsize() > 0, node


async def test_cluster_takes_an_encrypted_client_key(
    tls_cluster: RedisCluster, tls_files: TlsFiles, encrypted_key: Path
) -> None:
    url = _url(
        tls_cluster.nodes[0].port,
        ssl_ca_certs=tls_files.ca,
        ssl_certfile=tls_files.client_cert,
        ssl_keyfile=encrypted_key,
        ssl_password=KEY_PASSWORD,
    )
    client = await connect(url)
    try:
        keys = [f"other{i}" for i in range(30)]
        for key in keys:
            await client.set(key, key)
        assert [await client.fast.execute("GET", key) for key in keys] == [k.encode() for k in keys]
    finally:
        await client.aclose()


# --- API node -------------------------------------------------------------------------


async def test_api_node_on_tls_redis_answers_create_dispatch(tls_server: RedisServer) -> None:
    tls_server.flushall()
    node = await start_api(tls_server.url)
    lk = api.LiveKitAPI(api_url(node), API_KEY, API_SECRET)
    try:
        request = api.CreateAgentDispatchRequest(agent_name="tls-agent", room="tls-room")
        created = await lk.agent_dispatch.create_dispatch(request)
        listed = await lk.agent_dispatch.list_dispatch("tls-room")
        assert [d.id for d in listed] == [created.id]
    finally:
        await lk.aclose()
        await node.aclose()
