"""The runtime's MIDI ports: the open set the scheduler plays to, swapped live for the ports the UI chooses."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from companion.errors import CompanionError
from companion.live.scheduler import Scheduler
from companion.midi.codec import DecodeStats
from companion.midi.ports import InputPort, OutputPort

InputFactory = Callable[[Callable[[list[int], int], None]], InputPort]
PortChooser = Callable[[str | None, str | None, str | None],
                       tuple[list[InputFactory], list[OutputPort], dict[str, str]]]
"""(in_port, out_port, backend) -> the new ports, opened (inputs as factories of the callback), and their names."""
PortCheck = Callable[[], list[tuple[str, str, str]]]
"""() -> (kind "lost" or another, port, text) for each port lost or returned since the last check."""
SILENCE_WAIT_NS = 500_000_000  # a port swap waits this long at most for the old ports' notes to end
MALFORMED_REPORT_NS = 5_000_000_000  # malformed input is reported at most this often


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
        # Sends that failed, by port name: [count, last error]; counted on the scheduler's thread (no I/O there),
        # reported by the supervisor.
        self._send_failures: dict[str, list[Any]] = {}
        self._reported_failures: dict[str, int] = {}
        self._failing: set[str] = set()
        self._last_send_ok: dict[str, bool] = {}  # whether a failing port took the last message sent to it
        self._malformed_said: dict[str, int] = {}
        self._malformed_said_ns = 0
        self._missed_said = (0, 0)  # JACK cycles run without us, as last reported
        self._missed_said_ns = 0

    @property
    def timed(self) -> bool:
        """Every open output places messages at their due time (our JACK client), and one is open."""
        open_ports = [port for port in self.outputs if not port.closed]
        return bool(open_ports) and all(port.timed for port in open_ports)

    def send(self, data: Sequence[int], due_ns: int = 0) -> None:
        """Every open output gets the bytes (the scheduler's thread); a timed port places them at `due_ns` if set."""
        for port in self.outputs:
            if not port.closed:
                try:
                    port.send_at(data, due_ns)
                    if self._failing:
                        self._last_send_ok[port.name] = True
                except Exception as err:  # noqa: BLE001 - a port that fails (a stalled server, a driver error)
                    # must not stop the session or the other ports: counted here, reported by the supervisor
                    failure = self._send_failures.setdefault(port.name, [0, ""])
                    failure[0] += 1
                    failure[1] = str(err)
                    self._last_send_ok[port.name] = False

    def snapshot(self) -> dict[str, Any]:
        return {**self.names, "lost": list(self.lost)}

    def request(self, intent: Any) -> None:
        """Queue the UI's ChoosePorts: opening ports is slow, the supervisor thread does it."""
        self._choices.put(intent)

    def apply_choices(self) -> None:
        """The supervisor: every queued choice, in order."""
        while not self._choices.empty():
            self._choose(self._choices.get())

    def report_send_failures(self) -> None:
        """The supervisor: say when an output starts failing to take messages (once, not every round) and when it
        takes them again; both times, end every note we sounded: a lost note-off would leave a note hanging once
        the port works again, and the first all-notes-off may itself have been lost."""
        silence = False
        for name, (count, error) in list(self._send_failures.items()):
            new = count - self._reported_failures.get(name, 0)
            self._reported_failures[name] = count
            if new > 0 and name not in self._failing:
                self._failing.add(name)
                silence = True
                self._log("warning", f"messages to {name} cannot be sent ({error}); all notes off sent, so "
                                     "nothing is left hanging when it works again")
            elif name in self._failing and self._last_send_ok.get(name):
                self._failing.discard(name)
                silence = True
                self._log("info", f"{name} takes messages again; all notes off sent there")
        if silence:
            self._scheduler.panic()

    def report_malformed(self, stats: DecodeStats) -> None:
        """The supervisor: warn (at most every few seconds) when malformed MIDI came in and was ignored."""
        now_ns = time.monotonic_ns()
        if now_ns - self._malformed_said_ns < MALFORMED_REPORT_NS:
            return
        counts = stats.malformed()  # a copy; the engine thread may count on meanwhile
        new = {reason: n - self._malformed_said.get(reason, 0) for reason, n in counts.items()}
        new = {reason: n for reason, n in new.items() if n > 0}
        if not new:
            return
        self._malformed_said, self._malformed_said_ns = counts, now_ns
        total = sum(new.values())
        detail = ", ".join(f"{reason.replace('_', ' ')} {n}" for reason, n in sorted(new.items()))
        self._log("warning", f"ignored {total} malformed MIDI message{'s' if total > 1 else ''} on the input "
                             f"({detail}); check the cable, the driver or the sending device")

    def report_missed_cycles(self) -> None:
        """The supervisor: warn (at most every few seconds) when JACK ran cycles without Companion's client.

        Nothing in Companion writes a message twice, but JACK does not wait for a late client on a feedback
        connection (the DAW's output feeds Companion In and Companion Out feeds the DAW: a loop, broken by JACK on
        one side): in a cycle Companion's client missed, the DAW reads what it sent in the cycle before again (a
        double strike one period later), and what the DAW sent to it then is overwritten unread."""
        ports = [*self.inputs, *self.outputs]
        if not any(getattr(port, "backend", "") == "jack" and not port.closed for port in ports):
            return
        now_ns = time.monotonic_ns()
        if now_ns - self._missed_said_ns < MALFORMED_REPORT_NS:
            return
        from companion.midi.jack import missed_cycles  # the JACK edge, loaded only where JACK ports are open

        counts = missed_cycles()
        said = self._missed_said if counts[0] >= self._missed_said[0] else (0, 0)  # a client re-opened: anew
        missed, repeated = counts[0] - said[0], counts[1] - said[1]
        if missed <= 0:
            return
        self._missed_said, self._missed_said_ns = counts, now_ns
        self._log("warning", f"JACK ran {missed} cycle{'s' if missed > 1 else ''} without Companion (the machine "
                             "stalled, or JACK is not running real-time): MIDI sent to Companion then was lost"
                             + (f", and the DAW may have heard Companion's messages of {repeated} cycle"
                                f"{'s' if repeated > 1 else ''} twice" if repeated else ""))

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
