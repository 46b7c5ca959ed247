"""SIP dispatch rules in Redis, in the hash ``keys.SIP_RULES`` (``dsp:{sip}:rules``).

Rules are few (hundreds): listing and matching read the whole hash, and nothing is cached.

A create or update checks the new rule against the stored ones and then writes it, as the
reference does; two conflicting writes racing each other can both land. Such a pair is not
routed silently: inbound calls that reach both fail with ``RuleConflict`` until one is fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from livekit.protocol import sip as sip_pb

from dispatcher import ids
from dispatcher.errors import NotFound
from dispatcher.sip.rules import check_conflicts
from dispatcher.store.client import Client
from dispatcher.store.keys import SIP_RULES

RULE_ID_PREFIX = "SDR_"
_NOT_FOUND = "dispatch rule not found"

Rule = sip_pb.SIPDispatchRuleInfo
R = TypeVar("R", sip_pb.SIPDispatchRuleInfo, sip_pb.SIPInboundTrunkInfo)


async def load_rules(client: Client) -> list[Rule]:
    """Every stored rule, in no particular order."""
    raw: list[bytes] = await client.hvals(SIP_RULES)  # type: ignore[assignment]
    return [Rule.FromString(value) for value in raw]


async def list_rules(
    client: Client, ids: Sequence[str] = (), trunk_ids: Sequence[str] = ()
) -> list[Rule]:
    """Rules sorted by id. With ``ids``, only those; with ``trunk_ids``, the rules that apply
    to any of those trunks, including rules with no trunk filter (as the reference lists)."""
    wanted_ids, wanted_trunks = set(ids), set(trunk_ids)
    found = [
        rule
        for rule in await load_rules(client)
        if (not wanted_ids or rule.sip_dispatch_rule_id in wanted_ids)
        and (not wanted_trunks or not rule.trunk_ids or wanted_trunks & set(rule.trunk_ids))
    ]
    return sorted(found, key=lambda rule: rule.sip_dispatch_rule_id)


async def create_rule(client: Client, rule: Rule) -> Rule:
    """Store a copy of ``rule`` under a fresh id; raises ``RuleConflict``."""
    check_conflicts([*await load_rules(client), rule])
    created = new_record(rule, "sip_dispatch_rule_id", RULE_ID_PREFIX)
    await _write(client, created)
    return created


def new_record(record: R, id_field: str, prefix: str) -> R:
    """A copy of a rule or trunk to be stored: a fresh id, created and updated now."""
    created = type(record)()
    created.CopyFrom(record)
    setattr(created, id_field, ids.new_id(prefix))
    now_ns = time.time_ns()
    created.created_at.FromNanoseconds(now_ns)
    created.updated_at.FromNanoseconds(now_ns)
    return created


async def update_rule(client: Client, rule_id: str, change: Callable[[Rule], Rule]) -> Rule:
    """Store ``change(current)`` in place of rule ``rule_id``; raises ``NotFound`` or
    ``RuleConflict``."""
    stored = await load_rules(client)
    current = next((rule for rule in stored if rule.sip_dispatch_rule_id == rule_id), None)
    if current is None:
        raise NotFound(_NOT_FOUND)
    updated = change(current)
    updated.sip_dispatch_rule_id = rule_id
    others = [rule for rule in stored if rule.sip_dispatch_rule_id != rule_id]
    check_conflicts([*others, updated])
    updated.updated_at.FromNanoseconds(time.time_ns())
    await _write(client, updated)
    return updated


async def delete_rule(client: Client, rule_id: str) -> Rule:
    """Remove rule ``rule_id`` and return it (``NotFound`` if absent); of two concurrent
    deletes only one succeeds."""
    raw: bytes | None = await client.hget(SIP_RULES, rule_id)  # type: ignore[assignment]
    if raw is None or not await client.hdel(SIP_RULES, rule_id):
        raise NotFound(_NOT_FOUND)
    return Rule.FromString(raw)


async def _write(client: Client, rule: Rule) -> None:
    await client.hset(SIP_RULES, rule.sip_dispatch_rule_id, rule.SerializeToString())
