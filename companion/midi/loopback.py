"""In-process loopback ports for the demo, the benchmarks and the tests: what an output sends, inputs receive."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from companion.midi.ports import InputCallback, InputPort, OutputPort


class LoopbackInput(InputPort):
    """The receiving end of a loopback cable."""

    def __init__(self, cable: LoopbackPorts, callback: InputCallback) -> None:
        super().__init__(cable.name, callback)
        self._cable = cable

    def _open(self) -> None:
        self._cable._attach(self)

    def _close(self) -> None:
        self._cable._detach(self)


class LoopbackOutput(OutputPort):
    """The sending end of a loopback cable: `send` delivers to every open input, on the caller's thread."""

    def __init__(self, cable: LoopbackPorts) -> None:
        super().__init__(cable.name)
        self._cable = cable

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _send(self, data: Sequence[int]) -> None:
        now_ns = time.monotonic_ns()
        for midi_in in self._cable._inputs:
            midi_in.callback(list(data), now_ns)


class LoopbackPorts:
    """An in-process virtual cable named like a port: what its outputs send reaches its inputs' callbacks."""

    def __init__(self, name: str = "Loopback") -> None:
        self.name = name
        self._inputs: tuple[LoopbackInput, ...] = ()  # replaced, never mutated: senders iterate it unlocked
        self._lock = threading.Lock()

    def open_input(self, callback: InputCallback) -> LoopbackInput:
        midi_in = LoopbackInput(self, callback)
        midi_in.open()
        return midi_in

    def open_output(self) -> LoopbackOutput:
        midi_out = LoopbackOutput(self)
        midi_out.open()
        return midi_out

    def _attach(self, midi_in: LoopbackInput) -> None:
        with self._lock:
            self._inputs = (*self._inputs, midi_in)

    def _detach(self, midi_in: LoopbackInput) -> None:
        with self._lock:
            self._inputs = tuple(p for p in self._inputs if p is not midi_in)
