"""The local OpenSearch node in engine/: build it, start it in the background, stop it.

The node is a real OpenSearch 2.19 server (engine/src/main/java) started from Maven Central
artifacts. This module owns its process: a pid file, a log, a READY marker, and the errors a
person can act on (Java missing or too old, Maven offline, port taken, data dir locked, the
node died during start).

A local cluster (`start_cluster`) is N such nodes, one JVM each, on 127.0.0.1: node N keeps
its pid file, log, READY marker and data in `<data-dir>/node-N`, and `<data-dir>/cluster.json`
records the layout (ports, heap) so that stop, status and the restart of one node find them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rewriter.config import ROOT

ENGINE_DIR = ROOT / "engine"
JAR_NAME = "affinity-engine-0.1.0.jar"
JVM_FLAGS = (
    "-Djava.locale.providers=SPI,COMPAT",
    "-Djna.nosys=true",
    "-Dopensearch.set.netty.runtime.available.processors=false",
    "-Dlog4j2.disable.jmx=true",
    "-Dlog4j.shutdownHookEnabled=false",
    "-Dfile.encoding=UTF-8",
    "-XX:+UseG1GC",
)


class EngineError(RuntimeError):
    """A failure of the local engine, phrased as what happened and what to do."""


@dataclass(frozen=True)
class EngineStatus:
    """One node, or a cluster: then `nodes` holds each node's status (node-1 first), and
    running, pid and url are those of the first node that runs."""

    running: bool
    pid: int | None
    url: str | None
    data_dir: Path
    nodes: tuple[EngineStatus, ...] = ()


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        raise EngineError(
            f"Could not read the Java version from `{java} -version`: install Java 17."
        )
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def find_java() -> str:
    """Return a Java 17+ executable: JAVA_HOME first, then PATH."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(shutil.which("java") or "java")
    if not candidates:
        raise EngineError(
            "Java was not found: install Java 17 (e.g. `apt-get install openjdk-17-jdk-headless`) "
            "or set JAVA_HOME."
        )
    java = candidates[0]
    major = _java_major(java)
    if major < 17:
        raise EngineError(
            f"{java} is Java {major}; OpenSearch 2.19 needs Java 17 or newer: install Java 17 "
            "and put it first on PATH or in JAVA_HOME."
        )
    return java


def launcher_built() -> bool:
    """True when the launcher jar exists and is newer than pom.xml and every source file."""
    jar = ENGINE_DIR / "target" / JAR_NAME
    if not jar.exists() or not (ENGINE_DIR / "target" / "lib").is_dir():
        return False
    sources = [ENGINE_DIR / "pom.xml", *(ENGINE_DIR / "src").rglob("*")]
    built = jar.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in sources if p.is_file())


def build_launcher(
    log: Callable[[str], None] = print,
    engine_dir: Path = ENGINE_DIR,
    mvn_args: tuple[str, ...] = (),
) -> float:
    """Build engine/ with Maven (quiet). Returns the seconds it took."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EngineError(
            "Maven was not found: install it (`apt-get install maven`) so affinity can build "
            "the local engine from Maven Central."
        )
    log("Building the local OpenSearch engine (first use: Maven downloads ~150 MB) ...")
    start = time.monotonic()
    proc = subprocess.run(
        [mvn, "-q", "-B", *mvn_args, "clean", "package", "-DskipTests"],
        cwd=engine_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        offline = re.search(r"Could not (resolve|transfer)|UnknownHost|offline|resolved", tail)
        hint = (
            "Maven could not download the OpenSearch artifacts: check that Maven Central is "
            "reachable (proxy settings in ~/.m2/settings.xml)."
            if offline
            else "Maven failed to build engine/."
        )
        raise EngineError(f"{hint}\n{tail}")
    return time.monotonic() - start


def _pid_file(data_dir: Path) -> Path:
    return data_dir / "engine.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (started by this process, not yet reaped) is not a running node.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state != "Z"


def read_pid(data_dir: Path) -> int | None:
    try:
        pid = int(_pid_file(data_dir).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _node_status(data_dir: Path) -> EngineStatus:
    pid = read_pid(data_dir)
    ready = data_dir / "READY"
    url = f"http://{ready.read_text().strip()}" if pid and ready.exists() else None
    return EngineStatus(running=pid is not None, pid=pid, url=url, data_dir=data_dir)


def status(data_dir: Path) -> EngineStatus:
    """The node that runs from `data_dir`, or the cluster whose layout it records."""
    layout = read_layout(data_dir)
    if layout is None:
        return _node_status(data_dir)
    nodes = tuple(_node_status(layout.node_dir(data_dir, n)) for n in layout.numbers)
    first = next((node for node in nodes if node.running), None)
    return EngineStatus(
        running=first is not None,
        pid=first.pid if first else None,
        url=first.url if first else None,
        data_dir=data_dir,
        nodes=nodes,
    )


CLUSTER_FILE = "cluster.json"
CLUSTER_NAME = "affinity-local"
TRANSPORT_OFFSET = 100
"""A cluster's transport ports sit this far above its HTTP ports (9200.. -> 9300..)."""


@dataclass(frozen=True)
class ClusterLayout:
    """A local cluster as `<data-dir>/cluster.json` records it: node N (1-based) serves HTTP on
    http_ports[N-1] and talks to the others on transport_ports[N-1]."""

    http_ports: tuple[int, ...]
    transport_ports: tuple[int, ...]
    heap: str
    jvm_options: tuple[str, ...] = ()
    """Added to JVM_FLAGS on every node (a test cluster: `-XX:TieredStopAtLevel=1`)."""

    @property
    def size(self) -> int:
        return len(self.http_ports)

    @property
    def numbers(self) -> range:
        return range(1, self.size + 1)

    @staticmethod
    def node_name(n: int) -> str:
        return f"node-{n}"

    def node_dir(self, data_dir: Path, n: int) -> Path:
        return data_dir / self.node_name(n)

    def discovery_args(self) -> list[str]:
        """Main.java's arguments that make the nodes one cluster."""
        seeds = ",".join(f"127.0.0.1:{p}" for p in self.transport_ports)
        managers = ",".join(self.node_name(n) for n in self.numbers)
        return ["--seed-hosts", seeds, "--initial-cluster-managers", managers]


def cluster_layout(
    nodes: int, port: int, heap: str, transport_port: int | None = None
) -> ClusterLayout:
    """Consecutive ports: HTTP from `port`, transport from `transport_port` (default port + 100)."""
    transport = port + TRANSPORT_OFFSET if transport_port is None else transport_port
    return ClusterLayout(
        http_ports=tuple(port + i for i in range(nodes)),
        transport_ports=tuple(transport + i for i in range(nodes)),
        heap=heap,
    )


def read_layout(data_dir: Path) -> ClusterLayout | None:
    """The cluster recorded in `data_dir`, or None when it holds one node (or nothing)."""
    try:
        raw = json.loads((data_dir / CLUSTER_FILE).read_text())
        return ClusterLayout(
            tuple(raw["http_ports"]),
            tuple(raw["transport_ports"]),
            raw["heap"],
            tuple(raw.get("jvm_options", ())),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineError(
            f"{data_dir / CLUSTER_FILE} is unreadable ({exc}): stop any node under {data_dir} "
            "and start the cluster again with another --data-dir, or delete that directory."
        ) from exc


def _write_layout(data_dir: Path, layout: ClusterLayout) -> None:
    (data_dir / CLUSTER_FILE).write_text(json.dumps(asdict(layout), indent=1) + "\n")


def _record(registry: Path, data_dir: Path) -> Path:
    return registry / hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def remember(registry: Path, data_dir: Path) -> None:
    """Record that a node runs from `data_dir`, so `locate` finds it whatever the data dir."""
    registry.mkdir(parents=True, exist_ok=True)
    _record(registry, data_dir).write_text(str(data_dir.resolve()))


def running_nodes(registry: Path) -> list[EngineStatus]:
    """The recorded nodes that still run; the records of stopped ones are removed."""
    found = []
    for record in sorted(registry.glob("*")) if registry.is_dir() else []:
        st = status(Path(record.read_text().strip()))
        if st.running:
            found.append(st)
        else:
            record.unlink(missing_ok=True)
    return found


def locate(default: Path, registry: Path, command: str = "stop") -> Path:
    """The data dir of the node meant when none is given: `default` if a node runs there,
    else the one recorded node that runs, else `default` (where nothing runs). Several
    recorded nodes running: EngineError naming each, with the `affinity engine <command>`
    that reaches it."""
    if status(default).running:
        return default
    others = running_nodes(registry)
    if len(others) == 1:
        return others[0].data_dir
    if not others:
        return default
    listing = "; ".join(
        f"pid {st.pid} at {st.url or '?'}: `affinity engine {command} --data-dir {st.data_dir}`"
        for st in others
    )
    raise EngineError(
        f"No local engine runs from the default data dir {default}, but {len(others)} run "
        f"from others; name one with --data-dir: {listing}"
    )


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def log_tail(data_dir: Path, lines: int = 20) -> str:
    chunks = []
    for path in (data_dir / "stdout.log", data_dir / "logs" / "affinity-local.log"):
        if path.exists():
            text = path.read_text(errors="replace").strip().splitlines()
            chunks.append(f"--- {path} ---\n" + "\n".join(text[-lines:]))
    return "\n".join(chunks) or "(no log written)"


def _diagnose(data_dir: Path) -> str:
    text = log_tail(data_dir, 200)
    if "failed to obtain node locks" in text:
        return (
            f"The data dir {data_dir} is locked by another OpenSearch node: stop it "
            "(`affinity engine stop`) or pass another --data-dir."
        )
    if "BindException" in text or "Address already in use" in text:
        return "The port is taken by another process: free it or pass another --port."
    if "OutOfMemoryError" in text:
        return "The node ran out of heap: pass a larger --heap (e.g. 2g)."
    return "The node died during start."


def _launch_command(
    java: str,
    home: Path,
    heap: str,
    port: int,
    extra: list[str],
    jvm_options: tuple[str, ...] = (),
) -> list[str]:
    classpath = f"{ENGINE_DIR / 'target' / JAR_NAME}{os.pathsep}{ENGINE_DIR / 'target' / 'lib'}/*"
    return [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        *JVM_FLAGS,
        *jvm_options,
        "-cp",
        classpath,
        "dev.affinity.engine.Main",
        "--home",
        str(home),
        "--http-port",
        str(port),
        *extra,
    ]


def _spawn(home: Path, cmd: list[str]) -> subprocess.Popen[bytes]:
    """Run one node in the background (its own session: a Ctrl-C here does not stop it)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "READY").unlink(missing_ok=True)
    with open(home / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(home).write_text(str(proc.pid))
    return proc


def _await_ready(started: dict[Path, subprocess.Popen[bytes]], timeout: float) -> None:
    """Wait until every started node has written READY. A node that dies: EngineError with
    its diagnosis and log (the others are stopped); none may take longer than `timeout`."""
    deadline = time.monotonic() + timeout
    waiting = dict(started)
    while waiting and time.monotonic() < deadline:
        for home, proc in list(waiting.items()):
            if proc.poll() is not None:
                _pid_file(home).unlink(missing_ok=True)
                for other in started:
                    stop(other)
                raise EngineError(f"{_diagnose(home)}\n{log_tail(home)}")
            if (home / "READY").exists():
                del waiting[home]
        time.sleep(0.2)
    if waiting:
        for home in started:
            stop(home)
        late = next(iter(waiting))
        raise EngineError(
            f"The node in {late} did not start within {timeout:.0f} s: see the log below; on a "
            f"slow machine raise --timeout.\n{log_tail(late)}"
        )


def _check_port(port: int, hint: str) -> None:
    if port and not port_free(port):
        raise EngineError(
            f"Port {port} on 127.0.0.1 is taken by another process: stop it, or {hint}, or "
            "point OPENSEARCH_URL at the cluster that already runs there."
        )


def _prepare(log: Callable[[str], None]) -> str:
    """Java found and the launcher built: what every start needs."""
    java = find_java()
    if not launcher_built():
        build_launcher(log)
    return java


def start(
    data_dir: Path,
    port: int = 9200,
    heap: str = "1g",
    timeout: float = 120.0,
    log: Callable[[str], None] = print,
    registry: Path | None = None,
) -> EngineStatus:
    """Start the node in the background and wait until it serves HTTP. Idempotent. With a
    `registry`, the node is recorded there (`remember`) for `locate`."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    layout = read_layout(data_dir)
    if layout is not None:
        raise EngineError(
            f"The data dir {data_dir} holds a {layout.size}-node cluster: start it with "
            f"`affinity engine start --nodes {layout.size} --data-dir {data_dir}`, or pass "
            "another --data-dir for a single node."
        )
    current = status(data_dir)
    if current.running:
        log(f"The local engine is already running (pid {current.pid}) at {current.url}.")
        if registry is not None:
            remember(registry, data_dir)
        return current
    java = find_java()
    _check_port(
        port, f"start the engine on another port (`affinity engine start --port {port + 1}`)"
    )
    if not launcher_built():
        build_launcher(log)
    proc = _spawn(data_dir, _launch_command(java, data_dir, heap, port, []))
    if registry is not None:
        remember(registry, data_dir)
    _await_ready({data_dir: proc}, timeout)
    return status(data_dir)


def start_cluster(
    data_dir: Path,
    nodes: int | None,
    port: int = 9200,
    heap: str = "512m",
    timeout: float = 180.0,
    log: Callable[[str], None] = print,
    registry: Path | None = None,
    layout: ClusterLayout | None = None,
) -> EngineStatus:
    """Start a cluster of `nodes` nodes (one JVM each, `heap` each) from `data_dir`, or the
    nodes of the cluster recorded there that do not run (then its recorded ports and heap
    hold). Waits until every node serves HTTP, not for the cluster to form (wait for health).
    `layout` overrides the ports of a new cluster (default: consecutive from `port`)."""
    data_dir = data_dir.resolve()
    recorded = read_layout(data_dir)
    if recorded is not None and nodes not in (None, recorded.size):
        raise EngineError(
            f"The data dir {data_dir} holds a {recorded.size}-node cluster, not {nodes}: start "
            f"it with --nodes {recorded.size}, or pass another --data-dir."
        )
    if recorded is None:
        _refuse_single_node_dir(data_dir)
        if not nodes or nodes < 2:
            raise EngineError("A cluster needs at least 2 nodes: pass --nodes 2 or more.")
    chosen = recorded or layout or cluster_layout(nodes or 0, port, heap)
    down = _nodes_to_start(data_dir, chosen)
    java = _prepare(log)
    if recorded is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        _write_layout(data_dir, chosen)
    if registry is not None:
        remember(registry, data_dir)
    started = {chosen.node_dir(data_dir, n): _spawn_node(java, data_dir, chosen, n) for n in down}
    _await_ready(started, timeout)
    return status(data_dir)


def start_node(data_dir: Path, n: int, timeout: float = 180.0) -> EngineStatus:
    """Start node `n` of the cluster recorded in `data_dir` again (after it stopped or was
    killed), with its recorded ports; it rejoins the others. Idempotent."""
    data_dir = data_dir.resolve()
    layout = read_layout(data_dir)
    if layout is None or n not in layout.numbers:
        raise EngineError(f"No cluster with a node {n} is recorded in {data_dir}.")
    if _nodes_to_start(data_dir, layout, only=n):
        java = _prepare(print)
        _await_ready(
            {layout.node_dir(data_dir, n): _spawn_node(java, data_dir, layout, n)}, timeout
        )
    return _node_status(layout.node_dir(data_dir, n))


def _nodes_to_start(data_dir: Path, layout: ClusterLayout, only: int | None = None) -> list[int]:
    """The nodes that do not run, once their ports are known to be free (EngineError before
    anything starts when one is taken)."""
    down = [
        n
        for n in layout.numbers
        if only in (None, n) and not _node_status(layout.node_dir(data_dir, n)).running
    ]
    for n in down:
        for p in (layout.http_ports[n - 1], layout.transport_ports[n - 1]):
            _check_port(
                p, f"start a cluster from another --data-dir on other ports (--port {p + 10})"
            )
    return down


def _spawn_node(
    java: str, data_dir: Path, layout: ClusterLayout, n: int
) -> subprocess.Popen[bytes]:
    home = layout.node_dir(data_dir, n)
    extra = [
        "--transport-port",
        str(layout.transport_ports[n - 1]),
        "--node-name",
        layout.node_name(n),
        "--cluster-name",
        CLUSTER_NAME,
        *layout.discovery_args(),
    ]
    port = layout.http_ports[n - 1]
    return _spawn(home, _launch_command(java, home, layout.heap, port, extra, layout.jvm_options))


def _refuse_single_node_dir(data_dir: Path) -> None:
    if (data_dir / "data").is_dir() or _pid_file(data_dir).exists():
        raise EngineError(
            f"The data dir {data_dir} holds a single node's data: pass another --data-dir for "
            "a cluster (each node keeps its data in <data-dir>/node-N)."
        )


def stop(data_dir: Path, timeout: float = 60.0) -> bool:
    """Stop the node, or every node of the cluster recorded in `data_dir` (SIGTERM, then
    SIGKILL after timeout). Returns False if none was running."""
    data_dir = data_dir.resolve()
    layout = read_layout(data_dir)
    homes = [data_dir] if layout is None else [layout.node_dir(data_dir, n) for n in layout.numbers]
    pids = {home: read_pid(home) for home in homes}
    for pid in filter(None, pids.values()):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for home, pid in pids.items():
        if pid is not None:
            _await_exit(pid, deadline, timeout)
        _pid_file(home).unlink(missing_ok=True)
        (home / "READY").unlink(missing_ok=True)
    return any(pids.values())


def _await_exit(pid: int, deadline: float, timeout: float) -> None:
    while time.monotonic() < deadline and _alive(pid):
        _reap(pid)
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        print(f"The node (pid {pid}) did not stop in {timeout:.0f} s; killed it.", file=sys.stderr)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
