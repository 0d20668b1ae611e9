"""The local OpenSearch node in engine/: build it, start it in the background, stop it.

The node is a real OpenSearch 2.19 server (engine/src/main/java) started from Maven Central
artifacts. This module owns its process: a pid file, a log, a READY marker, and the errors a
person can act on (Java missing or too old, Maven offline, port taken, data dir locked, the
node died during start).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    running: bool
    pid: int | None
    url: str | None
    data_dir: Path


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


def status(data_dir: Path) -> EngineStatus:
    pid = read_pid(data_dir)
    ready = data_dir / "READY"
    url = f"http://{ready.read_text().strip()}" if pid and ready.exists() else None
    return EngineStatus(running=pid is not None, pid=pid, url=url, data_dir=data_dir)


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
    current = status(data_dir)
    if current.running:
        log(f"The local engine is already running (pid {current.pid}) at {current.url}.")
        if registry is not None:
            remember(registry, data_dir)
        return current
    java = find_java()
    if port and not port_free(port):
        raise EngineError(
            f"Port {port} on 127.0.0.1 is taken by another process: stop it, or start the "
            f"engine on another port (`affinity engine start --port {port + 1}`), or point "
            "OPENSEARCH_URL at the cluster that already runs there."
        )
    if not launcher_built():
        build_launcher(log)
    classpath = f"{ENGINE_DIR / 'target' / JAR_NAME}{os.pathsep}{ENGINE_DIR / 'target' / 'lib'}/*"
    cmd = [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        *JVM_FLAGS,
        "-cp",
        classpath,
        "dev.affinity.engine.Main",
        "--home",
        str(data_dir),
        "--http-port",
        str(port),
    ]
    (data_dir / "READY").unlink(missing_ok=True)
    with open(data_dir / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(data_dir).write_text(str(proc.pid))
    if registry is not None:
        remember(registry, data_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _pid_file(data_dir).unlink(missing_ok=True)
            raise EngineError(f"{_diagnose(data_dir)}\n{log_tail(data_dir)}")
        if (data_dir / "READY").exists():
            return status(data_dir)
        time.sleep(0.2)
    stop(data_dir)
    raise EngineError(
        f"The node did not start within {timeout:.0f} s: see the log below; on a slow machine "
        f"raise --timeout.\n{log_tail(data_dir)}"
    )


def stop(data_dir: Path, timeout: float = 60.0) -> bool:
    """Stop the node (SIGTERM, then SIGKILL after timeout). Returns False if none was running."""
    data_dir = data_dir.resolve()
    pid = read_pid(data_dir)
    if pid is None:
        _pid_file(data_dir).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        _reap(pid)
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        print(f"The node (pid {pid}) did not stop in {timeout:.0f} s; killed it.", file=sys.stderr)
    _reap(pid)
    _pid_file(data_dir).unlink(missing_ok=True)
    (data_dir / "READY").unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
