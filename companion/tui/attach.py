"""`companion attach`: the terminal UI as a client of a running session (the UI side of the session socket)."""

from __future__ import annotations

import sys
from pathlib import Path


def attach_command(control: str | None) -> int:
    """`companion attach`: the terminal UI for a running session; quitting it detaches (the session plays on)."""
    from companion.live.session_client import RemoteRuntime
    from companion.tui.app import build_app

    remote = RemoteRuntime(Path(control) if control else None)
    app = build_app(remote)
    app.run()
    remote.close()
    if remote.lost:
        print(f"companion: {remote.lost}", file=sys.stderr)
    return 0
