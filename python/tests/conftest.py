"""Fixtures: a real `cairn server` on a loopback port, and real `cairn mount`s.

The binaries come from CAIRN_BUILD_DIR (set by ctest and by
scripts/python-test.sh). Tests that need FUSE fail when CI=true and it is
missing, and are skipped otherwise.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from typing import Iterator, List, Optional

import pytest

import cairn

REPO = pathlib.Path(__file__).resolve().parents[2]


def build_dir() -> pathlib.Path:
    d = os.environ.get("CAIRN_BUILD_DIR")
    if not d:
        pytest.fail("CAIRN_BUILD_DIR is not set (run through scripts/python-test.sh)")
    return pathlib.Path(d)


def cairn_binary() -> str:
    b = build_dir() / "cli" / "cairn"
    if not b.is_file():
        pytest.fail(f"{b} is not built")
    return str(b)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Server:
    """A `cairn server` child process with its own data directory."""

    def __init__(self, root: pathlib.Path, token: Optional[str] = None,
                 extra: Optional[List[str]] = None) -> None:
        self.root = root
        self.data = root / "data"
        self.token = token
        self.extra = extra or []
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.metrics_port = 0
        self.log = root / "server.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        last = ""
        for _ in range(4):  # a free port may be taken before the server binds it
            self.port, self.metrics_port = free_port(), free_port()
            argv = [cairn_binary(), "server", "--data", str(self.data), "--listen", self.address,
                    "--metrics-listen", f"127.0.0.1:{self.metrics_port}"] + self.extra
            if self.token:
                tf = self.root / "token"
                tf.write_text(self.token + "\n")
                tf.chmod(0o600)
                argv += ["--token-file", str(tf)]
            self.proc = subprocess.Popen(argv, stdout=open(self.log, "ab"),
                                         stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.ready():
                    return
                time.sleep(0.05)
            self.stop(signal.SIGKILL)
            last = self.log.read_text(errors="replace")
        raise AssertionError(f"cairn server did not become ready; log:\n{last}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz",
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self.proc = None

    def env(self) -> dict:
        env = dict(os.environ, CAIRN_SERVER=self.address)
        if self.token:
            env["CAIRN_TOKEN"] = self.token
        return env

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([cairn_binary(), *args], env=self.env(), capture_output=True,
                           text=True, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError(f"cairn {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout}{r.stderr}")
        return r

    def client(self, **kwargs) -> cairn.Client:
        return cairn.Client(self.address, token=self.token, namespace="default", wait=30,
                            **kwargs)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    # Lapsed ephemeral volumes are swept every second (default 5).
    s = Server(tmp_path_factory.mktemp("server"), extra=["--lease-sweep-interval", "1"])
    s.start()
    yield s
    s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[cairn.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def vol(client: cairn.Client) -> cairn.Volume:
    return cairn.Volume.create(f"t-{uuid.uuid4().hex[:10]}", client=client)


def require_fuse() -> None:
    problem = None
    if os.geteuid() != 0:
        problem = "mounting needs root"
    elif not os.path.exists("/dev/fuse"):
        problem = "/dev/fuse is missing"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI=true: FUSE tests must run)")
        pytest.skip(problem)


class Mount:
    """A `cairn mount` child process."""

    def __init__(self, server: Server, volume: str, path: pathlib.Path,
                 cache: pathlib.Path) -> None:
        self.path = path
        self.log = path.parent / f"{path.name}.log"
        path.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [cairn_binary(), "mount", volume, str(path), "--cache-dir", str(cache),
             "--commit-interval", "3600"],
            env=server.env(), stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"cairn mount exited:\n{self.log.read_text()}")
            try:
                os.getxattr(path, "user.cairn.status")
                return True
            except OSError:
                return False

        wait_for(up, 60, f"mount of {volume} at {path}")

    def unmount(self) -> None:
        if self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)


@pytest.fixture
def mounts(server: Server, tmp_path: pathlib.Path):
    require_fuse()
    made: List[Mount] = []

    def mount(volume: str, name: str) -> Mount:
        m = Mount(server, volume, tmp_path / name, tmp_path / "cache")
        made.append(m)
        return m

    yield mount
    for m in made:
        m.unmount()
