"""The core imports nothing heavy: no torch, textual, rtmidi or mido (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "textual", "rtmidi", "mido")

PROBE = """
import importlib, json, pkgutil, sys
import companion.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, core.__name__ + ".")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(sys.modules)}))
"""


def test_importing_every_core_module_loads_nothing_heavy() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {
        "companion.core.engine",
        "companion.core.capture",
        "companion.core.timebase",
        "companion.core.modes.call_response",
    }
    assert expected <= set(report["modules"])
    heavy = [m for m in report["loaded"] if m.split(".")[0] in FORBIDDEN]
    assert heavy == [], f"companion.core pulled in {heavy}"


def test_markov_model_does_not_import_companion() -> None:
    probe = "import sys, models.continuation.markov; print(sorted(m for m in sys.modules if m.split('.')[0] in "
    probe += "('companion', 'torch', 'numpy')))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
