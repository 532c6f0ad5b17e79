"""A JACK shim built from an older _jackmidi.c is refused with a way to rebuild it, not a traceback."""

from __future__ import annotations

import importlib.machinery
import importlib.util

import pytest

from companion.midi import jack_shim as jack


def test_a_shim_missing_a_function_is_said_out_of_date(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        jack.ctypes.CDLL(jack._libjack_name())
    except OSError:
        pytest.skip("libjack is not installed")
    # libjack itself stands in for a shim that has none of the cj_* functions.
    stale = importlib.machinery.ModuleSpec("companion.midi._jackmidi", None, origin=jack._libjack_name())
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: stale)
    monkeypatch.setattr(jack, "_libs", None)
    monkeypatch.setattr(jack, "_why_not", None)
    monkeypatch.delenv(jack.FORCE_RTMIDI_ENV, raising=False)
    ok, why = jack.available()
    assert not ok
    assert "out of date" in why and "pip install -e ." in why
