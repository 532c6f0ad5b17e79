"""Our timing threads never outrank JACK's: a JACK client that misses a cycle loses that cycle's MIDI."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from companion.midi import realtime
from companion.midi.ports import open_input

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="no SCHED_FIFO on this system")]


def _policy(tid: int) -> tuple[int, int]:
    return os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority


def test_an_input_reader_runs_below_the_jack_process_thread_or_at_normal_priority_beside_a_plain_jack(
        poll: Callable[..., Any]) -> None:
    with open_input("jack", port=None, callback=lambda data, t: None, virtual_name="Companion In rt-test") as midi_in:
        reader = midi_in._reader  # noqa: SLF001 - the thread whose priority is the point of the test
        assert reader is not None
        tid = reader.native_id
        assert tid is not None
        jack = realtime.jack_priorities()
        assert jack is not None, "the JACK client's threads were not found"
        if jack:
            poll(lambda: _policy(tid)[0] != os.SCHED_OTHER, 1.0)  # the thread sets its own once it runs
        policy, priority = _policy(tid)
        if jack:  # JACK in real-time mode (the default, and what the test server runs): ours just below it
            assert policy == os.SCHED_FIFO, f"the reader did not get real-time priority below JACK's {jack}"
            assert 1 <= priority < max(jack) and priority <= realtime.READER_PRIORITY
        else:  # JACK without real-time scheduling: ours must not starve it either
            assert policy == os.SCHED_OTHER
            assert "without real-time" in (realtime.try_realtime(realtime.SCHEDULER_PRIORITY) or "")


def test_rank_order_is_kept_and_every_rank_is_below_jack_2s_default_client_priority() -> None:
    ranks = [realtime.SCHEDULER_PRIORITY, realtime.READER_PRIORITY, realtime.ENGINE_PRIORITY,
             realtime.HARMONY_PRIORITY]
    assert ranks == sorted(ranks, reverse=True) and len(set(ranks)) == len(ranks)
    assert max(ranks) < 5 and min(ranks) >= 1  # jackd -R (priority 10) runs its clients' threads at 5


def test_a_thread_asking_for_more_than_jack_has_is_capped_below_it() -> None:
    with open_input("jack", port=None, callback=lambda data, t: None, virtual_name="Companion In rt-cap"):
        jack = realtime.jack_priorities()
        if not jack:
            pytest.skip("the JACK server runs without real-time scheduling (covered by the test above)")
        got: dict[str, object] = {}

        def ask() -> None:
            got["problem"] = realtime.try_realtime(max(jack) + 20)
            got["policy"] = _policy(threading.get_native_id())

        thread = threading.Thread(target=ask)
        thread.start()
        thread.join()
        if got["problem"] is not None and "refused" in str(got["problem"]):
            pytest.skip(f"this user may not use SCHED_FIFO: {got['problem']}")
        assert got["problem"] is None
        assert got["policy"] == (os.SCHED_FIFO, max(jack) - 1)
