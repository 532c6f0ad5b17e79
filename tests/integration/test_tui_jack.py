"""The terminal UI on the real runtime over JACK: a phrase played in, both parts on the piano roll, panic silences."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from midi_wire import left_sounding, play_at

from companion.app import build_runtime
from companion.core.engine import EngineSettings
from companion.core.events import PPQ
from companion.live.runtime import RuntimeConfig
from companion.tui.app import build_app
from companion.tui.piano_roll import COMPANION_STYLE, PLAYER_STYLE

pytestmark = pytest.mark.jack

# (pitch, onset, duration) in ticks from the phrase's first bar line: a one-bar phrase in G major.
PHRASE = [(67, 0, 200), (71, 240, 200), (74, 480, 400), (72, 960, 200), (71, 1200, 200), (69, 1440, 400)]
SIZE = (140, 44)


def _roll_styles(app: Any) -> set[str]:
    """The foreground styles the roll draws with now (its strips, as the screen gets them)."""
    return {str(seg.style).split(" on ")[0].strip() for strip in app.roll.strips() for seg in strip if seg.style}


def test_ui_shows_both_parts_and_panic_silences_everything(jack_client: Callable[..., Any]) -> None:
    tag = f"tui-test-{os.getpid()}"
    client = jack_client(f"{tag}-daw").open_virtual_out(f"{tag}-play")
    listener = jack_client(f"{tag}-synth").open_virtual_in(f"{tag}-hear")
    settings = EngineSettings(seed=5, silence_beats=1.0, response_bars=4, response_start="bar")
    config = RuntimeConfig(backend="jack", bpm=180.0, model="markov", in_port=f"{tag}-play", out_port=f"{tag}-hear")
    runtime = build_runtime(config, settings).start()
    app = build_app(runtime)
    outcome: dict[str, Any] = {}

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def until(predicate: Callable[[], Any], timeout_s: float) -> Any:
            deadline = loop.time() + timeout_s
            while not (value := predicate()) and loop.time() < deadline:
                await asyncio.sleep(0.02)
            return value

        async with app.run_test(size=SIZE) as pilot:
            timebase = runtime.clock.timebase()
            first_bar = timebase.next_bar(timebase.ticks_at(time.monotonic_ns()) + PPQ)
            events = [(timebase.ns_at(first_bar + on), [0x90, p, 96]) for p, on, _ in PHRASE]
            events += [(timebase.ns_at(first_bar + on + d), [0x80, p, 0]) for p, on, d in PHRASE]
            player = threading.Thread(target=play_at, args=(client.send, events), name="test-daw")
            player.start()
            # The answer is queued ahead of the playhead before it plays: the roll shows it as planned.
            outcome["planned"] = await until(lambda: list(app.roll.planned), 12.0)
            outcome["planned_seen_at"] = runtime.clock.timebase().ticks_at(time.monotonic_ns())
            both = await until(lambda: {n[0] for n in app.roll.notes} >= {"player", "companion"}, 12.0)
            player.join()
            outcome["sources"] = {n[0] for n in app.roll.notes}
            # The roll draws at most every MIN_FRAME_NS: give the picture a moment to catch up with the data.
            outcome["styles"] = await until(
                lambda: (styles := _roll_styles(app)) >= {PLAYER_STYLE, COMPANION_STYLE} and styles, 2.0) \
                or _roll_styles(app)
            outcome["player_pitches"] = {n[1] for n in app.roll.notes if n[0] == "player"}
            assert both, f"the roll never showed both parts: {app.roll.notes}"
            await pilot.press("space")
            outcome["panic_ns"] = time.monotonic_ns()
            await until(lambda: time.monotonic_ns() > outcome["panic_ns"] + 700_000_000, 2.0)
            outcome["after_panic"] = listener.messages()
            outcome["planned_after_panic"] = runtime.snapshot()["planned"]
            outcome["log"] = [text for _, text in runtime.snapshot().get("log", [])]
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        runtime.close()
    assert outcome["planned"], "the roll never showed the planned answer"
    # Planned notes lie ahead (a frame's worth of slack), and a call-and-response answer is committed.
    assert all(start >= outcome["planned_seen_at"] - PPQ for _, start, _, _ in outcome["planned"])
    assert all(committed for *_, committed in outcome["planned"])
    assert outcome["planned_after_panic"] == [], "panic dropped the plan, the roll still shows it"
    assert outcome["sources"] == {"player", "companion"}
    assert {PLAYER_STYLE, COMPANION_STYLE} <= outcome["styles"]
    assert outcome["player_pitches"] == {p for p, _, _ in PHRASE}
    messages = outcome["after_panic"]
    assert any(d[0] & 0xF0 == 0x90 and d[2] and t < outcome["panic_ns"] for d, t in messages), "no answer before panic"
    late_ons = [d for d, t in messages if d[0] & 0xF0 == 0x90 and d[2] and t > outcome["panic_ns"] + 20_000_000]
    assert not late_ons, f"notes kept coming after panic: {late_ons}"
    assert left_sounding(messages) == 0, "a note was left sounding after panic"
    assert any("all notes off" in text for text in outcome["log"])
    assert runtime.closed
