"""`companion bench --load N`: busy processes beside the run, quiet and loaded rows, a verdict on every target."""

from __future__ import annotations

import os
import time

import pytest

from companion.bench.load import busy_processes, verdict
from companion.bench.suite import bench_command


@pytest.mark.parametrize("row, ok", [
    ({"target": "p99 <= 1 ms", "p99_ms": 0.5}, True),
    ({"target": "p99 <= 1 ms", "p99_ms": 1.5}, False),
    ({"target": "p99 <= 3.33 ms (one period + 2 ms)", "p99_ms": 3.0}, True),
    ({"target": "max <= 1500 ms", "max_ms": 1600.0}, False),
    ({"target": "p99 <= 1 ms, none skipped", "p99_ms": 0.1, "skipped_late": 2}, False),
    ({"target": "p99 <= 1 ms", "p99_ms": float("nan")}, False),
    ({"target": ">= 20x", "value": "23x", "ok": True}, True),
    ({"target": "-", "p99_ms": 9.0}, None),
    ({"measure": "x", "error": "no JACK server"}, None),
])
def test_verdict_checks_the_rows_own_target(row: dict, ok: bool | None) -> None:
    assert verdict(row) is ok


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads CPU time from /proc")
def test_busy_processes_use_cpu_at_normal_priority_and_end_with_the_block() -> None:
    with busy_processes(2) as pids:
        assert len(pids) == 2
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and min(_cpu_seconds(pid) for pid in pids) < 0.05:
            time.sleep(0.05)
        assert min(_cpu_seconds(pid) for pid in pids) >= 0.05, "each busy process burns CPU"
        assert all(os.sched_getscheduler(pid) == os.SCHED_OTHER for pid in pids)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), "killed and reaped"


def test_load_runs_each_section_quiet_then_loaded_and_marks_every_row(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import companion.bench.suite

    children: list[int] = []

    def section(seconds: float) -> dict:
        busy = [p for p in os.listdir("/proc") if p.isdigit() and _is_busy_child(int(p))]
        children.append(len(busy))
        return {"measure": "fake figure", "target": "p99 <= 1 ms", "n": 1, "p50_ms": 0.1,
                "p99_ms": 0.5 if not busy else 2.0, "max_ms": 2.0}

    monkeypatch.setattr(companion.bench.suite, "_resolve", lambda target: section)
    assert bench_command(["latency"], as_json=False, seconds=1.0, load=2) == 0
    out = capsys.readouterr().out
    runs = len(companion.bench.suite.SECTIONS["latency"])
    assert children == [0] * runs + [2] * runs
    assert out.count("quiet") == runs and out.count("2 busy") == runs
    assert out.count("✓") == runs and out.count("✗") == runs and f"{runs} target(s) missed" in out
    assert "(steal) during the run" in out.splitlines()[0]  # how much of the run a virtual machine's host took


def test_the_machine_line_says_the_share_of_cpu_time_the_host_took() -> None:
    from companion.bench.suite import _machine

    before = [100, 0, 0, 100, 0, 0, 0, 0]
    line = _machine(before)
    with open("/proc/stat") as stat:
        now = [int(f) for f in stat.readline().split()[1:9]]
    spent = [b - a for a, b in zip(before, now, strict=True)]
    said = float(line.split("(steal) during the run ")[1].split(" %")[0])
    assert abs(said - 100 * spent[7] / sum(spent)) <= 0.1


def _is_busy_child(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as cmd:
            return ppid == os.getpid() and b"while True: pass" in cmd.read()
    except (OSError, ValueError):
        return False
