"""``companion eval continuation``: continuations of tunes held out of training, against prompt-only baselines.

Each held-out tune (``models.data.holdout``: a whole corpus collection never trained on) gives a prompt (its
first 4 bars) and a truth (the next 4). Every answer source continues the prompt for 4 bars: the three
baselines of ``models.continuation.baselines``, and our generators as each continuing mode asks them (call and
response, trading fours, duet, ``generate continue``), through the same ``Generator.stream`` the live engine
uses. Figures per ``models.continuation.metrics``; prints JSON (``--out`` also writes it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from companion.core.events import PPQ, Note, Phrase, RequestAnswer
from companion.core.theory import estimate_key
from models.continuation.baselines import prompt_markov_answer, random_in_key_answer, repeat_answer
from models.continuation.metrics import OVERLAPS, Tune, paired_difference, summarise, tune_figures, tune_from_piece

NoteTuple = tuple[int, int, int, int]
Answerer = Callable[[Tune, int], list[NoteTuple]]
BASELINES = ("repeat", "prompt_markov", "random_in_key")
MARKOV_MODES = ("markov_call_response",)
TRANSFORMER_MODES = ("call_response", "trading_fours", "duet", "generate_continue")
PROMPT_BARS = ANSWER_BARS = 4
LOOSE_TICKS = 12  # --played: how far (either way, at 480 a beat) a played onset strays from the written one


def played_tunes(tunes: list[Tune], touch: float, seed: int = 0) -> list[Tune]:
    """The tunes as a player plays them (``--played``): each prompt note sounding for about ``touch`` of its
    written length and its onset loose by up to LOOSE_TICKS; the truth with the same touch (what the player would
    have played next), so an answer that keeps the player's touch matches it."""
    rng = random.Random(seed)
    out = []
    for t in tunes:
        prompt = tuple((p, v, max(0, s + rng.randint(-LOOSE_TICKS, LOOSE_TICKS)),
                        max(1, round(d * touch * rng.uniform(0.9, 1.1)))) for p, v, s, d in t.prompt)
        truth = tuple((p, v, s, max(1, round(d * touch))) for p, v, s, d in t.truth)
        out.append(dataclasses.replace(t, prompt=tuple(sorted(prompt, key=lambda n: (n[2], n[0]))), truth=truth))
    return out


def held_out_tunes(pieces_path: Path | None, count: int, workers: int,
                   skip: int = 0) -> tuple[list[Tune], dict[str, Any]]:
    """``count`` usable tunes of the held-out collection (by piece id, after the first ``skip``), and where they
    came from."""
    from models.data.holdout import HELD_OUT_COLLECTION, in_held_out_collection
    from models.data.pieces import load_pieces
    from models.tokenizer import TokenizerConfig

    config = TokenizerConfig()
    if pieces_path is not None:
        if not pieces_path.is_file():
            raise ValueError(f"{pieces_path}: no such file; give a .npz written by `companion train transformer "
                             "--save-pieces`, or leave --pieces out to parse the held-out collection")
        pieces = [p for p in load_pieces(pieces_path) if in_held_out_collection(p.piece_id)]
    else:
        from models.continuation.train import default_cache_dir
        from models.data.cache import build_pieces, corpus_sources

        sources = [s for s in corpus_sources(("folk",)) if in_held_out_collection(s[2])]
        pieces = build_pieces(sources, default_cache_dir(), config, workers=workers).pieces
    if not pieces:
        raise ValueError(f"no pieces of the held-out collection {HELD_OUT_COLLECTION} in "
                         f"{pieces_path or 'the corpus'}")
    # once each: a cache read can hand the same file's pieces over twice (two sources, one cache entry)
    pieces = list({p.piece_id: p for p in pieces}.values())
    step_ticks = PPQ // config.positions_per_beat
    tunes = []
    for piece in sorted(pieces, key=lambda p: p.piece_id):
        tune = tune_from_piece(piece, config.bar_positions(piece.meter), step_ticks, PROMPT_BARS, ANSWER_BARS)
        if tune is not None and len(tunes) < skip + count:
            tunes.append(tune)
    tunes = tunes[skip:]
    if not tunes:
        raise ValueError(f"no usable tune of {HELD_OUT_COLLECTION} after the first {skip}: give a smaller --skip")
    return tunes, {"collection": HELD_OUT_COLLECTION, "pieces": len(pieces), "tunes_skipped": skip,
                   "tunes_used": len(tunes)}


def _meter(tune: Tune) -> tuple[int, int]:
    num, den = (int(x) for x in tune.meter.split("/"))
    return num, den


def _phrase(tune: Tune, from_ticks: int = 0) -> Phrase:
    """The prompt as the engine captures it: notes on the clock from tick 0 (the phrase's bar line)."""
    notes = tuple(Note(p, v, s, min(d, tune.answer_start_ticks - s)) for p, v, s, d in tune.prompt
                  if s >= from_ticks)
    return Phrase(notes, from_ticks, max(n.end_ticks for n in notes), tune.bar_ticks)


def _key_of_playing(tune: Tune) -> tuple[int, str] | None:
    key = estimate_key((p, float(d)) for p, _, _, d in tune.prompt)
    return key.as_pair() if key is not None else None


def _relative(notes: list[Note], start_ticks: int) -> list[NoteTuple]:
    return sorted(((n.pitch, n.velocity, n.start_ticks - start_ticks, n.duration_ticks) for n in notes),
                  key=lambda n: (n[2], n[0]))


def _preset_settings(name: str, tune: Tune) -> dict[str, Any]:
    """The request settings a preset gives (as the engine sends them), in the tune's meter, without humanize."""
    from companion.offline.generate import _preset_settings as settings_of
    from companion.presets.preset import load_preset

    num, den = _meter(tune)
    # humanize is the output's feel, laid over every answer after it is made: the figures read the answer itself
    return {**settings_of(load_preset(name)), "beats_per_bar": num, "beat_unit": den, "humanize": 0.0}


def _answer_span(generator: Any, tune: Tune, settings: dict[str, Any], seed: int) -> list[NoteTuple]:
    """One call-and-response answer: the whole prompt as the phrase, the answer over the truth's bars."""
    start = tune.answer_start_ticks
    request = RequestAnswer(_phrase(tune), start, start + ANSWER_BARS * tune.bar_ticks, f"answer-{seed}", seed,
                            _key_of_playing(tune), settings)
    return _relative(list(generator.stream(request)), start)


def _duet(generator: Any, tune: Tune, settings: dict[str, Any], seed: int) -> list[NoteTuple]:
    """The duet once the player stops after 4 bars, as ``DuetMode`` plays it: spans of its length from the bar
    line on (the player's last note no longer replaces them), each prompted with the player's last
    ``context_bars`` bars (the duet's window) and, if the mode hears itself, what its own earlier spans played."""
    from companion.core.modes.duet import DuetMode

    mode = DuetMode()
    start, bar = tune.answer_start_ticks, tune.bar_ticks
    span = mode.span_ticks(bar // _meter(tune)[0], bar)
    phrase = _phrase(tune, max(0, start - mode.context_bars * bar))
    key = _key_of_playing(tune)
    notes: list[Note] = []
    tags: list[str] = []
    for k, at in enumerate(range(start, start + ANSWER_BARS * bar, span)):
        tag = f"duet-{seed}-{k}"
        s = {**settings, "task": "duet", "continues": list(tags) if mode.hear_itself else []}
        end = min(at + span, start + ANSWER_BARS * bar)
        notes += generator.stream(RequestAnswer(phrase, at, end, tag, seed + k, key, s))
        tags.append(tag)
    return _relative(notes, start)


def _continue_file(generator: Any, tune: Tune, seed: int, settings: dict[str, Any]) -> list[NoteTuple]:
    """``companion generate continue`` on the prompt written as a file (the real code path, no preset)."""
    from companion.files.midifile import MidiInput
    from companion.offline.generate import continue_file

    phrase = _phrase(tune)
    num, den = _meter(tune)
    source = MidiInput(Path(f"{tune.piece_id}.mid"), None, phrase.notes, 500000, num, den, phrase.end_ticks)
    start = -(-phrase.end_ticks // tune.bar_ticks) * tune.bar_ticks
    if start != tune.answer_start_ticks:  # the prompt's last note ends before its last bar: answer on its bar line
        start = tune.answer_start_ticks
        source = dataclasses.replace(source, end_ticks=start)
    return _relative(continue_file(source, bars=ANSWER_BARS, seed=seed, generator=generator, settings=settings),
                     start)


def answerers(names: list[str], checkpoint: Path | None, overrides: dict[str, Any] | None = None
              ) -> dict[str, Answerer]:
    """The answer sources asked for, by name (the Transformer is loaded once if any of its modes is asked).

    ``overrides`` are laid over every mode's request settings (e.g. ``{"style_mix": 0.0}``)."""
    extra = overrides or {}
    out: dict[str, Answerer] = {
        "repeat": lambda t, seed: repeat_answer(t.prompt, t.answer_start_ticks, ANSWER_BARS * t.bar_ticks,
                                                t.bar_ticks, PROMPT_BARS),
        "prompt_markov": lambda t, seed: prompt_markov_answer(t.prompt, t.answer_start_ticks,
                                                              ANSWER_BARS * t.bar_ticks, seed),
        "random_in_key": lambda t, seed: random_in_key_answer(t.prompt, _key_of_playing(t) or t.key,
                                                              ANSWER_BARS * t.bar_ticks, seed),
    }
    if "markov_call_response" in names:
        from companion.worker.generators import MarkovGenerator

        # a fresh session per tune: the responder learns this player's phrase only
        out["markov_call_response"] = lambda t, seed: _answer_span(
            MarkovGenerator(), t, _preset_settings("folk-call-response", t), seed)
    if set(names) & set(TRANSFORMER_MODES):
        from companion.worker.generators import TransformerGenerator

        gen = TransformerGenerator(checkpoint)
        out["call_response"] = lambda t, seed: _answer_span(
            gen, t, {**_preset_settings("folk-call-response", t), **extra}, seed)
        out["trading_fours"] = lambda t, seed: _answer_span(
            gen, t, {**_preset_settings("trading-fours", t), **extra}, seed)
        out["duet"] = lambda t, seed: _duet(gen, t, {**_preset_settings("duet", t), **extra}, seed)
        out["generate_continue"] = lambda t, seed: _continue_file(gen, t, seed, extra)
    return {n: out[n] for n in names}


DRAW_STRIDE = 100_003  # draw d of tune i is answered with seed + i + d * DRAW_STRIDE (draw 0: seed + i)


def _mean_figures(draws: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(d[k] for d in draws) / len(draws) for k in draws[0]}


def evaluate(tunes: list[Tune], sources: dict[str, Answerer], seed: int = 0,
             progress: Callable[[str], None] | None = None, draws: int = 1) -> dict[str, Any]:
    """Figures of every answer source over the tunes, and each one's paired gain over the prompt Markov chain.

    ``draws``: answers per tune, each with its own seed; a tune's figures are their mean (every source that
    samples, baselines included, is a random draw: more draws measure the system rather than one draw's luck).
    """
    tonal = [sum(1 for n in t.prompt if n[0] % 12 in _scale(t)) >= 0.9 * len(t.prompt) for t in tunes]
    rows: dict[str, list[dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    for name, answer in sources.items():
        t0 = time.perf_counter()
        rows[name] = [_mean_figures([tune_figures(answer(t, seed + i + d * DRAW_STRIDE), t, PPQ)
                                     for d in range(draws)]) for i, t in enumerate(tunes)]
        seconds[name] = round(time.perf_counter() - t0, 1)
        if progress:
            progress(f"{name}: {len(tunes)} tunes x {draws} draw(s) in {seconds[name]} s")
    truth = [tune_figures(list(t.truth), t, PPQ) for t in tunes]
    result: dict[str, Any] = {"answers": {n: summarise(r, tonal) for n, r in rows.items()},
                              "truth": {k: v for k, v in summarise(truth, tonal).items()
                                        if k in ("tunes", "in_key", "copied_4grams", "notes_per_bar", "grid_kept")},
                              "seconds": seconds}
    if "prompt_markov" in rows:
        result["gain_over_prompt_markov"] = {
            n: {o: paired_difference(r, rows["prompt_markov"], o) for o in OVERLAPS}
            for n, r in rows.items() if n != "prompt_markov"}
    return result


def _scale(tune: Tune) -> frozenset[int]:
    from models.continuation.sampling import scale_pcs

    return scale_pcs(tune.key)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="companion eval continuation",
                                description="Continue the first 4 bars of tunes held out of training and compare "
                                            "with their next 4 bars and with prompt-only baselines; prints JSON.")
    p.add_argument("--pieces", type=Path, help="a parsed corpus .npz (else the held-out collection is parsed)")
    p.add_argument("--tunes", type=int, default=100, help="how many held-out tunes (first by piece id)")
    p.add_argument("--skip", type=int, default=0, help="start after this many usable tunes (another sample)")
    p.add_argument("--answers", default=",".join(BASELINES + MARKOV_MODES + TRANSFORMER_MODES),
                   help="comma list of answer sources: " + ", ".join(BASELINES + MARKOV_MODES + TRANSFORMER_MODES))
    p.add_argument("--checkpoint", type=Path, help="the Transformer (default: the shipped continuation.pt)")
    p.add_argument("--seed", type=int, default=0, help="tune i is answered with seed + i")
    p.add_argument("--draws", type=int, default=1,
                   help=f"answers per tune (draw d: seed + i + d * {DRAW_STRIDE}); a tune's figures are their mean")
    p.add_argument("--style-mix", type=float, help="override the Transformer's style mix (0: the model alone)")
    p.add_argument("--temperature", type=float, help="override every mode's temperature")
    p.add_argument("--copy-share", type=float, help="override the Transformer's copy guard (1: no guard)")
    p.add_argument("--template-mix", type=float,
                   help="override the Transformer's bar templates (the phrase's bars as the answer's shape; 0: off)")
    p.add_argument("--played", type=float, metavar="TOUCH",
                   help="play the prompts as a player would: notes sounding for TOUCH of their length (e.g. 0.8), "
                        f"onsets loose by up to {LOOSE_TICKS} ticks of {PPQ}; the truth with the same touch")
    p.add_argument("--workers", type=int, default=2, help="parsing processes (without --pieces)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    return p


def eval_main(argv: list[str] | None = None) -> int:
    """Print the evaluation JSON; 0 ok, 2 bad input (one line on stderr)."""
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.answers.split(",") if n.strip()]
    known = BASELINES + MARKOV_MODES + TRANSFORMER_MODES
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        print(f"companion eval continuation: --answers: unknown {', '.join(unknown) or '(none given)'}; "
              f"choose from {', '.join(known)}", file=sys.stderr)
        return 2
    if args.tunes < 1 or args.skip < 0 or args.draws < 1 or not 0 < (args.played or 1) <= 1:
        print("companion eval continuation: --tunes and --draws must be at least 1, --skip not negative and "
              "--played above 0 and at most 1", file=sys.stderr)
        return 2
    try:
        tunes, source = held_out_tunes(args.pieces, args.tunes, args.workers, args.skip)
        if args.played is not None:
            tunes = played_tunes(tunes, args.played, args.seed)
        overrides = {k: v for k, v in (("style_mix", args.style_mix), ("temperature", args.temperature),
                                       ("copy_share", args.copy_share), ("template_mix", args.template_mix))
                     if v is not None}
        sources = answerers(names, args.checkpoint, overrides)
    except ValueError as err:
        print(f"companion eval continuation: {err}", file=sys.stderr)
        return 2
    result = {"held_out": source, "prompt_bars": PROMPT_BARS, "answer_bars": ANSWER_BARS,
              "checkpoint": str(args.checkpoint or "shipped"), "seed": args.seed, "draws": args.draws,
              "overrides": overrides, "played": args.played,
              **evaluate(tunes, sources, args.seed, lambda s: print(s, file=sys.stderr, flush=True), args.draws)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0
