"""A real Ray cluster on localhost: a head and further nodes, each its own ``ray start --block`` process group, with
this checkout's ``src`` on the nodes' PYTHONPATH (so their workers import this fope). Stopped by killing exactly the
process groups started here, never with ``ray stop``, which would stop every Ray instance of the machine."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ports() -> list[str]:
    """The ports a node listens on that default to fixed numbers, free ones instead (several nodes on one host)."""
    options = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port")
    options += ("--runtime-env-agent-port", "--node-manager-port", "--object-manager-port")
    return [part for option in options for part in (option, str(free_port()))]


WAIT_FOR_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
deadline = time.monotonic() + float(sys.argv[3])
while sum(node["Alive"] for node in ray.nodes()) < int(sys.argv[2]):
    if time.monotonic() > deadline:
        raise SystemExit(1)
    time.sleep(0.5)
"""


def wait_for_nodes(address: str, nodes: int, timeout: float = 120) -> bool:
    """Whether the cluster at ``address`` has ``nodes`` alive nodes within ``timeout`` seconds."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:  # the head's GCS port first: Ray's own connect retries for minutes
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
    command = [sys.executable, "-c", WAIT_FOR_NODES, address, str(nodes), str(timeout)]
    return subprocess.run(command, capture_output=True, timeout=timeout + 60).returncode == 0


@contextlib.contextmanager
def ray_cluster(nodes: int = 2, cpus: int = 1) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """``nodes`` Ray nodes of ``cpus`` CPUs each (no GPU), the first the head; the address and each node's process
    (the ``ray start --block`` of its process group). Every process group is killed on exit.

    Token authentication is off (``RAY_AUTH_MODE=disabled``) for the nodes and, while the cluster runs, for this
    process and what it starts: otherwise a ``~/.ray/auth_token`` (which Ray writes when ``ray.init()`` starts a
    local instance) turns it on for the nodes but not for the drivers, and nothing connects."""
    temp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(":")}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", "PYTHONHASHSEED": "0"}
    common = ["--block", "--num-cpus", str(cpus), "--num-gpus", "0", "--node-ip-address", "127.0.0.1"]
    common += ["--disable-usage-stats", "--object-store-memory", str(100 * 2**20)]
    started: list[subprocess.Popen] = []
    mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = env["RAY_AUTH_MODE"] = "disabled"
    try:
        for index in range(nodes):
            where = ["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(temp)]
            command = [RAY, "start", *(where if index == 0 else ["--address", address]), *common, *_ports()]
            log = open(temp.parent / f"{temp.name}-node{index}.log", "wb")  # noqa: SIM115 (closed with the node)
            started.append(
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            if not wait_for_nodes(address, index + 1):  # one at a time: a loaded machine times out a crowd
                logs = [path.read_text()[-1000:] for path in sorted(temp.parent.glob(f"{temp.name}-node*.log"))]
                raise RuntimeError(f"Ray node {index} did not start: {logs}")
        yield address, started
    finally:
        for process in reversed(started):
            stop_node(process)
        if mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = mode
        shutil.rmtree(temp, ignore_errors=True)
        for path in temp.parent.glob(f"{temp.name}-node*.log"):
            path.unlink()


def stop_node(process: subprocess.Popen) -> None:
    """Kill a node's process group: its ``ray start``, raylet, workers and what they started (a node that dies)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
