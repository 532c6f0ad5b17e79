"""The model worker's messages: versioned JSON lines whose every field is checked on both sides."""

from __future__ import annotations

import json

import pytest

from companion.core.events import Note, Phrase, RequestAnswer
from companion.wire import (
    WIRE_VERSION,
    WireError,
    decode,
    encode,
    note_fields,
    note_from,
    request_fields,
    request_from,
)


def _request() -> RequestAnswer:
    phrase = Phrase((Note(62, 90, 0, 240), Note(66, 80, 240, 240, 2)), 0, 1920, 1920)
    return RequestAnswer(phrase, 1920, 3840, "answer-3", 7, (2, "major"),
                         {"temperature": 0.9, "continues": ("duet-1",), "vae": {"other": [(60, 80, 0, 480)]}})


def test_a_request_crosses_and_comes_back_equal() -> None:
    request = _request()
    back = request_from(decode(encode("request", request=request_fields(request)))["request"])
    assert back == request and back.key == (2, "major")
    assert back.settings["continues"] == ["duet-1"] and back.settings["vae"]["other"] == [[60, 80, 0, 480]]


def test_a_note_crosses_and_comes_back_equal() -> None:
    note = Note(70, 100, 4800, 120, 3)
    assert note_from(decode(encode("note", tag="t", note=note_fields(note)))["note"]) == note


@pytest.mark.parametrize("line, says", [
    (b'{"v": 2, "type": "done", "tag": "t"}', "wire version 2, this side speaks 1"),
    (b'{"type": "done", "tag": "t"}', "wire version None"),
    (b'{"v": 1, "type": "sing", "tag": "t"}', "unknown message type 'sing'"),
    (b'{"v": 1, "type": "done"}', "done: fields [], expected ['tag']"),
    (b'{"v": 1, "type": "done", "tag": "t", "extra": 1}', "done: fields ['extra', 'tag']"),
    (b'{"v": 1, "type": "more", "tag": "t", "notes": "1"}', "more.notes: str"),
    (b'{"v": 1, "type": "more", "tag": "t", "notes": true}', "more.notes: bool"),
    (b'not json', "not JSON"),
    (b'[1, 2]', "not a JSON object"),
])
def test_a_message_that_is_not_ours_is_refused_with_what_is_wrong(line: bytes, says: str) -> None:
    with pytest.raises(WireError, match=None) as err:
        decode(line)
    assert says in err.value.message


@pytest.mark.parametrize("fields", [[60, 0, 0, 10, 0], [128, 90, 0, 10, 0], [60, 90, 0, 0, 0], [60, 90, 0, 10, 16],
                                    [60, 90, 0, 10], [60, 90, 0.5, 10, 0]])
def test_a_bad_note_is_refused(fields: list) -> None:
    with pytest.raises(WireError, match="note"):
        note_from(fields)


def test_a_bad_request_names_its_field() -> None:
    fields = request_fields(_request())
    fields["seed"] = "seven"
    with pytest.raises(WireError, match="request.seed"):
        request_from(fields)
    del fields["phrase"]
    with pytest.raises(WireError, match="phrase"):
        request_from(fields)


def test_nothing_leaves_unchecked() -> None:
    with pytest.raises(WireError, match="cannot cross to another process"):
        request_fields(RequestAnswer(_request().phrase, 0, 1, "t", 0, None, {"x": object()}))
    with pytest.raises(WireError, match="unknown message type"):
        encode("sing")
    assert json.loads(encode("stop"))["v"] == WIRE_VERSION


def test_a_picture_crosses_as_plain_json_and_anything_else_is_refused() -> None:
    import dataclasses
    import enum

    from companion.wire import jsonable

    @dataclasses.dataclass(frozen=True)
    class Mapping:
        cc: int
        target: str

    class Level(enum.IntEnum):
        LOUD = 3

    picture = {"notes": [("player", 60, 0, None), ("companion", 64, 120, 240)], "bpm": 120.5, 7: (1, (2, 3)),
               "maps": (Mapping(21, "temperature"),), "flag": True, "level": Level.LOUD}
    assert jsonable(picture) == {"notes": [["player", 60, 0, None], ["companion", 64, 120, 240]], "bpm": 120.5,
                                 "7": [1, [2, 3]], "maps": [{"cc": 21, "target": "temperature"}], "flag": True,
                                 "level": 3}
    for bad in ({"x": object()}, [1, {2}], (b"bytes",)):
        with pytest.raises(WireError, match="cannot cross"):
            jsonable(bad)
