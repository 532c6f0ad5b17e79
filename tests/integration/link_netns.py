"""Every Link test runs in a network namespace of its own with only loopback up: no Link packet leaves the machine.

`run_isolated(argv)` runs a command there (`unshare -n`, as root: in a user namespace the JACK client would not be
the JACK server's user) after `ip link set lo up`; the scripts it runs check that `lo` is their only interface
before Link starts. Where root, the binding, `unshare` or `ip` is missing the Link tests skip, and fail instead
under COMPANION_REQUIRE_LINK=1 (CI).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Sequence

import pytest

UP_LOOPBACK = 'ip link set lo up && exec "$@"'


def isolation_problem() -> str | None:
    """Why Link tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "a network namespace of its own (unshare -n) needs root"
    if importlib.util.find_spec("_link") is None:
        return 'the Link binding is not installed (pip install -e ".[link]")'
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing (apt-get install {'util-linux' if tool == 'unshare' else 'iproute2'})"
    probe = subprocess.run(["unshare", "-n", "--", "sh", "-c", UP_LOOPBACK, "sh", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot make a network namespace here: {probe.stderr.strip() or probe.returncode}"
    return None


def require_isolation() -> None:
    """Skip (or fail under COMPANION_REQUIRE_LINK=1) unless a loopback-only namespace can run Link."""
    problem = isolation_problem()
    if problem is None:
        return
    if os.environ.get("COMPANION_REQUIRE_LINK") == "1":
        pytest.fail(f"COMPANION_REQUIRE_LINK=1 but {problem}")
    pytest.skip(problem)


def run_isolated(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run `argv` in a new network namespace with only loopback up; the environment (JACK's server name) passes."""
    return subprocess.run(["unshare", "-n", "--", "sh", "-c", UP_LOOPBACK, "sh", *argv],
                          capture_output=True, text=True, timeout=timeout_s)
