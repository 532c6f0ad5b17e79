"""The real-time process's side of the model worker: answers stream from a child process, Markov when it cannot.

The models (continuation Transformer, phrase VAE) and torch live in `companion.worker.main`, a process of
their own: its interpreter lock is not ours, so however long it computes or however often the machine preempts
it, the scheduler, engine and input threads here never wait for it. If the worker dies, hangs or says something
that is not one of our messages, the answer in progress goes on from the Markov responder in this process (the
log says so), the worker is killed and a new one started; notes already handed to the scheduler end as planned.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from companion.core.events import Note, RequestAnswer
from companion.midi.realtime import HARMONY_PRIORITY, normal_priority, try_realtime
from companion.wire import WireError, decode, encode, note_from, request_fields
from companion.worker.generators import MarkovGenerator

log = logging.getLogger("companion")

HANG_S = 3.0  # no note for this long while one is awaited: stuck (it streams 20x faster than play; a busy
# machine can starve a healthy worker for a second or more, and a needless restart costs a model load)
RESTART_DELAYS_S = (0.0, 1.0, 5.0, 30.0)  # after 1, 2, 3, 4+ faults in a row (a worker that keeps dying)
READER_PRIORITY = HARMONY_PRIORITY  # our lowest real-time rank: never preempted holding the interpreter lock
_GONE = object()
LogLine = Callable[[str, str], None]


def restart_later(closed: threading.Event, faults_in_a_row: int, spawn: Callable[[], None]) -> None:
    """After a worker's fault: `spawn` a new one on a thread of its own, later and later if they keep failing
    (`RESTART_DELAYS_S`), unless `closed` is set meanwhile."""
    delay_s = RESTART_DELAYS_S[min(faults_in_a_row, len(RESTART_DELAYS_S)) - 1]

    def restart() -> None:
        normal_priority()
        if not closed.wait(delay_s):
            spawn()

    if not closed.is_set():
        threading.Thread(target=restart, name="companion-worker-restart", daemon=True).start()


class WorkerChild:
    """One worker process, its pipes, and the threads that read what it says (the harmony process uses it too)."""

    def __init__(self, argv: list[str], on_message: Callable[[WorkerChild, dict[str, Any]], None],
                 on_gone: Callable[[WorkerChild, str], None], log_line: LogLine, label: str = "model worker") -> None:
        self.label = label  # as its stderr lines are logged
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.ready = threading.Event()
        self.replaced = threading.Event()  # its end was said (and a new child is on its way, if one is wanted)
        self.info: dict[str, Any] = {}
        self.gone: str | None = None
        self.channels: dict[str, queue.SimpleQueue[Any]] = {}
        self._lock = threading.Lock()
        self._on_message, self._on_gone, self._log_line = on_message, on_gone, log_line
        for target, name in ((self._read, "companion-model-reader"), (self._relay_stderr, "companion-model-log")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def send(self, kind: str, **fields: Any) -> bool:
        line = encode(kind, **fields)
        with self._lock:
            if self.gone is not None or self.proc.stdin is None:
                return False
            try:
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return False
        return True

    def open(self, request: RequestAnswer) -> queue.SimpleQueue[Any]:
        channel: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self._lock:
            self.channels[request.tag] = channel
            if self.gone is not None:
                channel.put(_GONE)
        self.send("request", request=request_fields(request))
        return channel

    def close_channel(self, tag: str, cancel: bool) -> None:
        with self._lock:
            self.channels.pop(tag, None)
        if cancel:
            self.send("cancel", tag=tag)

    def kill(self) -> None:
        """End the process (ours, by its pid) and wake every stream still waiting on it."""
        self._mark_gone("killed")
        if self.proc.poll() is None:
            self.proc.kill()
        threading.Thread(target=self.proc.wait, name="companion-model-reap", daemon=True).start()

    def _mark_gone(self, why: str) -> bool:
        with self._lock:
            if self.gone is not None:
                return False
            self.gone = why
            for channel in self.channels.values():
                channel.put(_GONE)
        return True

    def _read(self) -> None:
        try_realtime(READER_PRIORITY)  # a normal-priority thread preempted holding the lock would delay ours
        assert self.proc.stdout is not None
        why = None
        for line in self.proc.stdout:
            try:
                message = decode(line)
            except WireError as err:
                why = f"sent a message that is not ours ({err.message})"
                break
            if message["type"] in ("note", "done", "failed"):
                with self._lock:
                    channel = self.channels.get(message["tag"])
                if channel is not None:
                    channel.put(message)
            else:
                self._on_message(self, message)
        if why is None:
            code = self.proc.wait()
            why = f"exited (code {code})"
        if self._mark_gone(why):
            self._on_gone(self, why)

    def _relay_stderr(self) -> None:
        normal_priority()
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            text = raw.decode(errors="replace").rstrip()
            if text:
                self._log_line("debug", f"{self.label} {self.pid}: {text}")


class Supervised:
    """One worker child process at a time (`_child`): started on demand, stopped on close, replaced after a fault
    (later and later if they keep failing). ModelProcess and the harmony process share this; each says what its
    child's messages mean (`_on_message`, `_on_gone`) and what plays meanwhile (the text of `_replace`)."""

    label = "worker process"

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv
        self.restarts = 0  # children started after a fault
        self.faults: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._faults_in_a_row = 0
        self._child: WorkerChild | None = None

    def _say(self, level: str, text: str) -> None:
        raise NotImplementedError

    def _on_message(self, child: WorkerChild, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def _on_gone(self, child: WorkerChild, why: str) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.gone is None else None

    def _spawn(self) -> None:
        normal_priority()
        with self._lock:
            if self._closed.is_set() or self._child is not None:
                return
            self._child = WorkerChild(self._argv, self._on_message, self._on_gone, self._say, label=self.label)

    def close(self) -> None:
        """Stop the child (idempotent): asked to stop, killed if it has not within 2 s."""
        self._closed.set()
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.send("stop")
            try:
                child.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
            child.kill()

    def _give_up(self, child: WorkerChild) -> None:
        """The child could not load its model (already said): forget and kill it, no new one."""
        with self._lock:
            if self._child is child:
                self._child = None
        child.kill()
        child.replaced.set()  # said: its end needs no more words

    def _replace(self, child: WorkerChild, why: str, meanwhile: str) -> None:
        """Kill the child, say why and what plays `meanwhile`, and start a new one (later and later if they keep
        failing)."""
        with self._lock:
            mine = self._child is child
            if mine:
                self._child = None
                self._faults_in_a_row += 1
        if not mine:  # another thread is replacing it (or did): return once that is said
            child.replaced.wait(1.0)
            return
        child.kill()
        self.faults.append(why)
        self._say("warning", f"the {self.label} (pid {child.pid}) {why}: {meanwhile}")
        child.replaced.set()
        restart_later(self._closed, self._faults_in_a_row, self._respawn)

    def _respawn(self) -> None:
        self.restarts += 1
        self._spawn()


class ModelProcess(Supervised):
    """A Generator whose models run in a worker process; the Markov responder here whenever it cannot answer."""

    runs_elsewhere = True  # the generator thread only waits on a pipe: it may run at real-time priority
    label = "model worker"

    def __init__(self, model: str = "auto", checkpoint: Path | str | None = None, *, preload_vae: bool = False,
                 hang_s: float = HANG_S, log_line: LogLine | None = None, start: bool = True,
                 worker_argv: list[str] | None = None) -> None:
        super().__init__(worker_argv or [sys.executable, "-m", "companion.worker.main", "--model", model,
                                         *(["--checkpoint", str(checkpoint)] if checkpoint else []),
                                         *(["--preload-vae"] if preload_vae else [])])
        self.hang_s = hang_s
        self._fallback = MarkovGenerator()
        self._log_line: LogLine | None = log_line
        self._pending: list[tuple[str, str]] = []
        if start:
            self.start()

    # --- what the runtime sees -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        worker = self._child
        if worker is not None and worker.ready.is_set() and worker.gone is None:
            return str(worker.info["name"])
        return self._fallback.name

    @property
    def loading(self) -> bool:
        """True while the worker loads its models (the Markov responder answers meanwhile)."""
        worker = self._child
        return not self._closed.is_set() and (worker is None or (not worker.ready.is_set() and worker.gone is None))

    @property
    def vae_available(self) -> bool:
        """Variation and morph come from the phrase VAE in the worker (its own fallback decides), not from here."""
        worker = self._child
        return worker is not None and worker.ready.is_set() and worker.gone is None

    @property
    def checkpoint(self) -> Path | None:
        worker = self._child
        path = worker.info.get("checkpoint") if worker is not None and worker.ready.is_set() else None
        return Path(path) if path else None

    def set_log(self, log_line: LogLine) -> None:
        """Where the worker's news goes (the runtime's log, so the UI shows it); what came before is replayed."""
        with self._lock:
            self._log_line, pending, self._pending = log_line, self._pending, []
        for level, text in pending:
            log_line(level, text)

    def wait_ready(self, timeout_s: float) -> bool:
        """True once a worker has loaded its model (for benches and tests; the live app never waits)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._closed.is_set():
            worker = self._child
            if worker is not None and worker.ready.wait(0.05) and worker.gone is None:
                return True
        return False

    def stream(self, request: RequestAnswer) -> Iterator[Note]:
        """The worker's notes as they come; on a fault, the rest of the answer from the Markov responder."""
        worker = self._child
        # the Markov responder cannot play drums: a drums bar without the worker is a bar of silence
        fallback = self._fallback.stream if request.settings.get("drums") is None else (lambda r: iter(()))
        if worker is None or not worker.ready.is_set() or worker.gone is not None:
            yield from fallback(request)
            return
        channel = worker.open(request)
        last_ticks: int | None = None
        fault, finished = None, False
        try:
            while True:
                try:
                    item = channel.get(timeout=self.hang_s)
                except queue.Empty:
                    fault = f"gave no note for {self.hang_s:g} s (hung)"
                    break
                if item is _GONE:
                    fault = worker.gone or "is gone"
                    break
                if item["type"] == "done":
                    finished = True
                    return
                if item["type"] == "failed":
                    finished = True
                    self._say("error", f"the {self.name} model failed on {request.tag} ({item['text']}); "
                                       "the Markov responder plays the rest")
                    break
                try:
                    note = note_from(item["note"])
                except WireError as err:
                    fault = f"sent a bad note ({err.message})"
                    break
                yield note
                last_ticks = note.start_ticks
                worker.send("more", tag=request.tag, notes=1)  # the note was taken: the worker may make one more
        finally:
            worker.close_channel(request.tag, cancel=not finished)
        if fault is not None:
            self._fault(worker, fault)
        yield from (n for n in fallback(request) if last_ticks is None or n.start_ticks > last_ticks)

    # --- the worker's life cycle ---------------------------------------------------------------------------

    def _say(self, level: str, text: str) -> None:
        with self._lock:
            log_line = self._log_line
            if log_line is None:
                self._pending.append((level, text))
        if log_line is None:
            getattr(log, level if level in ("debug", "info", "warning", "error") else "info")(text)
        else:
            log_line(level, text)

    def start(self) -> None:
        """Start the worker process (the app does it once its ports are open: loading never delays them)."""
        if threading.current_thread() is threading.main_thread():
            self._spawn()
        else:
            threading.Thread(target=self._spawn, name="companion-model-spawn", daemon=True).start()

    def _on_message(self, worker: WorkerChild, message: dict[str, Any]) -> None:
        if message["type"] == "ready":
            worker.info = message
            worker.ready.set()
            self._faults_in_a_row = 0
            self._say("info", f"the {message['name']} model is ready in its worker process "
                              f"(pid {worker.pid}, {time.monotonic() - worker.started:.1f} s)")
            if message["warning"]:
                self._say("warning", message["warning"])
        elif message["type"] == "fatal":
            if worker.ready.is_set():  # it spoke our protocol badly: a new one may not
                self._fault(worker, f"stopped: {message['text']}")
                return
            self._say("error", f"the model worker could not load its model ({message['text']}); "
                               "the Markov responder answers")
            self._give_up(worker)

    def _on_gone(self, worker: WorkerChild, why: str) -> None:
        self._fault(worker, why if worker.ready.is_set() else f"{why} before it was ready")

    def _fault(self, worker: WorkerChild, why: str) -> None:
        self._replace(worker, why, "the Markov responder answers until a new worker is ready")
