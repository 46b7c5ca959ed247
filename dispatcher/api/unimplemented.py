"""Every call LiveKit's services define that this dispatch service does not serve answers
``unimplemented`` with the reason, never ``bad_route``: a LiveKit SDK calling it learns
that the call exists and belongs elsewhere (the media server, LiveKit Cloud), rather
than that it typed a wrong path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType

from livekit.protocol import agent_dispatch, egress, ingress, room, sip

from dispatcher.api.http import Request, Response
from dispatcher.api.twirp import TwirpError, TwirpRouter, TwirpService

# Each module's services, and why none of their missing calls has a meaning here.
_ELSEWHERE: tuple[tuple[ModuleType, str], ...] = (
    (room, "it acts on media (tracks, data, subscriptions), which a LiveKit media server carries"),
    (sip, "it places or moves calls, which LiveKit's SIP service does"),
    (egress, "recording and streaming are done by LiveKit's Egress service"),
    (ingress, "ingest is done by LiveKit's Ingress service"),
    (agent_dispatch, "it is not part of agent dispatch"),
)


def answer_the_rest(router: TwirpRouter) -> None:
    """Add an ``unimplemented`` answer for each LiveKit call no service here serves."""
    for module, reason in _ELSEWHERE:
        for descriptor in module.DESCRIPTOR.services_by_name.values():
            service = router.service(descriptor.full_name)
            if service is None:
                service = TwirpService(descriptor.full_name)
                router.add_service(service)
            for method in descriptor.methods:
                if method.name not in service.methods:
                    answer = _unimplemented(f"{descriptor.full_name}/{method.name}", reason)
                    service.add_raw(method.name, answer)


def _unimplemented(call: str, reason: str) -> Callable[[None, Request], Awaitable[Response]]:
    message = f"{call} is not served by this dispatch service: {reason}"

    async def answer(_: None, request: Request) -> Response:
        raise TwirpError("unimplemented", message)

    return answer
