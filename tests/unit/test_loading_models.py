"""A model loading in the real-time process: the collector stays off meanwhile, and what it made is frozen after
(no full collection pass over a model's objects on the scheduler's time); a session's close thaws it."""

from __future__ import annotations

import gc
import threading

import pytest

from companion.midi.realtime import loading_models, thaw_models


@pytest.fixture(autouse=True)
def restore_collector():
    yield
    gc.enable()
    gc.unfreeze()


def test_no_collection_while_a_model_loads_and_its_objects_are_frozen_after() -> None:
    passes: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.unfreeze()
    gc.callbacks.append(seen)
    try:
        with loading_models():
            assert not gc.isenabled()
            made = [[i] for i in range(200_000)]  # a model's worth of container objects
        assert gc.isenabled()
        assert passes == []
        assert gc.get_freeze_count() >= len(made)
    finally:
        gc.callbacks.remove(seen)
    thaw_models()
    assert gc.get_freeze_count() == 0


def test_two_loads_side_by_side_keep_the_collector_off_until_both_end() -> None:
    inside, release = threading.Event(), threading.Event()

    def other_load() -> None:
        with loading_models():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other_load)
    thread.start()
    assert inside.wait(5)
    with loading_models():
        pass
    assert not gc.isenabled(), "the other load is still under way"
    thaw_models()  # a session closing meanwhile leaves the other load's freeze to come
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_a_failing_load_turns_the_collector_back_on() -> None:
    with pytest.raises(ValueError), loading_models():
        raise ValueError("corrupt checkpoint")
    assert gc.isenabled()
