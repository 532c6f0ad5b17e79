"""The real-time process (ports, clock, engine, scheduler, session socket, the model worker's client) imports
neither torch nor textual: the models live in their worker process, the UI in its own."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import companion.app, companion.cli, companion.live.session, companion.live.session_server, companion.worker.process
heavy = sorted(name for name in ("torch", "textual") if name in sys.modules)
print(",".join(heavy))
"""


def test_the_realtime_side_loads_neither_torch_nor_textual() -> None:
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "", f"the real-time process imported {done.stdout.strip()}"


def test_starting_lead_sheet_harmony_imports_no_torch_on_the_engine_thread() -> None:
    """The engine thread imports the chord worker when harmonize mode starts; torch (read only to load the model,
    on the harmony worker's thread) must not come with it: importing torch there stalled the engine, and the
    collector's full passes during the import stalled the scheduler (100 ms and more)."""
    code = "import sys, companion.harmony.chord_worker; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"
