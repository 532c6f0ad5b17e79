"""`companion bench transformer`: the continuation Transformer on this CPU: load, first note, speed, memory."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from companion.bench.suite import Row, percentiles
from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Note, Phrase, RequestAnswer
from companion.core.theory import estimate_key

PROMPTS = 30  # prompts gathered for the first-note figure (taken in turn while --seconds lasts)
MIN_PROMPTS = 3
PROMPT_BARS = 2
ANSWER_BARS = 4
PLAYBACK_BPM = 160.0  # the speed target: generation >= 20x faster than 16ths at this tempo
TARGET_SPEEDUP = 20.0
_STEP_TICKS = PPQ // 12  # models/ tokenizer grid step (12 per quarter) in ticks


@dataclasses.dataclass(frozen=True)
class _Prompt:
    name: str
    notes: tuple[Note, ...]
    beats_per_bar: int
    beat_unit: int


def _checkpoint(workdir: Path) -> tuple[Path, str]:
    """The shipped checkpoint, else an untrained stand-in of the training defaults (same shape, same speed)."""
    from models.continuation.model import DEFAULT_CHECKPOINT, KIND

    if DEFAULT_CHECKPOINT.is_file():
        return DEFAULT_CHECKPOINT, f"shipped checkpoint {DEFAULT_CHECKPOINT.name}"
    import torch

    from models.checkpoint import save_checkpoint
    from models.tokenizer import Tokenizer
    from models.transformer import GPT, GPTConfig

    tok = Tokenizer()
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab.size, block_size=512, n_layer=4, n_head=4, n_embd=256, dropout=0.0)
    path = workdir / "continuation-standin.pt"
    save_checkpoint(path, GPT(config), kind=KIND, model_config=config.to_dict(),
                    tokenizer_config=tok.config.to_dict(), data={"source": "bench stand-in"}, metrics={})
    return path, "no shipped checkpoint: untrained stand-in of the training default shape (4x256)"


def _folk_prompts(count: int) -> tuple[list[_Prompt], str]:
    """Opening bars of held-out (test split) folk tunes from music21's corpus; built-in phrases if it is missing."""
    try:
        from models.data.cache import corpus_sources
        from models.data.music21_corpus import parse_task, tasks_for_file
        from models.data.pieces import split_of
        from models.tokenizer import TokenizerConfig

        config = TokenizerConfig()
        prompts: list[_Prompt] = []
        for path, style, source in corpus_sources(("folk",)):
            for task in tasks_for_file(path, style, source):
                if split_of(task.piece_id) != "test":
                    continue
                try:
                    pieces = parse_task(task, config)
                except Exception as err:  # noqa: BLE001 - music21 raises anything on odd ABC; skip that tune
                    del err
                    continue
                for piece in pieces:
                    prompt = _prompt_from_piece(piece)
                    if prompt is not None:
                        prompts.append(prompt)
                if len(prompts) >= count:
                    return prompts[:count], "opening bars of test-split folk tunes (music21 corpus)"
        if prompts:
            return prompts, "opening bars of test-split folk tunes (music21 corpus)"
    except ImportError:
        pass
    return _builtin_prompts(count), "built-in phrases (music21 corpus not available)"


def _prompt_from_piece(piece: Any) -> _Prompt | None:
    num, den = (int(x) for x in piece.meter.split("/"))
    if den not in (2, 4, 8, 16):
        return None
    bar_ticks = num * PPQ * 4 // den
    notes = tuple(Note(int(p), int(v), int(on) * _STEP_TICKS, max(1, int(d) * _STEP_TICKS))
                  for on, d, p, v in piece.notes if int(on) * _STEP_TICKS < PROMPT_BARS * bar_ticks)
    if len(notes) < 4:
        return None
    return _Prompt(piece.piece_id, notes, num, den)


def _builtin_prompts(count: int) -> list[_Prompt]:
    from companion.demo import DEMO_PHRASE

    return [_Prompt(f"demo+{shift}", tuple(Note(p + shift, 90, on, d) for p, on, d in DEMO_PHRASE), 4, 4)
            for shift in itertools.islice(itertools.cycle(range(-5, 7)), count)]


def _request(prompt: _Prompt, seed: int, style: str = "folk") -> RequestAnswer:
    """What the live engine asks for when this phrase ends: an answer from the next bar line."""
    settings = EngineSettings(beats_per_bar=prompt.beats_per_bar, beat_unit=prompt.beat_unit, seed=seed)
    bar_ticks = settings.bar_ticks
    start = PROMPT_BARS * bar_ticks
    key = estimate_key((n.pitch, float(n.duration_ticks)) for n in prompt.notes)
    return RequestAnswer(Phrase(prompt.notes, 0, start, bar_ticks), start, start + ANSWER_BARS * bar_ticks,
                         f"bench-{seed}", seed, key.as_pair() if key else None,
                         {**dataclasses.asdict(settings), "style": style})


def _cold_start(path: Path) -> dict[str, Any]:
    """A fresh process: import torch and load the model; then the running app answering once (peak memory)."""
    code = (
        "import json, resource, sys, time\n"
        "t0 = time.perf_counter()\n"
        "import torch\n"
        "import_s = time.perf_counter() - t0\n"
        "from companion.worker.generators import TransformerGenerator\n"
        f"generator = TransformerGenerator({str(path)!r})\n"
        "load_s = time.perf_counter() - t0 - import_s\n"
        "from companion.core.engine import EngineSettings\n"
        "from companion.demo import play_phrase\n"
        "result = play_phrase(EngineSettings(response_bars=2, silence_beats=1.0), 160.0, generator)\n"
        "rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'import_s': import_s, 'load_s': load_s, 'maxrss_kb': rss_kb,\n"
        "                  'first_error_ms': result.first_note_error_ms, 'answer_notes': len(result.answer),\n"
        "                  'sounding': result.sounding_at_end}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_transformer(seconds: float) -> list[Row]:
    """Transformer: load, first note after the phrase end, generation speed vs playback, peak memory of the app."""
    from companion.worker.generators import TransformerGenerator

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="companion-bench-") as tmp:
        path, label = _checkpoint(Path(tmp))
        load_ns: list[int] = []
        for _ in range(5):
            started = time.perf_counter_ns()
            generator = TransformerGenerator(path)
            load_ns.append(time.perf_counter_ns() - started)
        model = generator._model  # noqa: SLF001 - the bench reports the size of what it measured
        parameters = sum(p.numel() for p in model.model.parameters())
        prompts, source = _folk_prompts(PROMPTS)
        rows.append({"measure": "Transformer model and prompts",
                     "value": f"{label}; {parameters / 1e6:.2f} M parameters; prompts: {source}", "target": ""})
        rows.append({"measure": "Transformer: model load (torch already imported)", "target": "<= 2000 ms",
                     **percentiles(load_ns)})
        generator.stream(_request(prompts[0], 0))  # warm-up: first call pays one-off allocations
        list(generator.stream(_request(prompts[0], 0)))
        first_ns: list[int] = []
        first_cpu_ns: list[int] = []  # the decoding thread's CPU time: what wall time is on an idle machine
        notes_total, decode_ns, decode_cpu_ns = 0, 0, 0
        deadline = time.monotonic() + max(0.0, seconds)
        for index in itertools.count():
            if index >= MIN_PROMPTS and time.monotonic() >= deadline:
                break
            request = _request(prompts[index % len(prompts)], seed=index)
            started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
            stream = generator.stream(request)
            first = next(stream, None)
            if first is not None:
                first_ns.append(time.perf_counter_ns() - started)
                first_cpu_ns.append(time.thread_time_ns() - started_cpu)
            count = (first is not None) + sum(1 for _ in stream)  # the whole answer, unthrottled
            decode_ns += time.perf_counter_ns() - started
            decode_cpu_ns += time.thread_time_ns() - started_cpu
            notes_total += count
        rows.append({"measure": "Transformer: request -> first note of the answer", "target": "p99 <= 50 ms",
                     **percentiles(first_ns)})
        rows.append({"measure": "Transformer: request -> first note, decoding thread CPU time",
                     "target": "p99 <= 50 ms", **percentiles(first_cpu_ns)})
        needed_per_s = PLAYBACK_BPM / 60.0 * 4  # 16ths at 160 BPM
        for clock, spent_ns in (("wall", decode_ns), ("CPU", decode_cpu_ns)):
            rate = notes_total / (spent_ns / 1e9) if spent_ns else 0.0
            rows.append({"measure": f"Transformer: generation speed, {clock} time",
                         "value": f"{rate:.0f} notes/s = {rate / needed_per_s:.1f}x playback of 16ths at "
                                  f"{PLAYBACK_BPM:g} BPM ({notes_total} notes in {ANSWER_BARS}-bar answers)",
                         "target": f">= {TARGET_SPEEDUP:g}x", "ok": rate / needed_per_s >= TARGET_SPEEDUP})

        cold = _cold_start(path)
        if "error" in cold:
            rows.append({"measure": "Transformer: running app (fresh process)", "error": cold["error"]})
        else:
            rows.append({"measure": "Transformer: import torch + load (fresh process)",
                         "value": f"import torch {cold['import_s'] * 1e3:.0f} ms + load {cold['load_s'] * 1e3:.0f} ms",
                         "target": "load <= 2000 ms", "ok": cold["load_s"] <= 2.0})
            error = cold["first_error_ms"]
            rows.append({"measure": "Transformer: peak RSS of the running app (160 BPM answer)",
                         "value": f"{cold['maxrss_kb'] / 1024:.0f} MB (answer: {cold['answer_notes']} notes, "
                                  f"first {'-' if error is None else f'{error:+.2f} ms'} from its bar, "
                                  f"{cold['sounding']} left sounding)",
                         "target": "report"})
    return rows
