"""What anonymous analytics add to a command, under every network condition we could think of.

Run from a clean clone, after tests/run.sh has created the test venv (.venv-test, the project
installed -e, so click, requests and distro are importable):

    .venv-test/bin/python bench/analytics_overhead.py            # 15 runs on + 15 off per condition
    .venv-test/bin/python bench/analytics_overhead.py --runs 30

For each condition the bench runs `python dk_installer.py status` N times with analytics ON
(DK_INSTALLER_ANALYTICS_URL points at the condition's collector) and N times OFF
(DK_INSTALLER_ANALYTICS=no), interleaved (on/off, then off/on, ...), and measures each process
from spawn to exit. "added" is on minus off of the same adjacent pair. Every collector is a
thread of this process on 127.0.0.1; nothing leaves the machine:

  healthy      HTTP 200, body `1` (counts the events it receives)
  http-500     HTTP 500
  http-429     HTTP 429
  refused      a port bound but not listening: connection refused
  no-answer    accepts the connection, never answers
  slow-drip    answers one header byte per second, forever
  tls-hang     https:// URL; accepts TCP, never sends the ServerHello
  dns-hang     http://collector.invalid:PORT, and getaddrinfo sleeps 30 s inside the sender (a
               sitecustomize.py on PYTHONPATH patches it when BENCH_DNS_HANG=1)

Isolation and fairness:
  - HOME, DK_INSTALLER_HOME and XDG_CONFIG_HOME are temp dirs, deleted at the end.
  - One warm-up `status` (analytics on) per condition shows the first-run notice and creates the
    settings (anonymous id); every ON run then gets a fresh config dir seeded with that
    settings.json and no analytics state: no sender.json (the circuit breaker is closed, as if
    deleted between runs) and no previous sender holding sender.lock. So every ON run really
    spawns a sender; the bench counts them (the sitecustomize logs each sender's start).
  - After every run the bench waits until no sender of ours is on the CPU, so a sender's start-up
    is not charged to the next measured run.
  - Targets: <= 50 ms added (median) in every condition; 100 % of the healthy runs' events
    delivered (waits up to 12 s for stragglers); stdout and exit code identical on vs off; no
    `analytics send-spool` process left at the end (they end themselves within 10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _common import (
    INSTALLER,
    Measured,
    isolated_env,
    kill_pids,
    machine_line,
    median_ms,
    percentile,
    proc_state,
    processes_matching,
    require_runtime_deps,
    run_measured,
)

TARGET_ADDED_MS = 50.0
SENDER = "send-spool"
STRAGGLER_WAIT_S = 12.0

SITECUSTOMIZE = '''\
"""Bench only: log the start of every analytics sender; make DNS hang when BENCH_DNS_HANG=1."""
import os
import sys

if "send-spool" in sys.argv and os.environ.get("BENCH_SENDER_LOG"):
    with open(os.environ["BENCH_SENDER_LOG"], "a") as _log:
        _log.write(f"{os.getpid()}\\n")
if os.environ.get("BENCH_DNS_HANG") == "1":
    import socket
    import time

    def _hanging_getaddrinfo(*args, **kwargs):
        time.sleep(30)
        raise socket.gaierror(socket.EAI_AGAIN, "bench: resolution hung")

    socket.getaddrinfo = _hanging_getaddrinfo
'''


# --- collectors ---------------------------------------------------------------------------------


class Collector:
    """Something on 127.0.0.1 that the sender talks to. `url` is what DK_INSTALLER_ANALYTICS_URL gets."""

    url = ""
    reached = 0  # requests / connections that arrived (None: nothing to count)

    def close(self) -> None:
        pass


class HttpCollector(Collector):
    """Answers every POST with `status`; records the `context` property of each event it gets."""

    def __init__(self, status: int, body: bytes) -> None:
        self.contexts: list[str] = []
        self.reached = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                collector.reached += 1
                if status == 200:
                    try:
                        events = json.loads(data)
                        collector.contexts += [str(e["properties"].get("context")) for e in events]
                    except (ValueError, KeyError, TypeError, AttributeError):
                        pass
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RefusingCollector(Collector):
    """A port that is bound (so nobody else gets it) but not listening: connect() is refused."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.reached = None

    def close(self) -> None:
        self.sock.close()


class TcpCollector(Collector):
    """Accepts connections; `mode` is "silent" (never answers) or "drip" (one byte a second)."""

    DRIP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"x" * 4096

    def __init__(self, mode: str, scheme: str = "http") -> None:
        self.mode = mode
        self.reached = 0
        self.stop = threading.Event()
        self.connections: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.settimeout(0.2)
        self.url = f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.reached += 1
            self.connections.append(conn)
            if self.mode == "drip":
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        for i in range(len(self.DRIP)):
            if self.stop.wait(0 if i == 0 else 1.0):
                return
            try:
                conn.sendall(self.DRIP[i : i + 1])
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for conn in self.connections:
            conn.close()


@dataclass
class Condition:
    name: str
    description: str
    collector: Collector
    url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    off: list[float] = field(default_factory=list)
    on: list[float] = field(default_factory=list)
    off_cpu: list[float] = field(default_factory=list)
    on_cpu: list[float] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    senders: int = 0


def make_conditions() -> list[Condition]:
    healthy = HttpCollector(200, b"1")
    dns_target = HttpCollector(200, b"1")  # never reached: resolution hangs first
    conditions = [
        Condition("healthy", "HTTP 200, body 1", healthy, healthy.url),
        Condition("http-500", "HTTP 500", c := HttpCollector(500, b"error"), c.url),
        Condition("http-429", "HTTP 429", c := HttpCollector(429, b"slow down"), c.url),
        Condition("refused", "connection refused", c := RefusingCollector(), c.url),
        Condition("no-answer", "accepts, never answers", c := TcpCollector("silent"), c.url),
        Condition("slow-drip", "1 header byte per second", c := TcpCollector("drip"), c.url),
        Condition("tls-hang", "TLS, no ServerHello", c := TcpCollector("silent", "https"), c.url),
        Condition(
            "dns-hang",
            "getaddrinfo sleeps 30 s",
            dns_target,
            f"http://collector.invalid:{dns_target.url.rsplit(':', 1)[1]}",
            {"BENCH_DNS_HANG": "1"},
        ),
    ]
    return conditions


# --- running the installer ----------------------------------------------------------------------


def run_status(installer: Path, env: dict[str, str]) -> Measured:
    return run_measured([sys.executable, str(installer), "status"], env)


def our_senders(root: Path) -> list[tuple[int, str]]:
    return processes_matching(SENDER, f"XDG_CONFIG_HOME={root}")


def wait_until_quiet(root: Path, timeout: float = 3.0) -> None:
    """Until no sender of ours is running on a CPU or in disk wait (two polls in a row)."""
    time.sleep(0.15)
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline and calm < 2:
        busy = [pid for pid, _ in our_senders(root) if proc_state(pid) in ("R", "D")]
        calm = 0 if busy else calm + 1
        time.sleep(0.05)


def measure(condition: Condition, root: Path, runs: int, sitecustomize_dir: Path, installer: Path) -> None:
    base = root / condition.name
    sender_log = base / "senders.log"
    common = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(sitecustomize_dir), os.environ.get("PYTHONPATH")])),
        "BENCH_SENDER_LOG": str(sender_log),
        **condition.extra_env,
    }
    env_off = isolated_env(base, DK_INSTALLER_ANALYTICS="no", **common)
    env_off["XDG_CONFIG_HOME"] = str(base / "config-off")
    env_on = isolated_env(base, DK_INSTALLER_ANALYTICS_URL=condition.url, **common)

    # Warm-up: the ON one shows the notice once and writes settings.json (anonymous id).
    template = base / "config-template"
    run_status(
        installer, {**env_on, "XDG_CONFIG_HOME": str(template), "DK_INSTALLER_CONTEXT": "bench-warmup"}
    )
    run_status(installer, {**env_off, "DK_INSTALLER_CONTEXT": "bench-warmup"})
    settings = template / "dk-installer" / "settings.json"
    if not settings.exists():
        sys.exit(f"warm-up wrote no {settings}: is analytics really on?")
    wait_until_quiet(root)
    sender_log.unlink(missing_ok=True)

    outcomes: list[tuple[str, int, int, str]] = []
    for i in range(runs):
        config = base / f"config-on-{i}"
        (config / "dk-installer").mkdir(parents=True)
        shutil.copy2(settings, config / "dk-installer" / "settings.json")
        (config / "dk-installer" / "analytics" / "sender.json").unlink(missing_ok=True)  # breaker reset
        context = {"DK_INSTALLER_CONTEXT": f"bench-{i}"}
        on_env = {**env_on, "XDG_CONFIG_HOME": str(config), **context}
        off_env = {**env_off, **context}
        order = [("on", on_env), ("off", off_env)] if i % 2 == 0 else [("off", off_env), ("on", on_env)]
        for label, env in order:
            run = run_status(installer, env)
            (condition.on if label == "on" else condition.off).append(run.wall)
            (condition.on_cpu if label == "on" else condition.off_cpu).append(run.cpu)
            outcomes.append((label, i, run.code, run.out))
            wait_until_quiet(root)
    reference = next((code, out) for label, _, code, out in outcomes if label == "off")
    condition.mismatches = [
        f"run {i} {label}: exit {code}, stdout {out!r} (off: exit {reference[0]}, {reference[1]!r})"
        for label, i, code, out in outcomes
        if (code, out) != reference
    ]
    condition.senders = len(sender_log.read_text().split()) if sender_log.exists() else 0


# --- report -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15, help="runs on and off per condition (>= 10)")
    parser.add_argument("--only", help="comma-separated condition names (for debugging)")
    parser.add_argument(
        "--installer", type=Path, default=INSTALLER, help="another copy of dk_installer.py (to try a fix)"
    )
    args = parser.parse_args()
    if args.runs < 10:
        parser.error("--runs must be at least 10")
    require_runtime_deps(".venv-test/bin/python bench/analytics_overhead.py")

    print(machine_line())
    if args.installer.resolve() != INSTALLER:
        print(f"Installer under test: {args.installer.resolve()}")
    print(
        f"Each condition: {args.runs} x `dk_installer.py status` with analytics ON and {args.runs} x OFF, "
        "interleaved; wall time from spawn to exit."
    )
    print(
        "Each ON run: fresh config dir seeded with the warm-up's settings.json (notice already shown), "
        "no sender.json (circuit breaker reset) and no live sender, so every run spawns a sender."
    )
    root = Path(tempfile.mkdtemp(prefix="dk-bench-analytics-"))
    sitecustomize_dir = root / "sitecustomize"
    sitecustomize_dir.mkdir()
    (sitecustomize_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    conditions = make_conditions()
    if args.only:
        wanted = set(args.only.split(","))
        conditions = [c for c in conditions if c.name in wanted]
    healthy = next((c for c in conditions if c.name == "healthy"), None)
    try:
        for condition in conditions:
            measure(condition, root, args.runs, sitecustomize_dir, args.installer.resolve())
            sys.stdout.write(f"  measured {condition.name}\n")
            sys.stdout.flush()

        delivered = 0
        if healthy is not None:
            assert isinstance(healthy.collector, HttpCollector)
            expected = {f"bench-{i}" for i in range(args.runs)}
            deadline = time.monotonic() + STRAGGLER_WAIT_S
            while time.monotonic() < deadline and not expected <= set(healthy.collector.contexts):
                time.sleep(0.2)
            delivered = len(expected & set(healthy.collector.contexts))

    finally:
        deadline = time.monotonic() + STRAGGLER_WAIT_S
        while time.monotonic() < deadline and our_senders(root):
            time.sleep(0.2)
        left = our_senders(root)
        kill_pids([pid for pid, _ in left])
        for condition in conditions:
            condition.collector.close()
        shutil.rmtree(root, ignore_errors=True)

    print()
    print(
        "added = ON minus OFF of the same adjacent pair (ms; median and p90); CPU add = the same for the "
        "status process's user+sys CPU time (children it waited for included, the detached sender not): "
        "a cross-check that is far less sensitive to other load on the machine. senders = ON runs that "
        "spawned a sender; reached = requests/connections the collector saw (warm-up included)."
    )
    header = (
        f"{'condition':<10} {'network':<25} {'off ms':>6} {'on ms':>6} {'on/off':>6} "
        f"{'added':>7} {'p90 add':>7} {'CPU add':>7} {'senders':>7} {'reached':>7} {'same':>4}"
    )
    print(header)
    print("-" * len(header))
    worst: tuple[float, Condition] | None = None
    for c in conditions:
        added = [on - off for on, off in zip(c.on, c.off)]
        off_ms, on_ms = median_ms(c.off), median_ms(c.on)
        added_ms, p90_ms = median_ms(added), percentile(added, 0.9) * 1000
        reached = "n/a" if c.collector.reached is None else str(c.collector.reached)
        cpu_ms = median_ms([on - off for on, off in zip(c.on_cpu, c.off_cpu)])
        print(
            f"{c.name:<10} {c.description:<25} {off_ms:6.0f} {on_ms:6.0f} {on_ms / off_ms:5.2f}x "
            f"{added_ms:+7.1f} {p90_ms:+7.1f} {cpu_ms:+7.1f} {c.senders:>4}/{len(c.on):<2} {reached:>7} "
            f"{'yes' if not c.mismatches else 'NO':>4}"
        )
        if worst is None or added_ms > worst[0]:
            worst = (added_ms, c)
        for mismatch in c.mismatches[:3]:
            print(f"    differs: {mismatch}")
    print()
    assert worst is not None
    worst_ms, worst_c = worst
    worst_p90 = percentile([on - off for on, off in zip(worst_c.on, worst_c.off)], 0.9) * 1000
    print(
        f"Worst condition: {worst_c.name} ({worst_c.description}): median +{worst_ms:.1f} ms "
        f"(p90 +{worst_p90:.1f} ms) over a median OFF run of {median_ms(worst_c.off):.0f} ms "
        f"({median_ms(worst_c.on) / median_ms(worst_c.off):.2f}x)."
    )
    if healthy is not None:
        print(f"Healthy collector: {delivered}/{args.runs} runs' events delivered (waited up to 12 s).")
    print(
        "Senders left after waiting up to 12 s: "
        + (f"{len(left)} (killed: {left})" if left else "none (no `analytics send-spool` process).")
    )
    spawned_all = all(c.senders == len(c.on) for c in conditions)
    if not spawned_all:
        print("WARNING: some ON runs spawned no sender; their overhead is not representative.")

    overhead_ok = worst_ms <= TARGET_ADDED_MS
    delivery_ok = healthy is None or delivered == args.runs
    same_ok = all(not c.mismatches for c in conditions)
    verdict = "MET" if overhead_ok and delivery_ok and same_ok and not left and spawned_all else "MISSED"
    print(
        f"SUMMARY: analytics overhead target {verdict}: worst added {worst_ms:+.1f} ms median "
        f"({worst_c.name}; target <= {TARGET_ADDED_MS:.0f} ms: {'met' if overhead_ok else 'missed'}), "
        f"healthy delivery {delivered}/{args.runs} ({'met' if delivery_ok else 'missed'}), "
        f"stdout+exit on==off: {'yes' if same_ok else 'NO'}, senders left: {len(left)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
