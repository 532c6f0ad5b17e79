"""Three answers that look only at the prompt, to measure continuations against (``companion eval continuation``).

- ``repeat_answer``: the prompt's last bars again, as often as the answer is long.
- ``prompt_markov_answer``: an order-2 Markov chain over the prompt's top-voice notes alone; each note carries
  its own duration and the time to the next onset, as the player played it (backs off to order 1, then 0).
- ``random_in_key_answer``: pitches drawn uniformly from the key's scale within the prompt's range, with
  inter-onset times and durations drawn from the prompt's.

All take notes ``(pitch, velocity, onset_ticks, duration_ticks)`` with onsets from the phrase's bar line and
return the answer with onsets from ``answer_start_ticks``, none at or after ``length_ticks``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from models.continuation.sampling import scale_pcs

NoteTuple = tuple[int, int, int, int]


def repeat_answer(prompt: Sequence[NoteTuple], answer_start_ticks: int, length_ticks: int, bar_ticks: int,
                  bars: int = 4) -> list[NoteTuple]:
    """The prompt's last ``bars`` bars (before the answer's start), repeated to fill ``length_ticks``."""
    span = bars * bar_ticks
    source = [n for n in prompt if answer_start_ticks - span <= n[2] < answer_start_ticks]
    out: list[NoteTuple] = []
    if not source:
        return out
    offset = 0
    while offset < length_ticks:
        for p, v, s, d in source:
            onset = s - (answer_start_ticks - span) + offset
            if onset < length_ticks:
                out.append((p, v, onset, min(d, length_ticks - onset)))
        offset += span
    return out


def _top_line(prompt: Sequence[NoteTuple]) -> list[tuple[int, int, int, int]]:
    """(pitch, velocity, duration, ticks to the next onset) of the top voice; the last note's gap is its length."""
    top: dict[int, NoteTuple] = {}
    for n in prompt:
        if n[2] not in top or n[0] > top[n[2]][0]:
            top[n[2]] = n
    line = [top[s] for s in sorted(top)]
    return [(p, v, d, (line[i + 1][2] - s) if i + 1 < len(line) else d) for i, (p, v, s, d) in enumerate(line)]


def prompt_markov_answer(prompt: Sequence[NoteTuple], answer_start_ticks: int, length_ticks: int,
                         seed: int = 0, order: int = 2) -> list[NoteTuple]:
    """Walk an order-``order`` chain fitted to the prompt's top line, from its last notes, to the answer's end."""
    line = _top_line(prompt)
    if not line:
        return []
    rng = random.Random(seed)
    pitches = [e[0] for e in line]
    tables: list[dict[tuple[int, ...], list[int]]] = [{} for _ in range(order + 1)]
    for j in range(len(line)):
        for k in range(0, min(order, j) + 1):
            tables[k].setdefault(tuple(pitches[j - k : j]), []).append(j)
    context = pitches[-order:]
    out: list[NoteTuple] = []
    onset = 0
    while onset < length_ticks:
        for k in range(min(order, len(context)), -1, -1):
            choices = tables[k].get(tuple(context[len(context) - k :]))
            if choices:
                break
        pitch, velocity, duration, gap = line[rng.choice(choices)]
        out.append((pitch, velocity, onset, max(1, min(duration, length_ticks - onset))))
        context = (context + [pitch])[-order:]
        onset += max(1, gap)
    return out


def random_in_key_answer(prompt: Sequence[NoteTuple], key: tuple[int, str], length_ticks: int,
                         seed: int = 0) -> list[NoteTuple]:
    """Uniform in-key pitches in the prompt's range, gaps and durations drawn from the prompt's top line."""
    line = _top_line(prompt)
    if not line:
        return []
    rng = random.Random(seed)
    low, high = min(e[0] for e in line), max(e[0] for e in line)
    pcs = scale_pcs(key)
    scale = [p for p in range(low, high + 1) if p % 12 in pcs] or list(range(low, high + 1))
    velocity = round(sum(e[1] for e in line) / len(line))
    out: list[NoteTuple] = []
    onset = 0
    while onset < length_ticks:
        _, _, duration, gap = rng.choice(line)
        out.append((rng.choice(scale), velocity, onset, max(1, min(duration, length_ticks - onset))))
        onset += max(1, gap)
    return out
