"""The JACK server's xruns, as the server tells its clients: what lets the JACK tests tell a stalled machine from a
fault of Companion's.

When the dummy driver wakes late (a busy or virtual machine) JACK counts an xrun, restarts its frame clock and may
run cycles without a client: MIDI sent in those cycles is lost or heard twice, and frame positions jump. A timing
test that failed while the server reported xruns says nothing about Companion; conftest plays it again (a bounded
number of times) and says so in the summary. A test that fails with no xrun fails at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import threading

XRUN_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
NO_START_SERVER = 0x01


class XrunMonitor:
    """A JACK client of its own that counts the server's xrun notifications (on JACK's non-real-time thread)."""

    def __init__(self, name: str = "xrun-monitor") -> None:
        path = ctypes.util.find_library("jack") or "libjack.so.0"
        self._jack = ctypes.CDLL(path)
        self._jack.jack_client_open.restype = ctypes.c_void_p
        self._jack.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        self._jack.jack_set_xrun_callback.argtypes = [ctypes.c_void_p, XRUN_CALLBACK, ctypes.c_void_p]
        self._jack.jack_activate.argtypes = [ctypes.c_void_p]
        self._jack.jack_client_close.argtypes = [ctypes.c_void_p]
        self._lock = threading.Lock()
        self._count = 0
        self._callback = XRUN_CALLBACK(self._on_xrun)  # kept: JACK holds only the pointer
        status = ctypes.c_int(0)
        self._client = self._jack.jack_client_open(name.encode(), NO_START_SERVER, ctypes.byref(status))
        if not self._client:
            raise RuntimeError(f"the xrun monitor could not open a JACK client (status 0x{status.value:x})")
        if self._jack.jack_set_xrun_callback(self._client, self._callback, None) != 0 \
                or self._jack.jack_activate(self._client) != 0:
            self._jack.jack_client_close(self._client)
            raise RuntimeError("the xrun monitor could not register its callback")

    def _on_xrun(self, _arg: object) -> int:
        with self._lock:
            self._count += 1
        return 0

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        if self._client:
            self._jack.jack_client_close(self._client)
            self._client = None


class XrunCounter:
    """The test process's side: an XrunMonitor in a child process, asked for its count."""

    def __init__(self) -> None:
        self._process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True)
        first = self._process.stdout.readline() if self._process.stdout else ""
        if not first.strip().isdigit():
            self.close()
            raise RuntimeError(f"the xrun monitor did not start: {first.strip()}")

    @property
    def count(self) -> int:
        process = self._process
        if process.poll() is not None or process.stdin is None or process.stdout is None:
            return 0
        try:
            process.stdin.write("\n")
            process.stdin.flush()
            return int(process.stdout.readline() or 0)
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=5)


def main() -> int:
    try:
        monitor = XrunMonitor(f"xrun-monitor-{os.getpid()}")
    except (OSError, RuntimeError) as err:
        print(f"error: {err}", flush=True)
        return 1
    print(0, flush=True)
    for _ in sys.stdin:
        print(monitor.count, flush=True)
    monitor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
