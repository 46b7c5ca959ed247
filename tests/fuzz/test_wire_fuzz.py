"""The decoders of stream entries (``e`` events, ``r`` room records), agent inbox messages
and stored records, fuzzed in-process: whatever bytes they get, they return a value or
raise ``msgspec.DecodeError`` (``ValidationError`` included), the errors their callers
dead-letter or skip, and what they return can be encoded again."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from dispatcher import wire
from tests.fuzz.budget import FUZZ, TIMEOUT_S
from tests.fuzz.wirevalues import deep_documents, documents

DECODERS: dict[str, tuple[wire.Decoder[Any], Any]] = {
    "event (stream field e)": (wire.event_decoder, wire.Event),
    "room (stream field r)": (wire.room_decoder, wire.RoomRecord),
    "inbox message (field m)": (wire.inbox_decoder, wire.InboxMessage),
    "dispatch record": (wire.dispatch_decoder, wire.DispatchRecord),
    "participant record": (wire.participant_decoder, wire.ParticipantRecord),
    "room life": (wire.life_decoder, wire.RoomLife),
    "job record": (wire.job_decoder, wire.JobRecord),
    "server info": (wire.server_info_decoder, wire.ServerInfo),
}


_DOCUMENTS = {name: documents(tp) for name, (_, tp) in DECODERS.items()}


@pytest.mark.timeout(TIMEOUT_S)
@pytest.mark.parametrize("name", DECODERS)
@FUZZ
@given(data=st.data())
def test_decoder_raises_only_decode_errors(name: str, data: st.DataObject) -> None:
    decoder = DECODERS[name][0]
    encoded = data.draw(_DOCUMENTS[name], label="encoded")
    try:
        decoded = decoder.decode(encoded)
    except msgspec.DecodeError as exc:  # ValidationError is one: dead-lettered or skipped
        event(f"refused: {type(exc).__name__}")
        return
    event("decoded")
    wire.encode(decoded)  # what decodes can be written back (the scheduler commits records)


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        pytest.param(name, encoded, id=f"{name}: {case}")
        for name, (_, tp) in DECODERS.items()
        for case, encoded in deep_documents(tp).items()
    ],
)
def test_decoder_refuses_deep_nesting_cleanly(name: str, encoded: bytes) -> None:
    """Every run, whatever Hypothesis draws: nesting 3,000 deep decodes or is a
    DecodeError (never a RecursionError the callers do not expect)."""
    with contextlib.suppress(msgspec.DecodeError):
        DECODERS[name][0].decode(encoded)
