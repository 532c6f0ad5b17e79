"""A failure in any runtime thread ends in note-offs for everything Companion sounded, then a clean stop."""

from __future__ import annotations

import re
import threading
import time

from companion.core.engine import EngineSettings
from companion.live.runtime import Runtime
from companion.midi.clock import InternalClock
from companion.midi.loopback import LoopbackPorts
from companion.midi.ports import OutputPort, PortError
from companion.worker.generators import MarkovGenerator


def _poll(predicate, timeout_s: float = 5.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


def _rig() -> tuple[Runtime, object, list[list[int]]]:
    to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
    heard: list[list[int]] = []
    lock = threading.Lock()

    def record(data: list[int], _time_ns: int) -> None:
        with lock:
            heard.append(list(data))

    from_engine.open_input(record)
    runtime = Runtime(EngineSettings(thru=True, silence_beats=64.0, max_bars=None),
                      inputs=[to_engine.open_input], outputs=[from_engine.open_output()],
                      generator=MarkovGenerator(), clock=InternalClock(120.0))
    return runtime, to_engine.open_output(), heard


def _sounding(heard: list[list[int]]) -> set[tuple[int, int]]:
    on: set[tuple[int, int]] = set()
    for data in list(heard):
        key = (data[0] & 0x0F, data[1])
        if data[0] & 0xF0 == 0x90 and data[2] > 0:
            on.add(key)
        elif data[0] & 0xF0 == 0x80 or (data[0] & 0xF0 == 0x90 and data[2] == 0):
            on.discard(key)
        elif data[0] & 0xF0 == 0xB0 and data[1] in (120, 123):
            on = {k for k in on if k[0] != data[0] & 0x0F}
    return on


def test_an_exception_on_the_engine_thread_silences_everything_and_stops() -> None:
    runtime, player, heard = _rig()
    runtime.start()
    try:
        player.send([0x90, 60, 100])  # thru: Companion now sounds C4 and holds it
        assert _poll(lambda: _sounding(heard) == {(0, 60)})

        def broken(*_args: object) -> list:
            raise RuntimeError("a bug in a mode")

        runtime.engine.handle = broken  # type: ignore[method-assign]
        player.send([0x90, 62, 100])
        assert _poll(lambda: runtime.closed), "the runtime stops after a thread fails"
        assert isinstance(runtime.error, RuntimeError)
        assert _poll(lambda: not _sounding(heard)), f"left sounding: {_sounding(heard)}"
    finally:
        runtime.close()


def test_a_model_failure_loses_one_answer_not_the_session() -> None:
    runtime, player, heard = _rig()

    class FailingGenerator:
        name = "failing"

        def stream(self, request):  # noqa: ANN001, ANN201
            raise ValueError("the model broke")
            yield  # pragma: no cover

    runtime.generation.generator = FailingGenerator()
    runtime.start()
    try:
        runtime.post_intent(type("SetMode", (), {})())  # an unknown intent is logged, never raised
        from companion.core.events import Note, Phrase, RequestAnswer

        phrase = Phrase((Note(60, 90, 0, 240),), 0, 1920)
        runtime.generation.request(RequestAnswer(phrase, 1920 * 100, 1920 * 101, "answer-x", 1))
        assert _poll(lambda: any("failed on an answer" in text for _, text in runtime.snapshot().get("log", [])))
        player.send([0x90, 64, 100])
        assert _poll(lambda: (0, 64) in _sounding(heard)), "thru still works after the model failed"
        assert not runtime.closed
    finally:
        runtime.close()
    assert not _sounding(heard)


class FlakyOutput(OutputPort):
    """An output that raises while `broken` is set (a stalled server, a driver error) and keeps what it takes."""

    def __init__(self) -> None:
        super().__init__("Flaky Synth")
        self.broken = False
        self.taken: list[list[int]] = []
        self.open()

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _send(self, data) -> None:  # noqa: ANN001
        if self.broken:
            raise PortError("cannot send to 'Flaky Synth': JACK has not taken messages for a while (stalled?)")
        self.taken.append(list(data))


def test_an_output_that_fails_to_send_is_reported_and_the_session_goes_on_with_nothing_left_hanging() -> None:
    to_engine, from_engine = LoopbackPorts("Companion In"), LoopbackPorts("Companion Out")
    heard: list[list[int]] = []
    from_engine.open_input(lambda data, _t: heard.append(list(data)))
    flaky = FlakyOutput()
    runtime = Runtime(EngineSettings(thru=True, silence_beats=64.0, max_bars=None),
                      inputs=[to_engine.open_input], outputs=[flaky, from_engine.open_output()],
                      generator=MarkovGenerator(), clock=InternalClock(120.0))
    player = to_engine.open_output()
    runtime.start()
    try:
        player.send([0x90, 60, 100])
        assert _poll(lambda: (0, 60) in _sounding(flaky.taken))
        flaky.broken = True
        player.send([0x80, 60, 0])  # this note-off is lost on the flaky port: its synth would hang on C4
        player.send([0x90, 62, 100])
        log = lambda: [text for _, text in runtime.snapshot().get("log", [])]  # noqa: E731
        assert _poll(lambda: any("cannot be sent" in text and "Flaky Synth" in text for text in log()))
        assert _poll(lambda: (0, 62) in _sounding(heard) or not _sounding(heard))  # the other port still plays
        assert not runtime.closed, "a failing output must not stop the session"
        flaky.broken = False
        player.send([0x90, 64, 100])  # the port works again: a send goes through, the supervisor notices
        assert _poll(lambda: any("takes messages again" in text for text in log()))
        assert _poll(lambda: not _sounding(flaky.taken)), f"left hanging: {_sounding(flaky.taken)}"
        assert sum("cannot be sent" in text for text in log()) == 1  # said once, not every round
        assert not runtime.closed
    finally:
        runtime.close()
    assert not _sounding(flaky.taken) and not _sounding(heard)


def test_malformed_midi_is_ignored_and_said_in_the_log_once_not_per_message() -> None:
    runtime, player, heard = _rig()
    runtime.start()
    try:
        for _ in range(3):
            player.send([0x90, 60])  # truncated: a note-on without its velocity
        player.send([0x3C, 0x40])  # stray data bytes
        player.send([0xF0, 0x7E, 0xF7])  # SysEx: valid MIDI we do not use, not malformed
        player.send([0x90, 64, 100])  # a good note still plays through
        log = lambda: [text for level, text in runtime.snapshot().get("log", []) if level == "warning"]  # noqa: E731
        warnings = lambda: [text for text in log() if "malformed MIDI" in text]  # noqa: E731
        reported = lambda: sum(int(re.search(r"ignored (\d+)", text).group(1)) for text in warnings())  # noqa: E731
        # Normally one line; if the supervisor looked between the messages, a second one follows 5 s later.
        assert _poll(lambda: reported() == 4, timeout_s=12.0), warnings()
        assert len(warnings()) <= 2 and "truncated" in warnings()[0] and "check the cable" in warnings()[0]
        assert _poll(lambda: (0, 64) in _sounding(heard))
        assert not runtime.closed
    finally:
        runtime.close()
