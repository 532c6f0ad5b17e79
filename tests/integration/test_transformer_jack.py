"""Call and response with the Transformer over JACK: the answer on its bar, on the grid, every note closed."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from midi_wire import (
    ON_TIME_BOUND_MS,
    early_bound_ms,
    left_sounding,
    play_at,
    repeated_cycles,
    unexplained_double_strikes,
)

from companion.app import build_runtime
from companion.core.engine import EngineSettings
from companion.core.events import PPQ, Note, RequestAnswer
from companion.live.runtime import RuntimeConfig

pytestmark = pytest.mark.jack

# (pitch, onset, duration) in ticks from the phrase's first bar line: a one-bar D-major phrase.
PHRASE = [(62, 0, 200), (66, 240, 200), (69, 480, 400), (71, 960, 200), (69, 1200, 200), (66, 1440, 400)]
GRID_TICKS = PPQ // 12  # the tokenizer's grid: 16ths and triplets


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped checkpoint when there is one, else a tiny randomly initialised model saved the same way."""
    torch = pytest.importorskip("torch")
    from models.checkpoint import save_checkpoint
    from models.continuation.model import DEFAULT_CHECKPOINT, KIND
    from models.tokenizer import Tokenizer
    from models.transformer import GPT, GPTConfig

    if DEFAULT_CHECKPOINT.is_file():
        return DEFAULT_CHECKPOINT
    tok = Tokenizer()
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab.size, block_size=256, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    path = tmp_path_factory.mktemp("ckpt") / "continuation.pt"
    save_checkpoint(path, GPT(config), kind=KIND, model_config=config.to_dict(),
                    tokenizer_config=tok.config.to_dict(), data={"source": "test"}, metrics={})
    return path


class RecordingGenerator:
    """Wraps the runtime's generator: what it streamed, per request, to compare with what came out of JACK."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[attr-defined]
        self.notes: list[Note] = []
        self.requests: list[RequestAnswer] = []
        self._lock = threading.Lock()

    def stream(self, request: RequestAnswer) -> Iterator[Note]:
        with self._lock:
            self.requests.append(request)
        for note in self.inner.stream(request):  # type: ignore[attr-defined]
            with self._lock:
                self.notes.append(note)
            yield note


def _names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"Companion In {tag}", f"Companion Out {tag}"


def test_the_transformer_answers_on_the_bar_on_the_grid_with_every_note_closed(jack_client, checkpoint) -> None:
    settings = EngineSettings(seed=4, silence_beats=1.0, response_bars=2, response_start="bar")
    name_in, name_out = _names()
    config = RuntimeConfig(backend="jack", bpm=120.0, model="transformer", checkpoint=str(checkpoint),
                           in_name=name_in, out_name=name_out)
    runtime = build_runtime(config, settings)
    models = runtime.generator  # the model worker process, which the recording wraps (and this test closes)
    assert models.wait_ready(60.0), "the Transformer's worker did not become ready"
    recording = RecordingGenerator(models)
    runtime.generator = recording
    runtime.start()
    try:
        client = jack_client("daw").connect_out(name_in).connect_in(name_out)
        timebase = runtime.clock.timebase()
        first_bar = timebase.next_bar(timebase.ticks_at(time.monotonic_ns()) + PPQ)
        events = [(timebase.ns_at(first_bar + on), [0x90, p, 96]) for p, on, _ in PHRASE]
        events += [(timebase.ns_at(first_bar + on + d), [0x80, p, 0]) for p, on, d in PHRASE]
        play_at(client.send, events)
        phrase_end = first_bar + max(on + d for _, on, d in PHRASE)
        answer_bar = timebase.next_bar(phrase_end + PPQ)  # one beat of silence ends the phrase
        answer_end = answer_bar + 2 * timebase.bar_ticks
        assert client.wait_for(lambda m: time.monotonic_ns() > timebase.ns_at(answer_end) + 300_000_000,
                               timeout_s=15)
        assert runtime.snapshot()["generator"] == "transformer"
        [request] = recording.requests
        assert (request.start_ticks, request.end_ticks) == (answer_bar, answer_end)
        generated = list(recording.notes)
        assert generated, "the Transformer streamed no note for a two-bar answer"
        # On the grid of the answer and inside it.
        assert all((n.start_ticks - answer_bar) % GRID_TICKS == 0 for n in generated)
        assert all(answer_bar <= n.start_ticks and n.end_ticks <= answer_end for n in generated)
        # Every generated note came out of JACK on its own deadline (one JACK period plus a busy machine).
        messages = client.messages()
        arrivals = [(d[1], t) for d, t in messages if d[0] & 0xF0 == 0x90 and d[2] > 0]
        assert len(arrivals) == len(generated)
        early_ms = early_bound_ms(timed=runtime.timed_output)
        for note in generated:
            deadline_ns = timebase.ns_at(note.start_ticks)
            errors_ms = [(t - deadline_ns) / 1e6 for p, t in arrivals if p == note.pitch]
            assert any(-early_ms <= e <= ON_TIME_BOUND_MS for e in errors_ms), (note, errors_ms)
        assert runtime.snapshot()["counters"]["late_notes"] == 0
        assert left_sounding(messages) == 0
        assert unexplained_double_strikes(messages, repeated_cycles()) == []
    finally:
        runtime.close()
        models.close()


def test_without_a_checkpoint_the_log_and_the_snapshot_say_markov(jack_client, tmp_path: Path) -> None:
    name_in, name_out = _names()
    config = RuntimeConfig(backend="jack", model="auto", checkpoint=str(tmp_path / "missing.pt"),
                           in_name=name_in, out_name=name_out)
    runtime = build_runtime(config, EngineSettings()).start()
    try:
        assert runtime.generator.wait_ready(60.0), "the model worker did not become ready"  # it loads after the ports
        snap = runtime.snapshot()
        assert snap["generator"] == "markov"
        warnings = [text for level, text in snap["log"] if level == "warning"]
        assert any("Transformer not available" in w and "missing.pt" in w for w in warnings), snap["log"]
    finally:
        runtime.close()
