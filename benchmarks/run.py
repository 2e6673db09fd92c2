#!/usr/bin/env python3
"""Benchmark geventsio against python-socketio (gevent mode) on the same machine.

    npm ci --prefix benchmarks           # once: the Node load generator's `ws`
    python benchmarks/run.py             # every scenario, 3 interleaved rounds (~15 min)
    python benchmarks/run.py --quick     # a smoke subset, one short round (< 1 min)
    python benchmarks/run.py --scenarios echo bcast-1000 --rounds 5

Each server runs alone on core 0 and the Node load generator (benchmarks/loadgen.js)
on core 1. Every (scenario, server, round) gets a fresh server process on a fresh
port; the two servers alternate which goes first. The server's CPU time is read from
/proc/PID/stat at the start and the end of the measured window, its RSS from
/proc/PID/status. The table shows medians over the rounds with min-max, and the
ratio geventsio / python-socketio. Raw results go to benchmarks/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS_DIR = os.path.join(HERE, "servers")
RESULTS_DIR = os.path.join(HERE, "results")
LOADGEN = os.path.join(HERE, "loadgen.js")

SERVER_CORE = 0
LOADGEN_CORE = 1

SERVERS = {
    "geventsio": os.path.join(SERVERS_DIR, "geventsio_app.py"),
    "python-socketio": os.path.join(SERVERS_DIR, "psio_app.py"),
}

# name -> (loadgen config, what the primary figure is)
SCENARIOS: dict[str, dict] = {}


def _add(name: str, group: str, title: str, **loadgen):
    SCENARIOS[name] = {"group": group, "title": title, "loadgen": loadgen}


for _n in (10, 100):
    for _k in (1, 32):
        _add(f"echo-{_n}x{_k}", "echo", f"echo, {_n} clients x {_k} in flight",
             scenario="echo", clients=_n, inflight=_k)
for _n in (10, 100):
    for _k in (1, 32):
        _add(f"ack-{_n}x{_k}", "ack", f"ack, {_n} clients x {_k} in flight",
             scenario="ack", clients=_n, inflight=_k)
_add("bcast-100", "bcast", "room broadcast to 100 clients", scenario="bcast", clients=100, window=8)
_add("bcast-1000", "bcast", "room broadcast to 1,000 clients", scenario="bcast", clients=1000, window=8)
# Slow consumers: the same 1,000-member room with 1 KiB broadcasts, without and
# with 10 members that stop reading; the rest should not notice them.
_add("bcast-1000-1k", "stalled", "broadcast of 1 KiB to 1,000 clients", scenario="bcast",
     clients=1000, window=8, size=1024)
_add("bcast-1000-1k-stalled", "stalled", "the same with 10 of them stalled", scenario="bcast",
     clients=1000, window=8, size=1024, stalled=10)
# Two server processes on one Redis (each server's own Redis manager), the clients split
# between them, the driver on the first: every broadcast crosses Redis to reach half the room.
_add("cluster-bcast-1000", "cluster", "room broadcast to 1,000 clients on 2 processes via Redis",
     scenario="bcast", clients=1000, window=8, cluster=2)
_add("connect", "connect", "handshakes to a namespace (10 at a time)", scenario="connect", concurrency=10)
_add("idle-1000", "idle", "idle memory, 1,000 clients", scenario="idle", clients=1000, concurrency=50)
_add("idle-10000", "idle", "idle memory, 10,000 clients", scenario="idle", clients=10000, concurrency=50)
_add("poll-echo-10", "poll", "long-polling echo, 10 clients x 1", scenario="poll-echo",
     clients=10, inflight=1)
_add("big-ws", "big", "1 MiB binary echo over WebSocket", scenario="big-ws")
_add("big-poll", "big", "1 MiB binary echo over long-polling", scenario="big-poll")

QUICK = ["echo-10x32", "ack-100x1", "bcast-100", "connect", "idle-1000", "poll-echo-10", "big-ws"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
BUSY = 0.25  # share of the server's core taken by other processes past which a run is repeated


# -- /proc ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    return sum(cpu_user_sys(pid))


def cpu_user_sys(pid: int) -> tuple[float, float]:
    """(utime, stime) of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def core_busy_seconds() -> dict[int, float]:
    """Busy (non-idle) time of every core so far, from /proc/stat."""
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals[:8]]
                busy[int(name[3:])] = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK
    return busy


def wait_until_quiet(limit: float, threshold: float = 0.15, timeout: float = 60) -> float:
    """Wait (at most ``timeout`` s) until the machine's cores are busy less than ``threshold``.

    Other work on the machine skews everything; returns the last load seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        b0 = core_busy_seconds()
        time.sleep(limit)
        b1 = core_busy_seconds()
        load = max((b1[c] - b0[c]) / limit for c in b0)
        if load < threshold or time.monotonic() > deadline:
            return load


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# -- processes --------------------------------------------------------------------


def _pinned(core: int | None):
    def preexec():
        os.setpgrp()
        if core is not None:
            os.sched_setaffinity(0, {core})
        # 10,000 clients need 10,000 descriptors in the server and in the generator.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
        if want == resource.RLIM_INFINITY:
            want = 65536
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    return preexec


REPO = os.path.dirname(HERE)


# With --ref, geventsio is imported from a `git archive` of that commit, not the working tree.
SNAPSHOT: dict = {}


def make_snapshot(ref: str) -> None:
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True,
                         timeout=10)
    if sha.returncode != 0:
        raise SystemExit(f"--ref {ref}: {sha.stderr.strip()}")
    sha = sha.stdout.strip()
    path = os.path.join(RESULTS_DIR, f"snapshot-{sha}")
    if not os.path.isdir(os.path.join(path, "geventsio")):
        os.makedirs(path, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "geventsio"], cwd=REPO, capture_output=True,
                                 timeout=60, check=True).stdout
        subprocess.run(["tar", "-x", "-C", path], input=archive, check=True, timeout=60)
    SNAPSHOT.update(path=path, label=f"geventsio {sha} (committed; --ref {ref})")


def code_version(server: str) -> str:
    """What code a server run used: the commit and a hash of geventsio's sources as they are now.

    The package may be edited while a long benchmark runs; the report flags it.
    """
    if server == "geventsio" and SNAPSHOT:
        return SNAPSHOT["label"]
    if server != "geventsio":
        from importlib.metadata import version
        try:
            return (f"python-socketio {version('python-socketio')}, "
                    f"python-engineio {version('python-engineio')}")
        except Exception:  # noqa: BLE001
            return "python-socketio ?"
    digest = hashlib.sha1()
    pkg = os.path.join(REPO, "geventsio")
    for root, dirs, files in os.walk(pkg):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for fn in sorted(files):
            if fn.endswith(".py"):
                path = os.path.join(root, fn)
                digest.update(os.path.relpath(path, pkg).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        head = "?"
    return f"geventsio {head}, sources {digest.hexdigest()[:10]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server not listening on {port} after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Lines:
    """Lines from a pipe, each read with a deadline."""

    def __init__(self, pipe):
        self.fd = pipe.fileno()
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def next(self, deadline: float) -> str | None:
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("load generator timed out")
            if not self.sel.select(left):
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def server_log_issues(path: str) -> list[str]:
    """Lines the server wrote to stderr: warnings, tracebacks (nothing, when all is well)."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.rstrip() for line in f if line.strip()]
    except OSError:
        return []
    return lines


REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def run_one(server: str, name: str, args, log_dir: str, round_no: int, pin: bool,
            on_start=None) -> dict:
    """One scenario against fresh server process(es); ``on_start(pid)`` runs as the window opens.

    A ``cluster`` scenario starts that many server processes on one Redis (a key of
    their own), all on the server core; their CPU times are added up.
    """
    spec = SCENARIOS[name]
    lg = dict(spec["loadgen"])
    processes = lg.pop("cluster", 1)
    lg.setdefault("warmup", args.warmup)
    lg.setdefault("duration", args.duration)
    if lg["scenario"] == "idle":
        lg.setdefault("settle", args.settle)
    ports = [free_port() for _ in range(processes)]
    port = lg["port"] = ports[0]
    if processes > 1:
        lg["ports"] = ports
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if processes > 1:
        env.update(BENCH_REDIS_URL=REDIS_URL, BENCH_REDIS_KEY=f"bench-{os.getpid()}-{time.time_ns()}")
    if server == "geventsio" and SNAPSHOT:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SNAPSHOT["path"], env.get("PYTHONPATH")) if p)
    srvs = []
    log_paths = []
    result: dict = {"server": server, "scenario": name, "round": round_no, "port": port,
                    "code": code_version(server)}
    gen = None
    try:
        for i, p in enumerate(ports):
            suffix = f".p{i + 1}" if processes > 1 else ""
            log_paths.append(os.path.join(log_dir, f"{name}.{server}.r{round_no}{suffix}.log"))
            with open(log_paths[-1], "wb") as log:
                srvs.append(subprocess.Popen(
                    [sys.executable, SERVERS[server], str(p)],
                    cwd=SERVERS_DIR, env=dict(env, BENCH_CLUSTER_INDEX=str(i + 1)),
                    stdout=subprocess.DEVNULL, stderr=log,
                    preexec_fn=_pinned(SERVER_CORE if pin else None),
                ))
            # One after the other: a cluster member listens once it is subscribed.
            wait_listening(p, srvs[-1])
        srv = srvs[0]
        time.sleep(0.2)
        gen = subprocess.Popen(
            ["node", LOADGEN, json.dumps(lg)], cwd=HERE, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=_pinned(LOADGEN_CORE if pin else None),
        )
        lines = Lines(gen.stdout)
        limit = lg.get("warmup", 1) + lg.get("duration", 5) + lg.get("settle", 0) + 180
        deadline = time.monotonic() + limit
        cpu0 = cpu1 = None
        busy0: dict = {}
        busy1: dict = {}
        while True:
            line = lines.next(deadline)
            if line is None:
                raise RuntimeError("load generator ended without a result: "
                                   + gen.stderr.read().decode(errors="replace")[-2000:])
            msg = json.loads(line)
            ev = msg.get("event")
            if ev == "mark" and msg["name"] == "start":
                sys0 = sum(cpu_user_sys(s.pid)[1] for s in srvs)
                cpu0 = sum(cpu_seconds(s.pid) for s in srvs)
                busy0 = core_busy_seconds()
                if on_start is not None:
                    on_start(srv.pid)
            elif ev == "mark" and msg["name"] == "stop":
                sys1 = sum(cpu_user_sys(s.pid)[1] for s in srvs)
                cpu1 = sum(cpu_seconds(s.pid) for s in srvs)
                busy1 = core_busy_seconds()
            elif ev == "sync":
                if msg["name"] == "baseline":
                    result["rss_before_kb"] = rss_kb(srv.pid)
                elif msg["name"] == "loaded":
                    result["rss_after_kb"] = rss_kb(srv.pid)
                    result["cpu_idle_sample"] = cpu_seconds(srv.pid)
                gen.stdin.write(b"go\n")
                gen.stdin.flush()
            elif ev == "result":
                msg["kind"] = msg.pop("scenario", None)
                result.update({k: v for k, v in msg.items() if k != "event"})
                break
        gen.wait(30)
        if cpu0 is not None and cpu1 is not None:
            result["server_cpu_s"] = cpu1 - cpu0
            # The kernel's share (syscalls, TCP) of that time: what no Python change can shave.
            result["server_sys_share"] = (sys1 - sys0) / (cpu1 - cpu0) if cpu1 > cpu0 else None
            if result.get("ops"):
                result["cpu_us_per_op"] = (cpu1 - cpu0) * 1e6 / result["ops"]
            if result.get("seconds"):
                result["server_cpu_util"] = (cpu1 - cpu0) / result["seconds"]
                # What else ran on the server's core meanwhile (other processes on a shared machine).
                core = SERVER_CORE if pin else None
                if core is not None and core in busy0:
                    other = (busy1[core] - busy0[core]) - (cpu1 - cpu0)
                    result["other_load_server_core"] = max(0.0, other / result["seconds"])
        if "rss_after_kb" in result and result.get("connected"):
            result["kb_per_conn"] = (result["rss_after_kb"] - result["rss_before_kb"]) / result["connected"]
        for s in srvs:
            if s.poll() is not None:
                result["ok"] = False
                result["error"] = f"server exited with {s.returncode}"
    except Exception as exc:  # noqa: BLE001 - one failed run must not end the benchmark
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
            gen.wait(5)
        for s in srvs:
            stop(s)
    issues = [line for path in log_paths for line in server_log_issues(path)]
    if issues:
        result["server_log_lines"] = len(issues)
        result["server_log_head"] = issues[:5]
    return result


# -- summary ----------------------------------------------------------------------


def primary(result: dict) -> float | None:
    """The headline figure of one run: a rate, or KB per connection for idle memory."""
    if not result.get("ok"):
        return None
    if result["scenario"].startswith("idle"):
        return result.get("kb_per_conn")
    if result["scenario"].startswith("big"):
        return result.get("lat_p50_ms")
    return result.get("rate")


def unit(name: str) -> str:
    if name.startswith("idle"):
        return "KB/conn (lower is better)"
    if name.startswith("big"):
        return "ms per round trip, p50 (lower is better)"
    if name.startswith(("bcast", "cluster-bcast")):
        return "deliveries/s"
    if name == "connect":
        return "handshakes/s"
    return "events/s"


def med(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000 and digits == 0:
        return f"{v:,.0f}"
    if abs(v) < 10 and digits == 0:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def spread(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "failed"
    m = statistics.median(values)
    if len(values) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(values))}–{fmt(max(values))})"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def table(results: list[dict], names: list[str], servers: list[str]) -> str:
    g, p = servers[0], servers[-1]
    head = (f"| scenario | metric | {g} median (min–max) | {p} median (min–max) | ratio g/p "
            f"| p50 / p99 ms, {g} | p50 / p99 ms, {p} | server CPU µs/op, {g} | "
            f"server CPU µs/op, {p} | CPU ratio g/p |")
    lines = [head, "|" + "---|" * 10]
    notes = []
    for name in names:
        by = {s: [r for r in results if r["scenario"] == name and r["server"] == s] for s in servers}
        prim = {s: [primary(r) for r in by[s]] for s in servers}
        lat = {}
        cpu = {}
        for s in servers:
            ok = [r for r in by[s] if r.get("ok")]
            p50 = med([r.get("lat_p50_ms") for r in ok])
            p99 = med([r.get("lat_p99_ms") for r in ok])
            lat[s] = "-" if p50 is None else f"{fmt(p50, 2)} / {fmt(p99, 2)}"
            if name.startswith("idle"):
                lat[s] = "-"
            cpu[s] = med([r.get("cpu_us_per_op") for r in ok])
        lines.append(
            f"| {name} | {unit(name)} | {spread(prim[g])} | {spread(prim[p])} | "
            f"{ratio(med(prim[g]), med(prim[p]))} | {lat[g]} | {lat[p]} | "
            f"{fmt(cpu[g]) if cpu[g] is not None else '-'} | "
            f"{fmt(cpu[p]) if cpu[p] is not None else '-'} | {ratio(cpu[g], cpu[p])} |")
        for s in servers:
            for r in by[s]:
                issue = []
                if not r.get("ok"):
                    issue.append(f"FAILED: {r.get('error', '')[:300]}")
                for key in ("errors", "connect_errors", "unexpected_closes", "lost", "lost_broadcasts",
                            "still_open"):
                    if r.get(key):
                        issue.append(f"{key}={r[key]}")
                if r.get("gen_cpu") and r["gen_cpu"] > 0.85:
                    issue.append(f"load generator at {r['gen_cpu']:.0%} of its core")
                if r.get("fair_min_over_mean") is not None and r["fair_min_over_mean"] < 0.5:
                    issue.append(f"unfair: slowest client did {r['fair_min_over_mean']:.0%} of the mean")
                wanted = SCENARIOS[name]["loadgen"].get("clients", 0)
                if r.get("connected") is not None and r["connected"] < wanted:
                    issue.append(f"only {r['connected']} connected")
                other = r.get("other_load_server_core") or 0
                if other > 0.2:
                    issue.append(f"other processes used {other:.0%} of the server's core")
                if r.get("server_log_lines"):
                    issue.append(f"server stderr: {r['server_log_lines']} lines, first: "
                                 f"{r['server_log_head'][0][:200]!r}")
                if issue:
                    notes.append(f"- {name} / {s} / round {r['round']}: " + "; ".join(issue))
    for s in servers:
        versions: dict[str, list] = {}
        for r in results:
            if r["server"] == s:
                versions.setdefault(r.get("code", "?"), []).append(f"{r['scenario']}#{r['round']}")
        if len(versions) > 1:
            notes.append(f"- {s} CHANGED during the benchmark; the rounds measured different code: "
                         + "; ".join(f"{v}: {len(runs)} runs, first {runs[0]}, last {runs[-1]}"
                                     for v, runs in versions.items()))
    out = "\n".join(lines)
    details = ["", "| scenario | server | server CPU used (median) | load generator CPU (median) | "
               "other load on the server's core (max) | slowest client / mean (median) |",
               "|---|---|---|---|---|---|"]
    for name in names:
        for s in servers:
            ok = [r for r in results if r["scenario"] == name and r["server"] == s and r.get("ok")]
            util = med([r.get("server_cpu_util") for r in ok])
            gen = med([r.get("gen_cpu") for r in ok])
            fair = med([r.get("fair_min_over_mean") for r in ok])
            others = [r["other_load_server_core"] for r in ok if r.get("other_load_server_core") is not None]
            other = max(others) if others else None
            details.append(f"| {name} | {s} | {'-' if util is None else f'{util:.0%}'} | "
                           f"{'-' if gen is None else f'{gen:.0%}'} | "
                           f"{'-' if other is None else f'{other:.0%}'} | "
                           f"{'-' if fair is None else f'{fair:.2f}'} |")
    out += "\n" + "\n".join(details)
    if notes:
        out += "\n\nIssues seen:\n" + "\n".join(notes)
    return out


def select(patterns: list[str] | None, quick: bool) -> list[str]:
    if not patterns:
        return list(QUICK if quick else SCENARIOS)
    chosen = []
    for pat in patterns:
        matched = [n for n, s in SCENARIOS.items() if n == pat or s["group"] == pat or n.startswith(pat)]
        if not matched:
            raise SystemExit(f"unknown scenario {pat!r}; known: {', '.join(SCENARIOS)} "
                             f"(or a group: {', '.join(sorted({s['group'] for s in SCENARIOS.values()}))})")
        chosen += [n for n in matched if n not in chosen]
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short smoke subset, 1 round, < 1 minute")
    ap.add_argument("--scenarios", nargs="+", metavar="NAME", help="names, prefixes or groups: "
                    + ", ".join(SCENARIOS))
    ap.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS))
    ap.add_argument("--rounds", type=int, help="interleaved repetitions (default 3; 1 with --quick)")
    ap.add_argument("--duration", type=float, help="measured seconds per run (default 5; 1.5 with --quick)")
    ap.add_argument("--warmup", type=float, help="seconds of load before measuring (default 1; 0.5 quick)")
    ap.add_argument("--settle", type=float, help="idle: seconds before the RSS sample (default 2; 1 quick)")
    ap.add_argument("--wait-quiet", type=float, metavar="S",
                    help="before each run, wait up to S seconds for other load on the machine to "
                         "stop (default 10; 0, i.e. no wait, with --quick)")
    ap.add_argument("--ref", metavar="COMMIT",
                    help="benchmark geventsio as committed at COMMIT (e.g. HEAD), from a git archive, "
                         "instead of the working tree: for a stable run while the package is being edited")
    ap.add_argument("--retry-busy", type=int, metavar="N",
                    help=f"run again (at most N times) a run during which other processes took more than "
                         f"{BUSY:.0%} of the server's core (default 1; 0 with --quick)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and generator to cores")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = ap.parse_args()
    if args.list:
        for n, s in SCENARIOS.items():
            print(f"{n:14} {s['title']}{'  (quick)' if n in QUICK else ''}")
        return
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.retry_busy is None:
        args.retry_busy = 0 if args.quick else 1
    if args.wait_quiet is None:
        args.wait_quiet = 0 if args.quick else 10
    args.duration = args.duration or (1.5 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1)
    args.settle = args.settle if args.settle is not None else (1 if args.quick else 2)
    names = select(args.scenarios, args.quick)

    if not os.path.isdir(os.path.join(HERE, "node_modules", "ws")):
        raise SystemExit("the load generator needs its `ws` package: npm ci --prefix benchmarks")
    cores = os.sched_getaffinity(0)
    pin = not args.no_pin and {SERVER_CORE, LOADGEN_CORE} <= cores
    if not args.no_pin and not pin:
        print(f"warning: cores {SERVER_CORE} and {LOADGEN_CORE} are not both available ({sorted(cores)}); "
              "not pinning", file=sys.stderr)
    if pin:
        os.sched_setaffinity(0, {LOADGEN_CORE})  # this script mostly sleeps; keep core 0 for the server

    if args.ref:
        make_snapshot(args.ref)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = os.path.join(RESULTS_DIR, f"logs-{stamp}")
    os.makedirs(log_dir, exist_ok=True)
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, Node {node}"
    print(f"# geventsio benchmarks, {datetime.date.today()} — {machine}; "
          f"{args.rounds} round(s) × {len(names)} scenario(s) × {len(args.servers)} servers, "
          f"{args.duration:g} s measured after {args.warmup:g} s warm-up; pinned={pin}", flush=True)

    for server in args.servers:
        print(f"# {code_version(server)}", flush=True)
    results: list[dict] = []
    discarded: list[dict] = []
    t_start = time.monotonic()
    for rnd in range(1, args.rounds + 1):
        for i, name in enumerate(names):
            order = list(args.servers)
            if (rnd + i) % 2 == 0:
                order.reverse()  # alternate who goes first
            for server in order:
                for attempt in range(args.retry_busy + 1):
                    quiet = wait_until_quiet(0.3, timeout=args.wait_quiet) if args.wait_quiet else None
                    t0 = time.monotonic()
                    r = run_one(server, name, args, log_dir, rnd, pin)
                    r["machine_load_before"] = quiet
                    fig = primary(r)
                    status = "ok" if r.get("ok") else f"FAILED {r.get('error', '')[:200]}"
                    cpu = r.get("cpu_us_per_op")
                    other = r.get("other_load_server_core") or 0
                    busy = other > BUSY and attempt < args.retry_busy
                    if busy:
                        status += f"; other processes took {other:.0%} of core {SERVER_CORE}: run again"
                        discarded.append(r)
                    cpu_text = fmt(cpu) if cpu is not None else "-"
                    if r.get("server_sys_share") is not None:
                        cpu_text += f" ({r['server_sys_share']:.0%} sys)"
                    print(f"  round {rnd} {name:13} {server:16} {fmt(fig):>10} "
                          f"{unit(name).split(' (')[0]:14} cpu/op {cpu_text:>15} µs"
                          f"  [{time.monotonic() - t0:4.1f}s] {status}", file=sys.stderr, flush=True)
                    if not busy:
                        results.append(r)
                        break

    report = table(results, names, args.servers)
    print()
    print(report)
    if discarded:
        print(f"\n{len(discarded)} run(s) were repeated because other processes took more than "
              f"{BUSY:.0%} of the server's core.")
    print(f"\n(total {time.monotonic() - t_start:.0f} s; raw results and server logs in "
          f"{os.path.relpath(RESULTS_DIR)}/)")
    with open(os.path.join(RESULTS_DIR, f"bench-{stamp}.json"), "w") as f:
        json.dump({"date": stamp, "machine": machine, "args": vars(args), "results": results,
                   "discarded_busy": discarded}, f, indent=1)
    with open(os.path.join(RESULTS_DIR, f"bench-{stamp}.md"), "w") as f:
        f.write(report + "\n")


if __name__ == "__main__":
    main()
