"""The model worker process: loads the models (torch lives only here) and streams answers over stdin/stdout.

Started by `companion.worker.process` as `python -m companion.worker.main`. Messages are `wire` JSON
lines: requests, credits and cancels in on stdin; `ready`, notes and `done` out on stdout. An answer is
streamed lazily: one note per credit, so a cancelled answer costs no more model work than it used, and a
worker killed mid-answer takes only its unsent notes with it. When stdin closes (the real-time process is
gone) the worker exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from companion.wire import WireError, decode, encode, note_fields, request_from

INITIAL_CREDIT = 8  # notes the worker may decode ahead of what the real-time side has taken


class _Answers:
    """What the stdin reader tells the generating thread: requests queued, credits, cancels, stop."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.queue: list[dict[str, Any]] = []
        self.credits: dict[str, int] = {}
        self.cancelled: set[str] = set()
        self.stopped = False

    def take(self) -> dict[str, Any] | None:
        with self.changed:
            self.changed.wait_for(lambda: self.queue or self.stopped)
            return None if self.stopped else self.queue.pop(0)

    def spend(self, tag: str) -> bool:
        """Wait for a credit for `tag` and use it; False once the answer is cancelled or the worker stops."""
        with self.changed:
            self.changed.wait_for(lambda: self.credits.get(tag, 0) > 0 or tag in self.cancelled or self.stopped)
            if tag in self.cancelled or self.stopped:
                return False
            self.credits[tag] -= 1
            return True

    def handle(self, message: dict[str, Any]) -> None:
        with self.changed:
            kind = message["type"]
            if kind == "request":
                tag = str(message["request"].get("tag"))
                self.credits[tag] = INITIAL_CREDIT
                self.cancelled.discard(tag)
                self.queue.append(message["request"])
            elif kind == "more":
                self.credits[message["tag"]] = self.credits.get(message["tag"], 0) + message["notes"]
            elif kind == "cancel":
                self.cancelled.add(message["tag"])
            elif kind == "stop":
                self.stopped = True
            self.changed.notify_all()


class Out:
    """stdout as the message channel (one writer at a time); everything else the process prints goes to stderr."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, kind: str, **fields: Any) -> None:
        line = encode(kind, **fields)
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


def _serve(generator: Any, answers: _Answers, out: Out) -> None:
    """The generating thread: each request in turn, one note per credit."""
    while (fields := answers.take()) is not None:
        tag = str(fields.get("tag"))
        try:
            request = request_from(fields)
            for note in generator.stream(request):
                if not answers.spend(tag):
                    break
                out.send("note", tag=tag, note=note_fields(note))
            out.send("done", tag=tag)
        except Exception as err:  # noqa: BLE001 - a model failure loses this answer, the worker serves on
            out.send("failed", tag=tag, text=f"{type(err).__name__}: {err}")
        with answers.changed:
            answers.credits.pop(tag, None)
            answers.cancelled.discard(tag)


WORKER_NICE = -10  # a larger share of the CPU than other programs' normal-priority work, never real-time


def favoured() -> None:
    """Beside busy programs an answer must still be decoded before its beat: ask for more CPU weight (nice -10;
    root, CAP_SYS_NICE or an RLIMIT_NICE allowance such as the 'audio' group's), not real-time priority, which
    would let the model starve JACK and the real-time process's own threads."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, WORKER_NICE)
    except (OSError, AttributeError) as err:
        print(f"model worker: stays at normal CPU weight ({err}); answers may come late on a busy machine",
              file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.worker.main")
    parser.add_argument("--model", default="auto", choices=("auto", "markov", "transformer"))
    parser.add_argument("--checkpoint")
    parser.add_argument("--preload-vae", action="store_true")
    args = parser.parse_args(argv)
    favoured()
    out = Out(sys.stdout.buffer)
    sys.stdout = sys.stderr  # a stray print from a library must never corrupt the message channel
    try:
        from companion.worker.generators import make_generator

        generator, warning = make_generator(args.model, Path(args.checkpoint) if args.checkpoint else None,
                                            preload_vae=args.preload_vae)
    except Exception as err:  # noqa: BLE001 - any load failure is reported to the real-time side, which falls back
        out.send("fatal", text=f"{type(err).__name__}: {err}")
        return 1
    checkpoint = getattr(generator, "checkpoint", None)
    out.send("ready", name=generator.name, checkpoint=str(checkpoint) if checkpoint else None, warning=warning)
    answers = _Answers()
    threading.Thread(target=_serve, args=(generator, answers, out), name="model-serve", daemon=True).start()
    for line in sys.stdin.buffer:
        try:
            message = decode(line)
        except WireError as err:  # the two sides disagree: say so and stop; the real-time side starts a new one
            out.send("fatal", text=f"refused a message: {err}")
            answers.handle({"type": "stop"})
            return 2
        answers.handle(message)
    answers.handle({"type": "stop"})  # stdin closed: the real-time process is gone
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
