"""TokenVerifier, bearer_token and create_token against real and hand-crafted tokens."""

from __future__ import annotations

import base64
import hmac
import json

import jwt
import pytest
from livekit.api import AccessToken, RoomAgentDispatch, RoomConfiguration, VideoGrants

from dispatcher.api.auth import TokenVerifier, bearer_token, create_token
from dispatcher.errors import AuthError

KEY = "devkey"
SECRET = "secretsecretsecretsecretsecret12"
NOW = 1_800_000_000.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(
    payload: object,
    *,
    header: object | None = None,
    secret: str = SECRET,
    digest: str = "sha256",
) -> str:
    """Sign an arbitrary header/payload by hand, bypassing create_token's guarantees."""
    header_json = json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode()
    signing_input = f"{b64url(header_json)}.{b64url(json.dumps(payload).encode())}"
    signature = hmac.digest(secret.encode(), signing_input.encode(), digest)
    return f"{signing_input}.{b64url(signature)}"


def claims_at(now: float = NOW, **extra: object) -> dict[str, object]:
    return {"iss": KEY, "nbf": int(now), "exp": int(now) + 600, **extra}


def verifier() -> TokenVerifier:
    return TokenVerifier({KEY: SECRET})


def test_livekit_api_token_exposes_video_grant() -> None:
    grants = VideoGrants(room_admin=True, room="my-room")
    token = AccessToken(KEY, SECRET).with_grants(grants).to_jwt()
    claims = verifier().verify(token)
    assert claims.iss == KEY
    assert claims.video.room_admin is True
    assert claims.video.room == "my-room"
    assert claims.video.can_publish is True


def test_livekit_api_room_config_is_kept_raw() -> None:
    dispatch = RoomAgentDispatch(agent_name="test-agent", metadata='{"user_id": "12345"}')
    token = (
        AccessToken(KEY, SECRET)
        .with_identity("alice")
        .with_grants(VideoGrants(room_join=True, room="my-room"))
        .with_room_config(RoomConfiguration(agents=[dispatch]))
        .to_jwt()
    )
    room_config = verifier().verify(token).room_config
    assert room_config is not None
    assert b"test-agent" in bytes(room_config)
    assert json.loads(bytes(room_config))["agents"][0]["agentName"] == "test-agent"


def test_absent_room_config_is_none() -> None:
    assert verifier().verify(craft(claims_at()), now=NOW).room_config is None


def test_null_room_config_is_none() -> None:
    token = craft(claims_at(roomConfig=None))
    assert verifier().verify(token, now=NOW).room_config is None


def test_reference_contract_token_verifies() -> None:
    token = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ2aWRlbyI6eyJyb29tQWRtaW4iOnRydWUsInJvb20iOiJte"
        "S1yb29tIiwiY2FuUHVibGlzaCI6dHJ1ZSwiY2FuU3Vic2NyaWJlIjp0cnVlLCJjYW5QdWJsaXNoRGF0YSI6dHJ1"
        "ZX0sInN1YiI6IiIsImlzcyI6ImRldmtleSIsIm5iZiI6MTc5NTUwMDIzMiwiZXhwIjoxNzk1NTIxODMyfQ.bNQb"
        "rJ5XHQaIrp-Bd1n3_YYhXqcxoZk3DcaFSR_KDVQ"
    )
    claims = verifier().verify(token, now=1_795_500_300)
    assert (claims.sub, claims.video.room_admin, claims.video.room) == ("", True, "my-room")


def test_unknown_claims_are_ignored() -> None:
    token = craft(claims_at(sip={"admin": True}, video={"roomList": True, "destinationRoom": "x"}))
    assert verifier().verify(token, now=NOW).video.room_list is True


def test_second_key_pair_verifies() -> None:
    keys = {KEY: SECRET, "otherkey": "othersecretothersecretothersecre"}
    token = create_token("otherkey", keys["otherkey"], {"sub": "bob"}, now=NOW)
    assert TokenVerifier(keys).verify(token, now=NOW).sub == "bob"


def test_unknown_key_is_refused() -> None:
    token = craft(claims_at(iss="nobody"))
    with pytest.raises(AuthError, match="invalid API key"):
        verifier().verify(token, now=NOW)


def test_missing_iss_is_refused_as_unknown_key() -> None:
    payload = claims_at()
    del payload["iss"]
    with pytest.raises(AuthError, match="invalid API key"):
        verifier().verify(craft(payload), now=NOW)


def test_tampered_payload_is_refused() -> None:
    header, _, signature = craft(claims_at()).split(".")
    forged = b64url(json.dumps(claims_at(video={"roomAdmin": True})).encode())
    with pytest.raises(AuthError, match="signature mismatch"):
        verifier().verify(f"{header}.{forged}.{signature}", now=NOW)


def test_wrong_secret_is_refused() -> None:
    token = craft(claims_at(), secret="not-the-secret")
    with pytest.raises(AuthError, match="signature mismatch"):
        verifier().verify(token, now=NOW)


def test_expired_beyond_leeway_is_refused() -> None:
    token = craft(claims_at(exp=int(NOW) - 61))
    with pytest.raises(AuthError, match="token expired"):
        verifier().verify(token, now=NOW)


def test_expired_within_leeway_is_accepted() -> None:
    token = craft(claims_at(exp=int(NOW) - 59))
    assert verifier().verify(token, now=NOW).exp == int(NOW) - 59


def test_nbf_beyond_leeway_is_refused() -> None:
    token = craft(claims_at(nbf=int(NOW) + 61))
    with pytest.raises(AuthError, match="not valid yet"):
        verifier().verify(token, now=NOW)


def test_nbf_within_leeway_is_accepted() -> None:
    token = craft(claims_at(nbf=int(NOW) + 59))
    assert verifier().verify(token, now=NOW).nbf == int(NOW) + 59


def test_missing_exp_is_refused() -> None:
    payload = claims_at()
    del payload["exp"]
    with pytest.raises(AuthError, match="exp"):
        verifier().verify(craft(payload), now=NOW)


def test_alg_none_is_refused() -> None:
    header = b64url(b'{"alg":"none","typ":"JWT"}')
    token = f"{header}.{b64url(json.dumps(claims_at()).encode())}."
    with pytest.raises(AuthError, match="algorithm none not allowed"):
        verifier().verify(token, now=NOW)


def test_alg_hs512_is_refused() -> None:
    token = craft(claims_at(), header={"alg": "HS512", "typ": "JWT"}, digest="sha512")
    with pytest.raises(AuthError, match="algorithm HS512 not allowed"):
        verifier().verify(token, now=NOW)


def test_hs256_header_with_other_fields_verifies() -> None:
    token = craft(claims_at(), header={"typ": "JWT", "alg": "HS256", "kid": "devkey"})
    assert verifier().verify(token, now=NOW).iss == KEY


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("aGVhZGVy.cGF5bG9hZA", id="two-parts"),
        pytest.param("a.b.c.d", id="four-parts"),
        pytest.param("", id="empty"),
        pytest.param("tökén.x.y", id="non-ascii"),
    ],
)
def test_wrong_shape_is_malformed(token: str) -> None:
    with pytest.raises(AuthError, match="malformed token"):
        verifier().verify(token, now=NOW)


def test_bad_base64_payload_is_malformed() -> None:
    header, _, signature = craft(claims_at()).split(".")
    with pytest.raises(AuthError, match="malformed base64"):
        verifier().verify(f"{header}.not*base64!.{signature}", now=NOW)


def test_payload_not_json_is_malformed() -> None:
    header, _, signature = craft(claims_at()).split(".")
    with pytest.raises(AuthError, match="malformed claims"):
        verifier().verify(f"{header}.{b64url(b'not json')}.{signature}", now=NOW)


def test_payload_json_array_is_malformed() -> None:
    with pytest.raises(AuthError, match="malformed claims"):
        verifier().verify(craft([KEY, int(NOW) + 600]), now=NOW)


def test_bearer_header_gives_token() -> None:
    assert bearer_token("Bearer abc.def.ghi", "ignored") == "abc.def.ghi"


def test_query_token_used_without_header() -> None:
    assert bearer_token(None, "abc.def.ghi") == "abc.def.ghi"


def test_no_header_and_no_query_gives_none() -> None:
    assert bearer_token(None, None) is None


def test_non_bearer_header_is_refused() -> None:
    with pytest.raises(AuthError, match="invalid authorization header"):
        bearer_token("Basic dXNlcjpwYXNz", None)


def test_create_token_round_trip() -> None:
    claims: dict[str, object] = {"sub": "agent-1", "kind": "agent", "video": {"agent": True}}
    token = create_token(KEY, SECRET, claims, ttl_s=300, now=NOW)
    verified = verifier().verify(token, now=NOW)
    assert (verified.iss, verified.sub, verified.kind) == (KEY, "agent-1", "agent")
    assert (verified.nbf, verified.exp) == (int(NOW), int(NOW) + 300)
    assert verified.video.agent is True


def test_create_token_verifies_with_pyjwt() -> None:
    token = create_token(KEY, SECRET, {"sub": "alice", "video": {"roomJoin": True}})
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert (decoded["iss"], decoded["sub"], decoded["video"]) == (KEY, "alice", {"roomJoin": True})


# --- hostile tokens ----------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("where", [0, 1])  # the header, the claims
def test_deeply_nested_json_is_refused_before_decoding(where: int) -> None:
    segments = craft(claims_at()).split(".")
    segments[where] = b64url(f'{{"alg":"HS256","exp":1,"x":{nested(5000)}}}'.encode())
    with pytest.raises(AuthError, match="nested more than 64 deep"):
        verifier().verify(".".join(segments), now=NOW)


def test_nesting_inside_strings_does_not_count() -> None:
    token = craft(claims_at(metadata=nested(500)))
    assert verifier().verify(token, now=NOW).metadata == nested(500)


@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize("suffix", ["=", "==", "===", "A"])
def test_only_the_canonical_base64url_form_verifies(segment: int, suffix: str) -> None:
    parts = craft(claims_at()).split(".")
    parts[segment] += suffix
    with pytest.raises(AuthError, match="invalid authorization token"):
        verifier().verify(".".join(parts), now=NOW)


def test_a_signature_with_stray_low_bits_is_refused() -> None:
    token = craft(claims_at())
    signing_input, signature = token.rsplit(".", 1)
    # 32 bytes take 43 characters whose last holds 2 unused bits: set one of them
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    assert last & 0b11 == 0
    twin = signature[:-1] + alphabet[last | 0b01]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(signature + "=")
    with pytest.raises(AuthError, match="canonical"):
        verifier().verify(f"{signing_input}.{twin}", now=NOW)
