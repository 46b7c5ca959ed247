"""The fault suite: real processes under load, one injected fault, then a reconciliation."""

AGENT_NAME = "fault-agent"
