"""The runtime's MIDI ports: the open set the scheduler plays to, swapped live for the ports the UI chooses."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from companion.errors import CompanionError
from companion.midi.ports import InputPort, OutputPort
from companion.scheduler import Scheduler

InputFactory = Callable[[Callable[[list[int], int], None]], InputPort]
PortChooser = Callable[[str | None, str | None, str | None],
                       tuple[list[InputFactory], list[OutputPort], dict[str, str]]]
"""(in_port, out_port, backend) -> the new ports, opened (inputs as factories of the callback), and their names."""
PortCheck = Callable[[], list[tuple[str, str, str]]]
"""() -> (kind "lost" or another, port, text) for each port lost or returned since the last check."""
SILENCE_WAIT_NS = 500_000_000  # a port swap waits this long at most for the old ports' notes to end


class LivePorts:
    """The open inputs and outputs and their names for the UI; the supervisor thread swaps and checks them."""

    def __init__(
        self,
        inputs: Sequence[InputFactory],
        outputs: Sequence[OutputPort],
        *,
        on_midi: Callable[[list[int], int], None],
        scheduler: Scheduler,
        closed: threading.Event,
        log: Callable[[str, str], None],
        names: dict[str, str] | None = None,
        chooser: PortChooser | None = None,
        on_port_check: PortCheck | None = None,
    ) -> None:
        self._on_midi = on_midi
        self._scheduler = scheduler
        self._closed = closed
        self._log = log
        self._chooser = chooser
        self._on_port_check = on_port_check
        self._choices: queue.SimpleQueue[Any] = queue.SimpleQueue()  # the UI's ChoosePorts, for the supervisor
        self.names = names or {}
        self.lost: set[str] = set()
        self.outputs = list(outputs)
        self.inputs = [factory(on_midi) for factory in inputs]

    def send(self, data: Sequence[int]) -> None:
        """Every open output gets the bytes (the scheduler's thread)."""
        for port in self.outputs:
            if not port.closed:
                port.send(data)

    def snapshot(self) -> dict[str, Any]:
        return {**self.names, "lost": list(self.lost)}

    def request(self, intent: Any) -> None:
        """Queue the UI's ChoosePorts: opening ports is slow, the supervisor thread does it."""
        self._choices.put(intent)

    def apply_choices(self) -> None:
        """The supervisor: every queued choice, in order."""
        while not self._choices.empty():
            self._choose(self._choices.get())

    def check(self) -> None:
        """The supervisor: note and log each port lost or returned."""
        if self._on_port_check is None:
            return
        for kind, port, text in self._on_port_check():
            if kind == "lost":
                self.lost.add(port)
            else:
                self.lost.discard(port)
            self._log("warning" if kind == "lost" else "info", text)

    def close(self) -> None:
        for port in [*self.inputs, *self.outputs]:
            port.close()

    def _choose(self, intent: Any) -> None:
        """Open the chosen ports first; only when they are open, silence the old ones and swap (supervisor)."""
        if self._chooser is None:
            self._log("warning", "this session's ports are fixed (loopback); nothing changed")
            return
        try:
            factories, outputs, names = self._chooser(intent.in_port, intent.out_port,
                                                      getattr(intent, "backend", None))
            try:
                inputs = [factory(self._on_midi) for factory in factories]
            except CompanionError:
                for port in outputs:
                    port.close()
                raise
        except CompanionError as err:
            self._log("warning", f"ports unchanged: {err.message}")
            return
        self._scheduler.panic()  # every note we sounded ends on the ports that sounded it
        deadline_ns = time.monotonic_ns() + SILENCE_WAIT_NS
        while self._scheduler.sounding() and time.monotonic_ns() < deadline_ns:
            self._closed.wait(0.005)
        old_inputs, old_outputs = self.inputs, self.outputs
        self.outputs, self.inputs = outputs, inputs  # rebinding is atomic: the scheduler sees old or new
        for port in [*old_inputs, *old_outputs]:
            port.close()
        self.names = names
        self.lost.clear()
        self._log("info", f"ports: listening on {names.get('in')}, playing to {names.get('out')}")
