"""The one compiled part: companion/midi/_jackmidi.c, a JACK client in C (optional: rtmidi's JACK is the fallback)."""

import sys

from setuptools import Extension, setup

JACK_SHIM = Extension(
    "companion.midi._jackmidi",
    sources=["companion/midi/_jackmidi.c"],
    depends=["companion/midi/_jackout.h"],
    extra_compile_args=["-O2", "-std=c11", "-D_GNU_SOURCE"],
    libraries=["dl", "pthread"] if sys.platform.startswith("linux") else [],
    optional=True,  # no compiler, or a system without POSIX semaphores: Companion uses rtmidi's JACK instead
)

setup(ext_modules=[JACK_SHIM] if sys.platform.startswith("linux") else [])
