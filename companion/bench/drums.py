"""`companion bench drums`: the drum GAN's per-bar generation time on this CPU (target: a bar in <= 10 ms)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from companion.bench.suite import percentiles
from companion.core.drums import DRUM_STYLES, STEPS_PER_MODEL_BAR, DrumFeel
from companion.worker.drum_voice import DrumAsk, DrumGenerator

Row = dict[str, Any]
# Live, the model worker process (nice -10, companion/worker/main.py) makes one bar per bar (2 s at 120 BPM) and
# waits between: the "as live" rows run the bars so, in a thread at the worker's CPU weight, a short gap apart.
PACED_GAP_S = 0.02


def bench_drums(seconds: float) -> list[Row]:
    """Drums: model load, one bar (conditions -> notes) wall and thread CPU time as live and back to back,
    checkpoint size."""
    import torch

    from companion.errors import checkpoint_errors

    load_ns = []
    for _ in range(3):
        started = time.perf_counter_ns()
        with checkpoint_errors():
            drummer = DrumGenerator()
        load_ns.append(time.perf_counter_ns() - started)
    parameters = sum(p.numel() for p in drummer._model.net.parameters())  # noqa: SLF001 - size of what is measured
    size_mb = drummer.checkpoint.stat().st_size / 1e6
    taps = tuple(0.8 if s % 4 == 0 else (0.5 if s % 2 == 0 else 0.0) for s in range(STEPS_PER_MODEL_BAR))
    budget_s = max(1.0, seconds)
    paced: list[tuple[list[int], ...]] = []
    weight: list[str] = []
    thread = threading.Thread(target=lambda: (weight.append(_worker_weight()),
                                              paced.append(_bars(drummer, taps, budget_s / 2, PACED_GAP_S))),
                              name="bench-drums-worker")
    thread.start()
    thread.join()
    back_to_back = _bars(drummer, taps, budget_s / 2, gap_s=0.0)
    return [
        {"measure": "Drums: model", "target": "<= 16 MB", "ok": size_mb <= 16,
         "value": f"{drummer.checkpoint.name}: {parameters / 1e6:.2f} M parameters, {size_mb:.2f} MB, "
                  f"torch threads {torch.get_num_threads()}"},
        {"measure": "Drums: model load (torch already imported)", "target": "", **percentiles(load_ns)},
        {"measure": f"Drums: one bar, conditions -> notes, as live ({weight[0]}, wall)", "target": "p99 <= 10 ms",
         **percentiles(paced[0][0])},
        {"measure": "Drums: one bar, as live (thread CPU time)", "target": "p99 <= 10 ms",
         **percentiles(paced[0][1])},
        {"measure": "Drums: one bar, back to back at normal weight (wall)", "target": "",
         **percentiles(back_to_back[0])},
    ]


def _worker_weight() -> str:
    """Give the calling thread the model worker's CPU weight (Linux: nice is per thread); what it got, in words."""
    from companion.worker.main import WORKER_NICE

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
    except (OSError, AttributeError) as err:
        return f"normal weight: nice {WORKER_NICE} refused, {err.__class__.__name__}"
    return f"nice {WORKER_NICE} as the worker"


def _bars(drummer: DrumGenerator, taps: tuple[float, ...], seconds: float, gap_s: float) -> tuple[list[int], ...]:
    """(wall ns, thread CPU ns) of bars over the styles, half with the player's taps, every fourth a fill; with
    ``gap_s`` idle between bars, as the live worker waits for the next bar's request."""
    wall: list[int] = []
    cpu: list[int] = []
    deadline = time.monotonic() + seconds
    index = 0
    while time.monotonic() < deadline or index < 100:
        ask = DrumAsk(DrumFeel(style=DRUM_STYLES[index % len(DRUM_STYLES)]), 100.0 + index % 60,
                      taps if index % 2 else None, 0.5, 0.6, index % 4 == 3)
        if gap_s:
            time.sleep(gap_s)
        started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
        drummer.bar(ask, index * 1920, 1920, seed=index)
        wall.append(time.perf_counter_ns() - started)
        cpu.append(time.thread_time_ns() - started_cpu)
        index += 1
    return wall, cpu
