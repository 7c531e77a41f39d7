"""Running real redis-server processes for the tests: on a free loopback port, stopped by pid."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

REDIS_SERVER = os.environ.get("LOCUST_KV_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_missing_reason() -> str | None:
    """Why the redis tests cannot run here, or None when they can."""
    if not os.path.isfile(REDIS_SERVER) or not os.access(REDIS_SERVER, os.X_OK):
        return "redis-server is not installed (Debian: apt-get install redis-server); the redis backend's tests need it"
    return None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, even by SIGKILL, so no server outlives it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: sessionfinish still stops the server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server child process on 127.0.0.1, its data (if any) in a temp directory."""

    port: int
    directory: Path
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    owns_directory: bool = True

    @classmethod
    def start(cls, port: int | None = None, directory: Path | None = None, extra: tuple[str, ...] = ()) -> RedisServer:
        """Start a server (``--save "" --appendonly no`` unless ``extra`` says otherwise) and wait for PING."""
        owns = directory is None
        server = cls(
            port=port or free_port(),
            directory=directory or Path(tempfile.mkdtemp(prefix="locust-kv-redis-")),
            extra=extra,
            owns_directory=owns,
        )
        server.launch()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def launch(self) -> None:
        """(Re)start the process on the same port and directory."""
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.directory / "redis.log"),
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)  # noqa: PLW1509 - the ctypes call is async-signal-safe
        self.wait_ready()

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **options)  # type: ignore[arg-type]

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
            try:
                client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
                try:
                    client.ping()
                    return
                finally:
                    client.close()
            except redis.AuthenticationError:
                return  # up, with a password
            except redis.ResponseError as exc:
                if "NOAUTH" in str(exc):
                    return
                if time.monotonic() > deadline:
                    raise
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the process by its pid with ``sig`` and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        self.process = None
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
