"""Shipped presets run headless over JACK with no stuck note; Program Change switches preset at the bar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from midi_wire import (
    ON_TIME_BOUND_MS,
    left_sounding,
    note_ons,
    play_at,
    repeated_cycles,
    unexplained_double_strikes,
    wait_for_models,
)

from companion.app import build_runtime
from companion.core.events import PPQ
from companion.live.runtime import RuntimeConfig
from companion.presets.preset import ENV_CONFIG_DIR, load_preset, shipped_presets_dir

pytestmark = pytest.mark.jack

TEST_BPM = 240.0  # a bar a second in 4/4: a few bars stay short
SHIPPED = sorted(p.stem for p in shipped_presets_dir().glob("*.toml"))
# Morph morphs from the first phrase to the second; harmonize has its model loaded by the second. Other modes get
# one phrase: a second one, started right after the first one's silence, would only cancel the first answer.
TWO_PHRASE_MODES = ("morph", "harmonize")
# A one-bar phrase, (pitch, onset, duration) in ticks from its first bar line.
DAW_IN = "Preset test DAW In"
PHRASE = [(62, 0, 200), (66, 240, 200), (69, 480, 400), (71, 960, 200), (69, 1200, 200), (66, 1440, 400)]


@pytest.fixture(autouse=True)
def no_user_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CONFIG_DIR, str(tmp_path / "config"))


def _play_phrase(runtime: Any, client: Any, channel: int = 0) -> int:
    """Play PHRASE from the next bar line; returns the tick its last note ends."""
    timebase = runtime.clock.timebase()
    first_bar = timebase.next_bar(timebase.ticks_at(time.monotonic_ns()) + PPQ // 2)
    events = [(timebase.ns_at(first_bar + on), [0x90 | channel, p, 96]) for p, on, _ in PHRASE]
    events += [(timebase.ns_at(first_bar + on + d), [0x80 | channel, p, 0]) for p, on, d in PHRASE]
    play_at(client.send, events)
    return first_bar + max(on + d for _, on, d in PHRASE)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_preset_plays_a_few_bars_over_jack_without_stuck_notes(name: str, jack_client, poll) -> None:
    """The preset as `companion run --preset NAME` builds it (its settings, extras, CC map and model), at a fast
    tempo: the phrase played (twice where one is not enough: see TWO_PHRASE_MODES), Companion plays notes of its
    own, and closing leaves nothing sounding."""
    preset = load_preset(name)
    settings = preset.engine_settings()
    # The DAW listens before Companion's output opens (Companion's output connects to it as it opens): a generator
    # plays on its own from the first bar, and a listener connected later hears note-offs of notes it never heard.
    client = jack_client("daw").open_virtual_in(DAW_IN)
    config = RuntimeConfig(backend="jack", bpm=TEST_BPM, model=str(preset.extras.get("model", "auto")),
                           checkpoint=preset.extras.get("checkpoint"), out_port=DAW_IN)
    runtime = build_runtime(config, settings, preset).start()
    client.connect_out("Companion In")
    wait_for_models(runtime)
    try:
        assert runtime.presets.name == name
        input_channel = settings.input_channel if settings.input_channel is not None else 0
        if preset.mode in TWO_PHRASE_MODES:
            _play_phrase(runtime, client, input_channel)
        phrase_end = _play_phrase(runtime, client, input_channel)
        timebase = runtime.clock.timebase()
        phrase_end_ns = timebase.ns_at(phrase_end)
        pitches = {p for p, _, _ in PHRASE}

        def own_notes() -> list:  # not the player's notes played through: other pitches, or after the phrase
            return [(d, t) for d, t in note_ons(client.messages()) if d[1] not in pitches or t > phrase_end_ns]

        # The phrase ends after its silence (or at max_bars); an answer starts on the next beat or bar after it.
        silence = round(settings.silence_beats * settings.beat_ticks)
        deadline_ns = timebase.ns_at(phrase_end + silence + 3 * settings.bar_ticks)
        poll(lambda: own_notes() or time.monotonic_ns() > deadline_ns, timeout_s=30)
        played = own_notes()
        snap = runtime.snapshot()
        assert played, (f"{name} ({preset.mode}): Companion played nothing of its own; counters "
                        f"{snap.get('counters')}, engine {snap.get('engine', {}).get('counters')}, "
                        f"log {snap.get('log')}")
        if preset.mode in ("call_response", "variation", "morph", "duet"):
            channels = {d[0] & 0x0F for d, _ in played}
            assert channels == {settings.output_channel}, f"{name}: played on channels {channels}"
        # Let it play one more bar, then stop in the middle of whatever it is doing.
        stop_ns = timebase.ns_at(timebase.ticks_at(time.monotonic_ns()) + settings.bar_ticks)
        poll(lambda: time.monotonic_ns() >= stop_ns, timeout_s=10)
        assert not any(level == "error" for level, _ in runtime.snapshot().get("log", [])), runtime.snapshot()["log"]
        repeated = repeated_cycles()
    finally:
        runtime.close()
    assert runtime.error is None, runtime.error
    assert poll(lambda: left_sounding(client.messages()) == 0, timeout_s=5), \
        f"{name}: {left_sounding(client.messages())} note(s) left sounding after close"
    heard = client.messages()
    doubles = unexplained_double_strikes(heard, repeated)
    keys = {(data[0] & 0x0F, data[1]) for _, data in doubles}
    assert doubles == [], f"{name}: heard twice {doubles}; those keys as heard: " + str(
        [(t, d) for d, t in heard if len(d) == 3 and d[0] & 0xE0 == 0x80 and (d[0] & 0x0F, d[1]) in keys])


def test_program_change_switches_preset_at_the_next_bar_with_no_stuck_notes(jack_client, poll) -> None:
    """Needs the runtime's preset wiring: build_runtime(..., preset=P) and Runtime.presets (a PresetSession)."""
    start = load_preset("folk-call-response")
    config = RuntimeConfig(backend="jack", bpm=TEST_BPM, model="markov")
    runtime = build_runtime(config, start.engine_settings(), preset=start).start()
    client = jack_client("daw").connect_out("Companion In").connect_in("Companion Out")
    try:
        _play_phrase(runtime, client)
        assert poll(lambda: note_ons(client.messages()), timeout_s=10), "no answer to switch away from"
        program = next(p for p, n in start.bank.programs.items() if n == "trading-fours")
        timebase = runtime.clock.timebase()
        # Sent in the bar's first half: the message reaches Companion up to a JACK period after it is sent (and
        # the answer note that told us to send it was heard up to half a period early), so one sent just before a
        # bar line is switched on the bar after the one computed here.
        poll(lambda: timebase.next_bar(timebase.ticks_at(time.monotonic_ns())) - timebase.ticks_at(
            time.monotonic_ns()) > timebase.bar_ticks // 2, timeout_s=5)
        sent_ns = client.send([0xC0 | start.bank.channel, program])
        bar_ns = timebase.ns_at(timebase.next_bar(timebase.ticks_at(sent_ns)))
        assert poll(lambda: runtime.presets.name == "trading-fours", timeout_s=5), "preset did not switch"
        assert time.monotonic_ns() >= bar_ns - 5_000_000, "switched before the bar line"
        assert runtime.engine.settings.response_bars == 4
        # Everything that sounded before the bar got its note-off by the bar (plus the engine's tick and JACK).
        poll(lambda: time.monotonic_ns() > bar_ns + 100_000_000, timeout_s=5)
        # The bar plus the JACK tests' one on-time bound (a stalled CI VM), far less than the rest of a note.
        before = [(d, t) for d, t in client.messages() if t <= bar_ns + ON_TIME_BOUND_MS * 1e6]
        offs = [(d, (t - bar_ns) / 1e6) for d, t in client.messages() if d[0] & 0xF0 == 0x80 or d[2:3] == [0]]
        assert left_sounding(before) == 0, f"notes of the old preset kept sounding past the bar; note-offs (ms " \
                                           f"after the bar): {offs}"
        assert runtime.snapshot().get("preset") == "trading-fours"
    finally:
        runtime.close()
    assert poll(lambda: left_sounding(client.messages()) == 0, timeout_s=5)


def test_a_bad_preset_by_program_change_is_refused_and_the_session_keeps_playing(jack_client, poll,
                                                                                 tmp_path: Path) -> None:
    user = tmp_path / "config" / "presets"
    user.mkdir(parents=True)
    (user / "broken.toml").write_text("[sampling]\ntemperature = 99\n")
    (user / "set.toml").write_text('[bank]\nchannel = 16\n0 = "broken"\n')
    start = load_preset("set")
    runtime = build_runtime(RuntimeConfig(backend="jack", bpm=TEST_BPM, model="markov"), start.engine_settings(),
                            preset=start).start()
    client = jack_client("daw").connect_out("Companion In").connect_in("Companion Out")
    try:
        client.send([0xCF, 0])
        assert poll(lambda: any("refused" in text for _, text in runtime.snapshot().get("log", [])), timeout_s=5)
        assert runtime.presets.name == "set"
        _play_phrase(runtime, client)
        assert poll(lambda: note_ons(client.messages()), timeout_s=10), "the session stopped answering"
    finally:
        runtime.close()
    assert runtime.error is None
    assert poll(lambda: left_sounding(client.messages()) == 0, timeout_s=5)
