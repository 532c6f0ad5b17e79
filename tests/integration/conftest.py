"""JACK fixtures: a running (or started) dummy-driver server, and a test client that plays and listens."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _pytest.runner import runtestprotocol
from xruns import XrunCounter

# 256 frames (5.3 ms, a common live setting): at 64 or 128 the dummy driver on a 2-core VM wakes more than a
# period late many times a second even when idle, and each such xrun makes JACK restart its frame clock (a jump that
# the test DAW sees as late script events and Companion counts as missed cycles); at 256 an idle VM runs clean.
# .ci/run starts its server with the same arguments.
PERIOD_FRAMES = 256
JACKD_ARGS = ["jackd", "--realtime", "-d", "dummy", "-r", "48000", "-p", str(PERIOD_FRAMES)]
START_TIMEOUT_S = 10.0


def poll_until(predicate: Callable[[], Any], timeout_s: float = 5.0, interval_s: float = 0.005) -> Any:
    """The predicate's first truthy value, or its last value once the deadline passes (no fixed sleeps)."""
    deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
    while True:
        value = predicate()
        if value or time.monotonic_ns() >= deadline_ns:
            return value
        time.sleep(interval_s)


def _jack_running() -> bool:
    if shutil.which("jack_lsp"):
        return subprocess.run(["jack_lsp"], capture_output=True, timeout=10).returncode == 0
    import rtmidi

    try:
        rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "companion-test-probe").delete()
    except rtmidi.RtMidiError:
        return False
    return True


@pytest.fixture(scope="session")
def jack_server() -> Iterator[None]:
    """A JACK server for the session: the one running, or `jackd -d dummy` started (and stopped) here."""
    required = os.environ.get("COMPANION_REQUIRE_JACK") == "1"
    if _jack_running():
        with _watching_xruns():
            yield
        return
    if shutil.which("jackd") is None:
        message = "jackd is not installed (apt-get install jackd2); JACK integration tests need it"
        if required:
            pytest.fail(f"COMPANION_REQUIRE_JACK=1 but {message}")
        pytest.skip(message)
    process = subprocess.Popen(JACKD_ARGS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if not poll_until(lambda: process.poll() is not None or _jack_running(), START_TIMEOUT_S, 0.1) \
                or process.poll() is not None:
            output = process.stdout.read() if process.poll() is not None and process.stdout else ""
            message = f"jackd did not start within {START_TIMEOUT_S} s: {' '.join(JACKD_ARGS)}\n{output}"
            if required:
                pytest.fail(message)
            pytest.skip(message)
        with _watching_xruns():
            yield
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


_monitor: XrunCounter | None = None
STALL_RERUNS = 2  # a JACK test that failed while the server reported xruns is played again at most this often
_stall_reruns: list[str] = []


@contextlib.contextmanager
def _watching_xruns() -> Iterator[None]:
    global _monitor
    _monitor = XrunCounter()
    try:
        yield
    finally:
        _monitor.close()
        _monitor = None


def _xruns() -> int:
    return _monitor.count if _monitor is not None else 0


@pytest.fixture
def xrun_count(jack_server: None) -> Callable[[], int]:
    """The JACK server's xruns so far, from the session's monitor: a test whose run JACK disturbed may play it
    again inside itself (conftest's own replay, below, covers a whole test that failed)."""
    return _xruns


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """A JACK test that fails while the server reports xruns (see xruns.py) is played again, up to STALL_RERUNS
    times; the summary lists every such rerun. A failure without an xrun, or on the last try, is reported as is."""
    if item.get_closest_marker("jack") is None:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for attempt in range(STALL_RERUNS + 1):
        before = _xruns()
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        xruns = _xruns() - before  # the last test of a session has the monitor closed by now: 0, no replay
        if not any(report.failed for report in reports) or xruns <= 0 or attempt == STALL_RERUNS:
            break
        _stall_reruns.append(f"{item.nodeid}: failed during {xruns} JACK xrun(s), played again")
        init = getattr(item, "_initrequest", None)
        if init is not None:
            init()
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _stall_reruns:
        terminalreporter.section("JACK tests played again after xruns")
        for line in _stall_reruns:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test marked `jack` gets the server fixture: a missing server skips (or fails in CI) cleanly."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if item.get_closest_marker("jack") is not None and "jack_server" not in names:
            item.fixturenames.insert(0, "jack_server")  # type: ignore[attr-defined]


class JackTestClient:
    """Plays into and listens to the companion's JACK ports, as a DAW would.

    `send(data)` goes to the port matching `to_port` (default "Companion In"); everything arriving from the
    port matching `from_port` (default "Companion Out") is kept in `received` as (data, time_ns) pairs,
    stamped with `time.monotonic_ns()` in the rtmidi callback, to compare with the scheduler's deadlines.
    """

    def __init__(self, name: str = "tester") -> None:
        import rtmidi

        self._rtmidi = rtmidi
        self.name = name
        self.received: list[tuple[list[int], int]] = []
        self._lock = threading.Lock()
        self._out: Any = None
        self._in: Any = None

    def connect_out(self, to_port: str = "Companion In") -> JackTestClient:
        """Connect our output to the first port whose name contains `to_port`."""
        self._out = self._rtmidi.MidiOut(self._rtmidi.API_UNIX_JACK, self.name)
        names = poll_until(lambda: [n for n in self._out.get_ports() if to_port.lower() in n.lower()], 5.0)
        assert names, f"no JACK port matching {to_port!r}: {self._out.get_ports()}"
        self._out.open_port(self._out.get_ports().index(names[0]), "out")
        return self

    def open_virtual_out(self, port_name: str) -> JackTestClient:
        """Expose a named output of our own (a DAW's port the companion connects to by name)."""
        self._out = self._rtmidi.MidiOut(self._rtmidi.API_UNIX_JACK, self.name)
        self._out.open_virtual_port(port_name)
        return self

    def connect_in(self, from_port: str = "Companion Out") -> JackTestClient:
        """Listen to the first port whose name contains `from_port`."""
        self._in = self._rtmidi.MidiIn(self._rtmidi.API_UNIX_JACK, self.name)
        self._in.ignore_types(sysex=True, timing=False, active_sense=True)
        names = poll_until(lambda: [n for n in self._in.get_ports() if from_port.lower() in n.lower()], 5.0)
        assert names, f"no JACK port matching {from_port!r}: {self._in.get_ports()}"
        self._in.open_port(self._in.get_ports().index(names[0]), "in")
        self._start_reader()
        return self

    def open_virtual_in(self, port_name: str) -> JackTestClient:
        """Expose a named input of our own (a synth's port the companion plays to by name)."""
        self._in = self._rtmidi.MidiIn(self._rtmidi.API_UNIX_JACK, self.name)
        self._in.ignore_types(sysex=True, timing=False, active_sense=True)
        self._in.open_virtual_port(port_name)
        self._start_reader()
        return self

    def _start_reader(self) -> None:
        # Polled, like the companion's own inputs: rtmidi's callback can crash when its port closes mid-message.
        self._reading = threading.Event()
        self._reading.set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        midi = self._in
        while self._reading.is_set():
            event = midi.get_message()
            if event is None:
                time.sleep(0.0002)
                continue
            now_ns = time.monotonic_ns()
            with self._lock:
                self.received.append((event[0], now_ns))

    def send(self, data: list[int]) -> int:
        """Send one message now; returns the monotonic_ns it was handed to JACK."""
        now_ns = time.monotonic_ns()
        self._out.send_message(data)
        return now_ns

    def send_until(self, data: list[int], arrived: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        """Send `data` again every 50 ms until `arrived()` holds: the first cycles after a connection (or
        an xrun on a busy machine) can drop a message, which a test of something else should not trip on."""
        deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
        while time.monotonic_ns() < deadline_ns:
            self.send(data)
            if poll_until(arrived, 0.05):
                return True
        return False

    def messages(self) -> list[tuple[list[int], int]]:
        with self._lock:
            return list(self.received)

    def wait_for(self, predicate: Callable[[list[tuple[list[int], int]]], bool],
                 timeout_s: float = 5.0) -> bool:
        """Poll until `predicate(messages)` holds or the deadline passes."""
        return bool(poll_until(lambda: predicate(self.messages()), timeout_s))

    def close(self) -> None:
        """Close both ends and leave the JACK graph (the client disappears)."""
        if getattr(self, "_reader", None) is not None:
            self._reading.clear()
            self._reader.join(timeout=1.0)
            self._reader = None
        for midi in (self._in, self._out):
            if midi is not None:
                midi.close_port()
                midi.delete()
        self._in = self._out = None


@pytest.fixture
def jack_client(jack_server: None) -> Iterator[Callable[..., JackTestClient]]:
    """A factory of JackTestClient; every client made is closed after the test."""
    made: list[JackTestClient] = []

    def make(name: str = "tester") -> JackTestClient:
        client = JackTestClient(name)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="session")
def daw_binary(jack_server: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The C DAW of `daw.py` (plays at exact frames, records every byte), compiled once per session."""
    from daw import build

    return build(tmp_path_factory.mktemp("daw"))


@pytest.fixture
def poll() -> Callable[..., Any]:
    """`poll(predicate, timeout_s)`: the predicate's first truthy value, or its last one at the deadline."""
    return poll_until
