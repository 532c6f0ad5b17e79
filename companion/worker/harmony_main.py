"""The harmony worker process: the chorale harmonizer's models (torch) build each step's chords here.

Started by `companion.worker.harmony_process` as `python -m companion.worker.harmony_main`. The real-time process
keeps one stand-in per model and sends each model's operations in order, numbered (`harmony_op`: reset, step,
redo, lock, temperature); this process applies them to the real models in that order and, whenever a model's
coming step's chords are out of date, builds them and sends them back (`harmony_chords`, tagged with the number of
the last operation they follow). A melody note there is a lookup in those chords; nothing here is on its path.
Building stops for a waiting operation (it is applied first) and goes on after. When stdin closes the process ends.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from collections.abc import Sequence
from typing import Any

from companion.harmony.pool import PRIMED_POSITIONS, HarmonizerLike
from companion.wire import WireError, decode
from companion.worker.main import Out, favoured

OPS = {"reset": 2, "step": 1, "redo": 1, "lock": 1, "temperature": 1}  # operation -> number of arguments
_STOP = object()


def _pitch(value: Any, what: str) -> int | None:
    if value is None or isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 127:
        return value
    raise WireError(f"harmony_op {what}: a MIDI pitch or null expected, got {value!r:.40}")


class Models:
    """The real models, what was last done to each, and which need their next chords built and sent."""

    def __init__(self, models: Sequence[HarmonizerLike], out: Out) -> None:
        self.models = list(models)
        self.seq = [0] * len(self.models)
        self.dirty: dict[int, None] = {}  # models whose chords are out of date, the latest touched last
        self._out = out

    def apply(self, message: dict[str, Any]) -> None:
        """One operation on one model (WireError if it is not one we know, with arguments of the right kinds)."""
        index, op, args = message["model"], message["op"], message["args"]
        if not 0 <= index < len(self.models) or OPS.get(op) != len(args):
            raise WireError(f"harmony_op: model {index} of {len(self.models)}, op {op!r} with {len(args)} arguments")
        model = self.models[index]
        if op == "reset":
            seed, position = args
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in args) or not 0 <= position < 4:
                raise WireError(f"harmony_op reset: seed and position in the beat expected, got {args!r:.40}")
            model.reset(seed, position_in_beat=position)
        elif op == "step":
            model.step(_pitch(args[0], "step"))
            model.finish_step(self.waiting)
        elif op == "redo":
            if model.redo_step(_pitch(args[0], "redo")) is not None:
                model.finish_step(self.waiting)
        elif op == "lock":
            pcs = args[0]
            if pcs is not None and not (isinstance(pcs, list) and pcs and all(_pitch(pc, "lock") is not None
                                                                             and pc < 12 for pc in pcs)):
                raise WireError(f"harmony_op lock: pitch classes 0..11 or null expected, got {pcs!r:.40}")
            model.set_key_lock(pcs)
        else:
            temperature = args[0]
            if not isinstance(temperature, int | float) or isinstance(temperature, bool) or not temperature > 0:
                raise WireError(f"harmony_op temperature: a positive number expected, got {temperature!r:.40}")
            model.temperature = float(temperature)
        self.seq[index] = message["seq"]
        self.dirty.pop(index, None)
        self.dirty[index] = None

    waiting: Any = staticmethod(lambda: False)  # set by `serve`: True when an operation waits

    def build(self) -> None:
        """Bring the latest touched model's chords up to date and send them (stops for a waiting operation)."""
        index = next(reversed(self.dirty))
        model = self.models[index]
        if not model.prepare(self.waiting):
            return
        chords = model.next_chords()  # type: ignore[attr-defined]
        if chords is not None:  # one flat list (row after row): one object to read on the real-time side, not 24
            self._out.send("harmony_chords", model=index, seq=self.seq[index],
                           chords=[pitch for row in chords for pitch in row])
        del self.dirty[index]


def serve(models: Models, inbox: queue.SimpleQueue[Any]) -> None:
    """Operations in order; chords built while none waits."""
    models.waiting = lambda: not inbox.empty()
    while True:
        try:
            item = inbox.get_nowait() if models.dirty else inbox.get()
        except queue.Empty:
            models.build()
            continue
        if item is _STOP:
            return
        models.apply(item)


def _read(inbox: queue.SimpleQueue[Any], out: Out) -> None:
    for line in sys.stdin.buffer:
        try:
            message = decode(line)
            if message["type"] == "stop":
                break
            if message["type"] != "harmony_op":
                raise WireError(f"a {message['type']!r} message, which the harmony worker does not take")
        except WireError as err:  # the two sides disagree: say so and stop; the real-time side starts a new one
            out.send("fatal", text=f"refused a message: {err}")
            break
        inbox.put(message)
    inbox.put(_STOP)  # stdin closed or stop: the real-time process is gone or done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.worker.harmony_main")
    parser.add_argument("--checkpoint")
    parser.add_argument("--models", type=int, default=PRIMED_POSITIONS)
    args = parser.parse_args(argv)
    favoured()
    out = Out(sys.stdout.buffer)
    sys.stdout = sys.stderr  # a stray print from a library must never corrupt the message channel
    try:
        from companion.harmony.worker import load_harmonizers, warm_up
        from models.chorale.harmonizer import SHIPPED_CHECKPOINT

        harmonizers = load_harmonizers(args.checkpoint, count=args.models)
        warm_up(harmonizers[0])
        first: Any = harmonizers[0]
        for model in harmonizers:
            model.reset(0)
    except Exception as err:  # noqa: BLE001 - any load failure is reported; the real-time side voices by rule
        out.send("fatal", text=f"{type(err).__name__}: {err}")
        return 1
    out.send("harmony_ready", models=len(harmonizers), rows=first.soprano_rows(),
             voice_ranges=[list(r) for r in first.voice_ranges], max_drop=first.max_drop_semitones,
             checkpoint=str(args.checkpoint or SHIPPED_CHECKPOINT))
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_read, args=(inbox, out), name="harmony-read", daemon=True).start()
    models = Models(harmonizers, out)
    try:
        serve(models, inbox)
    except WireError as err:
        out.send("fatal", text=f"refused a message: {err}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
