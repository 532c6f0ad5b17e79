"""Loading Companion's C JACK client (companion/midi/_jackmidi.c) with ctypes, and whether it can be used here.

Its own module so that the backend list can ask `available()` without importing the ports built on it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading
from typing import Any

FORCE_RTMIDI_ENV = "COMPANION_JACK_RTMIDI"  # "1": use rtmidi's JACK even where the shim is built

_load_lock = threading.Lock()
_libs: tuple[Any, Any] | None = None
_why_not: str | None = None


def load() -> tuple[Any, Any] | None:
    """(the shim, libjack) as ctypes libraries, or None with `_why_not` set."""
    global _libs, _why_not
    with _load_lock:
        if _libs is not None or _why_not is not None:
            return _libs
        spec = importlib.util.find_spec("companion.midi._jackmidi")
        if spec is None or spec.origin is None:
            _why_not = "the JACK shim (companion/midi/_jackmidi.c) was not built with this install"
            return None
        try:
            shim, libjack = ctypes.CDLL(spec.origin), ctypes.CDLL(_libjack_name())
        except OSError as err:
            _why_not = f"the JACK shim could not be loaded ({err})"
            return None
        vp, c, i, u32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32
        for name, res, args in (
            ("cj_open", vp, [c, c, i]), ("cj_client", vp, [vp]), ("cj_shut_down", i, [vp]),
            ("cj_add_port", i, [vp, c, i]), ("cj_port", vp, [vp, i]), ("cj_remove_port", None, [vp, i]),
            ("cj_send", i, [vp, i, c, u32]), ("cj_wait", i, [vp, i, i]), ("cj_dropped", u32, [vp, i]),
            ("cj_read", i, [vp, i, ctypes.POINTER(ctypes.c_ubyte), u32, ctypes.POINTER(ctypes.c_uint64)]),
            ("cj_close", None, [vp]), ("cj_add_port_at", i, [vp, i, c, i]), ("cj_abandon", None, [vp]),
            ("cj_missed_cycles", ctypes.c_uint64, [vp, i]),
            ("cj_send_at", i, [vp, i, c, u32, ctypes.c_uint64]),
            ("cj_output_late", ctypes.c_uint64, [vp, i, ctypes.POINTER(ctypes.c_uint64)]),
            ("cj_set_frame_stamps", None, [vp, i, i]),
        ):
            if not hasattr(shim, name):  # built from an older _jackmidi.c: use rtmidi's JACK, say how to rebuild
                _why_not = (f"the JACK shim {spec.origin} is out of date (no {name}); rebuild it with "
                            "`pip install -e .` (or `python setup.py build_ext --inplace`)")
                return None
            getattr(shim, name).restype, getattr(shim, name).argtypes = res, args
        for name, res, args in (
            ("jack_get_ports", ctypes.POINTER(c), [vp, c, c, ctypes.c_ulong]), ("jack_free", None, [vp]),
            ("jack_connect", i, [vp, c, c]), ("jack_port_name", c, [vp]), ("jack_get_client_name", c, [vp]),
        ):
            getattr(libjack, name).restype, getattr(libjack, name).argtypes = res, args
        if hasattr(libjack, "jack_port_rename"):
            libjack.jack_port_rename.restype, libjack.jack_port_rename.argtypes = i, [vp, vp, c]
        _libs = (shim, libjack)
        return _libs


def _libjack_name() -> str:
    return "libjack.0.dylib" if os.uname().sysname == "Darwin" else "libjack.so.0"


def available() -> tuple[bool, str]:
    """Whether JACK ports go through our own client, and if not, why (for the log)."""
    if os.environ.get(FORCE_RTMIDI_ENV) == "1":
        return False, f"{FORCE_RTMIDI_ENV}=1 asks for rtmidi's JACK"
    return (load() is not None), (_why_not or "")


def why_not() -> str:
    """Why the shim could not be loaded ("" if it was, or was not tried yet)."""
    return _why_not or ""
