"""Failing chosen Redis calls of one process, as a dropped connection would, to test what
each call site does about a failure. Redis itself stays real: the calls that are not
failed go to it unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from dispatcher.store.fastlane import Arg, FastLane
from dispatcher.store.scripts import Script

Match = Callable[[tuple[Arg, ...]], bool]


@dataclass
class Rule:
    match: Match
    times: int  # failures left; -1: until cleared
    failed: int = 0


class Faults:
    """Installed on a fast lane: ``send`` (the one door every call goes through) fails the
    calls a rule matches."""

    def __init__(self, lane: FastLane) -> None:
        self._send = lane.send
        self.rules: list[Rule] = []
        lane.send = self.send  # type: ignore[method-assign]

    def fail(self, match: Match, times: int = -1) -> Rule:
        rule = Rule(match, times)
        self.rules.append(rule)
        return rule

    def fail_script(self, script: Script, times: int = -1) -> Rule:
        return self.fail(lambda args: args[0] == "EVALSHA" and args[1] == script.sha, times)

    def fail_command(self, name: str, key_part: str = "", times: int = -1) -> Rule:
        def match(args: tuple[Arg, ...]) -> bool:
            return args[0] == name and key_part in str(args[1] if len(args) > 1 else "")

        return self.fail(match, times)

    def clear(self) -> None:
        self.rules.clear()

    def send(self, args: tuple[Arg, ...], key: str | bytes | None = None) -> asyncio.Future[Any]:
        for rule in self.rules:
            if rule.times != 0 and rule.match(args):
                rule.times -= 1 if rule.times > 0 else 0
                rule.failed += 1
                future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                future.set_exception(RedisConnectionError(f"injected failure of {args[0]!r}"))
                return future
        return self._send(args, key)
