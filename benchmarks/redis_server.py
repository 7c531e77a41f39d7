"""A private redis-server on 127.0.0.1 for the benchmark: found or installed, started, stopped.

The benchmark never uses a Redis it did not start. When ``redis-server`` is
missing it tries ``apt-get install -y redis-server`` (as root, where apt-get
exists); when that is not possible or fails, :func:`start` raises
:class:`Skipped` with the reason, and the Redis peer is reported as skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["RedisServer", "Skipped", "ensure_installed", "start"]


class Skipped(Exception):
    """A peer cannot run here; the message says why."""


def ensure_installed(allow_install: bool, log: object = print) -> str:
    """The path of redis-server, installing the Debian package if allowed and needed."""
    found = shutil.which("redis-server")
    if found:
        return found
    if not allow_install:
        raise Skipped("redis-server is not installed and --no-install was given")
    if shutil.which("apt-get") is None:
        raise Skipped("redis-server is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        raise Skipped("redis-server is not installed and installing it needs root (apt-get install -y redis-server)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("redis-server not found: apt-get install -y redis-server ...")  # type: ignore[operator]
    for command in (["apt-get", "install", "-y", "-qq", "redis-server"], ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "redis-server"]):
        try:
            subprocess.run(command, env=env, check=False, capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Skipped(f"installing redis-server failed: {exc}") from None
        found = shutil.which("redis-server")
        if found:
            return found
    raise Skipped("redis-server is not installed and apt-get install -y redis-server did not provide it")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A running redis-server child process; ``stop`` ends it and removes its directory."""

    def __init__(self, binary: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="kvbench-redis-")
        self.port = _free_port()
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.directory,
             "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
             "--logfile", os.path.join(self.directory, "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                self._cleanup()
                raise Skipped(f"redis-server exited at start with status {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise Skipped("redis-server did not answer PING within 10 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def start(allow_install: bool, log: object = print) -> RedisServer:
    """A fresh redis-server on a free loopback port; raises Skipped with the reason if impossible."""
    return RedisServer(ensure_installed(allow_install, log))
