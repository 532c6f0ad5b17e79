"""The model worker process: answers cross the boundary intact; a worker that dies, hangs or speaks another
version is replaced while the Markov responder in this process plays on."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest

from companion.core.events import Note, Phrase, RequestAnswer
from companion.worker.generators import MarkovGenerator
from companion.worker.process import ModelProcess

READY_S = 60.0  # a worker's start on a busy CI box


def _request(tag: str = "answer-1", seed: int = 4) -> RequestAnswer:
    pitches = (62, 66, 69, 71, 69, 66, 64, 62)
    phrase = Phrase(tuple(Note(p, 90, i * 240, 220) for i, p in enumerate(pitches)), 0, 1920, 1920)
    return RequestAnswer(phrase, 1920, 1920 * 5, tag, seed, (2, "major"), {"temperature": 1.0})


@pytest.fixture
def worker() -> Iterator[tuple[ModelProcess, list[tuple[str, str]]]]:
    lines: list[tuple[str, str]] = []
    models = ModelProcess("markov", hang_s=3.0, log_line=lambda level, text: lines.append((level, text)))
    assert models.wait_ready(READY_S), lines
    yield models, lines
    models.close()


def test_an_answer_from_the_worker_is_the_one_this_process_would_make(worker) -> None:
    models, _ = worker
    assert models.name == "markov" and models.pid != os.getpid()
    here = list(MarkovGenerator().stream(_request()))
    assert here and list(models.stream(_request())) == here


def test_a_worker_killed_mid_answer_is_replaced_and_the_answer_goes_on(worker) -> None:
    models, lines = worker
    whole = list(MarkovGenerator().stream(_request()))
    stream = models.stream(_request())
    first = [next(stream) for _ in range(3)]
    old_pid = models.pid
    os.kill(old_pid, signal.SIGKILL)
    rest = list(stream)
    assert first == whole[:3], "the worker's notes came first"
    assert rest and all(n.start_ticks > first[-1].start_ticks for n in rest), "the rest follows, in order"
    assert rest[-1].end_ticks <= _request().end_ticks and len(first) + len(rest) >= len(whole) // 2
    assert any(level == "warning" and "Markov responder answers" in text for level, text in lines)
    assert models.faults and "exited" in models.faults[0]
    assert models.wait_ready(READY_S) and models.pid not in (None, old_pid) and models.restarts == 1
    assert list(models.stream(_request("answer-2"))), "the new worker answers"


def test_a_hung_worker_is_noticed_killed_and_replaced(worker) -> None:
    models, lines = worker
    stream = models.stream(_request())
    first = next(stream)
    hung = models.pid
    os.kill(hung, signal.SIGSTOP)
    try:
        rest = list(stream)  # the worker may have sent a few notes ahead (its credit); then 3 s of nothing
        assert rest and rest[-1].start_ticks > first.start_ticks
        assert any("hung" in fault for fault in models.faults), models.faults
        assert models.wait_ready(READY_S) and models.pid != hung
        with pytest.raises(ProcessLookupError):
            os.kill(hung, 0)  # killed (and reaped), not left stopped
    finally:
        try:
            os.kill(hung, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_worker_of_another_version_is_refused_and_the_fallback_answers(poll) -> None:
    lines: list[tuple[str, str]] = []
    foreign = [sys.executable, "-c", "import sys, time; print('{\"v\": 2, \"type\": \"ready\"}', flush=True); "
                                     "time.sleep(30)"]
    models = ModelProcess(hang_s=3.0, log_line=lambda level, text: lines.append((level, text)), worker_argv=foreign)
    try:
        assert poll(lambda: models.faults, 20.0), "the foreign worker was not refused"
        assert "wire version 2, this side speaks 1" in models.faults[0]
        assert models.name == "markov" and list(models.stream(_request()))
        assert any("wire version 2" in text for _, text in lines)
    finally:
        models.close()
