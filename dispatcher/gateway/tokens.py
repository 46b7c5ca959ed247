"""The room token an assignment carries (wire contract §7.5; livekit/protocol agent/token.go).

Signed with the API key the worker connected with: the worker reads it without verifying,
and in dev-reload mode re-signs it with its own secret, so any other key would break that.
"""

from __future__ import annotations

from datetime import timedelta

from livekit import api
from livekit.protocol import agent

TOKEN_TTL = timedelta(hours=1)
AGENT_NAME_ATTRIBUTE = "lk.agent_name"


def assignment_token(
    api_key: str,
    api_secret: str,
    job: agent.Job,
    answer: agent.AvailabilityResponse,
    identity: str,
    register: agent.RegisterWorkerRequest,
) -> str:
    allowed = register.allowed_permissions
    said = register.HasField("allowed_permissions")
    grants = api.VideoGrants(
        room_join=True,
        agent=True,
        room=job.room.name,
        can_subscribe=allowed.can_subscribe if said else True,
        can_publish=allowed.can_publish if said else True,
        can_publish_data=allowed.can_publish_data if said else True,
        can_update_own_metadata=allowed.can_update_metadata if said else True,
        can_subscribe_metrics=allowed.can_subscribe_metrics,
        hidden=allowed.hidden,
    )
    attributes = dict(answer.participant_attributes)
    attributes[AGENT_NAME_ATTRIBUTE] = register.agent_name
    return (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_name(answer.participant_name)
        .with_metadata(answer.participant_metadata)
        .with_attributes(attributes)
        .with_kind("agent")
        .with_grants(grants)
        .with_ttl(TOKEN_TTL)
        .to_jwt()
    )
