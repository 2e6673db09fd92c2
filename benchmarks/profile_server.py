#!/usr/bin/env python3
"""Profile one server under one benchmark scenario with py-spy (``pip install py-spy``).

    python benchmarks/profile_server.py echo-100x32                 # geventsio
    python benchmarks/profile_server.py echo-10x1 --server python-socketio --svg /tmp/psio.svg

Runs the scenario as run.py does (server on core 0, load generator on core 1),
samples the server during the measured window (py-spy on core 1 too), and
prints the functions with the most samples of their own ("self", where the
CPU is spent) and the most samples in total (inclusive). ``--svg`` also writes
a flame graph of the same window.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")


def short(frame: str, lines: bool = False) -> str:
    """``fn (path/to/file.py:12)`` -> ``fn (file.py)``: one entry per function, all lines together."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    parts = path.split("/")
    for anchor in ("site-packages", "geventsio", "lib"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            path = "/".join(parts[i + (anchor != "geventsio"):])
            break
    else:
        path = parts[-1]
    if lines and m.group("line"):
        path += ":" + m.group("line")
    return f"{m.group('fn')} ({path})"


def summarize(raw_path: str, top: int, lines_too: bool = False) -> str:
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [short(fr, lines_too) for fr in stack.split(";") if fr and not fr.startswith("process ")
                      and not fr.startswith("thread ")]
            if not frames:
                continue
            own[frames[-1]] += n
            for fr in set(frames):
                incl[fr] += n
    if not total:
        return "no samples (is the server busy? is py-spy allowed to ptrace it?)"
    lines = [f"{total} samples of the server's CPU", "", f"top {top} by own time (self):"]
    for fn, n in own.most_common(top):
        lines.append(f"  {n / total:6.1%}  {fn}")
    lines += ["", f"top {top} by inclusive time:"]
    for fn, n in incl.most_common(top):
        lines.append(f"  {n / total:6.1%}  {fn}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=list(run.SCENARIOS))
    ap.add_argument("--server", choices=list(run.SERVERS), default="geventsio")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--svg", help="also write a flame graph here")
    ap.add_argument("--ref", metavar="COMMIT", help="profile geventsio as committed at COMMIT (see run.py)")
    ap.add_argument("--native", action="store_true", help="also sample C frames (gevent's compiled parts)")
    ap.add_argument("--lines", action="store_true", help="count own time per source line, not per function")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    args.settle = 2
    if args.ref:
        run.make_snapshot(args.ref)
    pin = {run.SERVER_CORE, run.LOADGEN_CORE} <= os.sched_getaffinity(0)
    if pin:
        os.sched_setaffinity(0, {run.LOADGEN_CORE})
    tmp = tempfile.mkdtemp(prefix="geventsio-profile-")
    raw = os.path.join(tmp, "stacks.txt")
    spies: list[subprocess.Popen] = []
    spy_log = open(os.path.join(tmp, "py-spy.log"), "wb")

    def start(pid: int) -> None:
        # Sample exactly the measured window, from the load generator's core.
        seconds = str(max(1, int(args.duration)))
        common = ["--pid", str(pid), "--duration", seconds, "--rate", str(args.rate)]
        # --native needs the process paused while its C stack is read.
        common.append("--native" if args.native else "--nonblocking")
        spies.append(subprocess.Popen([pyspy, "record", *common, "--format", "raw", "-o", raw],
                                      stdout=subprocess.DEVNULL, stderr=spy_log))
        if args.svg:
            spies.append(subprocess.Popen([pyspy, "record", *common, "-o", args.svg],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    result: dict = {}

    def bench() -> None:
        result.update(run.run_one(args.server, args.scenario, args, tmp, 1, pin, on_start=start))

    t = threading.Thread(target=bench)
    t.start()
    t.join()
    for spy in spies:
        try:
            spy.wait(args.duration + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
    fig = run.primary(result)
    failed = "" if result.get("ok") else f" FAILED {result.get('error')}"
    print(f"{args.server} / {args.scenario}: {run.fmt(fig)} {run.unit(args.scenario)}, "
          f"server CPU {run.fmt(result.get('cpu_us_per_op'))} µs/op "
          f"(profiled, so slower than unprofiled){failed}")
    spy_log.close()
    if os.path.exists(raw):
        print(summarize(raw, args.top, args.lines))
    else:
        with open(spy_log.name, errors="replace") as f:
            print("py-spy wrote nothing:", f.read()[-2000:])
    if args.svg:
        print(f"flame graph: {args.svg}")


if __name__ == "__main__":
    main()
