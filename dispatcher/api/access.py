"""Per-call authorization: token verification plus the grant each call needs."""

from __future__ import annotations

from dispatcher.api.auth import Claims, TokenVerifier, bearer_token
from dispatcher.api.http import Request
from dispatcher.errors import AuthError

_DENIED = "permissions denied"


class Authorizer:
    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def claims(self, request: Request) -> Claims:
        token = bearer_token(
            request.headers.get("Authorization"), request.query.get("access_token")
        )
        if token is None:
            raise AuthError(f"{_DENIED}: no access token")
        return self._verifier.verify(token)

    def grant(self, request: Request, name: str) -> Claims:
        """Calls that need one ``video`` grant for any room (``room_create``, ``room_list``)."""
        claims = self.claims(request)
        if not getattr(claims.video, name):
            camel = "".join(w.capitalize() if i else w for i, w in enumerate(name.split("_")))
            raise AuthError(f"{_DENIED}: token lacks the {camel} grant")
        return claims

    def room_join(self, request: Request) -> Claims:
        """A participant's own token: ``video.roomJoin`` for ``video.room``, with an identity;
        a ``?room=`` the caller names must be the token's."""
        claims = self.claims(request)
        if not claims.video.room_join:
            raise AuthError(f"{_DENIED}: token lacks the roomJoin grant")
        if not claims.video.room:
            raise AuthError(f"{_DENIED}: token names no room")
        if not claims.sub:
            raise AuthError(f"{_DENIED}: token has no identity (sub)")
        asked = request.query.get("room")
        if asked is not None and asked != claims.video.room:
            raise AuthError(f"{_DENIED}: token is for room {claims.video.room!r}, not {asked!r}")
        return claims

    def room_admin(self, request: Request, room: str) -> Claims:
        """Dispatch calls need ``video.roomAdmin`` for exactly the request's room."""
        claims = self.claims(request)
        video = claims.video
        if not video.room_admin:
            raise AuthError(f"{_DENIED}: token lacks the roomAdmin grant")
        if video.room != room:
            raise AuthError(f"{_DENIED}: token is for room {video.room!r}, not {room!r}")
        return claims

    def operator(self, request: Request) -> Claims:
        """Agent-server control (``dispatcher.AgentServers``): an operator's token, with
        ``video.roomAdmin`` and ``video.roomList`` for no particular room. A room's admin
        token and an agent worker's (``video.agent``) are refused."""
        claims = self.claims(request)
        video = claims.video
        held = {"roomAdmin": video.room_admin, "roomList": video.room_list}
        if missing := [name for name, granted in held.items() if not granted]:
            raise AuthError(
                f"{_DENIED}: agent-server control needs an operator token (roomAdmin and "
                f"roomList, no room); this one lacks the {' and '.join(missing)} grant"
            )
        if video.room:
            raise AuthError(
                f"{_DENIED}: token is for room {video.room!r}; agent-server control needs "
                "an operator token for no room"
            )
        return claims
