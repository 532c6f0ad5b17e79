"""The compiled parts, both optional (without a C compiler Companion runs on the pure-Python fallbacks):

- companion/midi/_jackmidi.c: a JACK client in C (Linux; rtmidi's JACK is the fallback);
- models/continuation/_decode.c: the continuation Transformer's decoding step with int8 weights (models/continuation/fast_decode.py says
  why; torch's int8 kernels are the fallback).
"""

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

DECODER = Extension(
    "models.continuation._decode",
    sources=["models/continuation/_decode.c"],
    extra_compile_args=["/O2"] if sys.platform == "win32" else ["-O3", "-std=c11", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"],
    libraries=[] if sys.platform == "win32" else ["m"],
    optional=True,  # no compiler: torch's int8 kernels decode instead (slower)
)

setup(ext_modules=([JACK_SHIM] if sys.platform.startswith("linux") else []) + [DECODER])
