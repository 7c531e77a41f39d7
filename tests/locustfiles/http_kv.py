"""Test locustfile: an HTTP task beside KV operations, for the statistics modes and the hooks.

The process that coordinates the run (standalone or master) serves a tiny
WSGI app on loopback and points the users at it. Each iteration of the one
task makes one GET request, one increment, and one read of a missing key
whose KeyNotFoundError the task catches (an outcome it expects).

Every hook a locustfile may use the store in (before_load, after_load,
test_start, test_stop) increments ``hook:<name>:<role>`` through
``environment.kv`` and writes the same name to ``$KV_TEST_OUT/hooks-<pid>.txt``.

Environment:

- KV_TEST_OUT: directory for the hook logs.
- KV_TEST_ITERATIONS: iterations per user; when every user of a standalone
  run has made them, the run quits (so two runs make the same number of
  requests). 0 (the default): run until ``-t``.
- KV_TEST_UNCAUGHT: "1" lets the first missing-key error of each user through to Locust.
"""

import os
import threading

import gevent
from gevent.pywsgi import WSGIServer
from locust import HttpUser, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

import locust_kv.plugin  # noqa: F401
from locust_kv.errors import KeyNotFoundError
from locust_kv.plugin import after_load, before_load

OUT = os.environ.get("KV_TEST_OUT")
ITERATIONS = int(os.environ.get("KV_TEST_ITERATIONS", "0"))
UNCAUGHT = os.environ.get("KV_TEST_UNCAUGHT") == "1"

_done = 0
_lock = threading.Lock()
_server = None


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _role(environment) -> str:
    if isinstance(environment.runner, MasterRunner):
        return "master"
    if isinstance(environment.runner, WorkerRunner):
        return "worker"
    return "standalone"


def _ran(environment, hook: str, kv=None) -> None:
    """Use the store from inside ``hook`` and record that it worked."""
    kv = kv if kv is not None else environment.kv
    kv.increment_by(f"hook:{hook}:{_role(environment)}", 1)
    if OUT:
        with open(os.path.join(OUT, f"hooks-{os.getpid()}.txt"), "a") as log:
            log.write(f"{hook}:{_role(environment)}\n")


@events.init.add_listener
def serve(environment, **_kwargs):
    global _server
    if not isinstance(environment.runner, WorkerRunner):
        _server = WSGIServer(("127.0.0.1", 0), _app, log=None)
        _server.start()
        environment.host = f"http://127.0.0.1:{_server.server_port}"


@before_load.add_listener
def on_before_load(environment, kv, **_kwargs):
    _ran(environment, "before_load")
    assert kv.get("hook:before_load:" + _role(environment)) == 1


@after_load.add_listener
def on_after_load(environment, kv, **_kwargs):
    _ran(environment, "after_load")


@events.test_start.add_listener
def on_test_start(environment, **_kwargs):
    _ran(environment, "test_start")


@events.test_stop.add_listener
def on_test_stop(environment, **_kwargs):
    _ran(environment, "test_stop")


class Visitor(HttpUser):
    wait_time = constant(0.01)

    def on_start(self):
        self.kv = self.environment.kv
        self.iterations = 0
        self.let_through = UNCAUGHT

    @task
    def visit(self):
        global _done
        if ITERATIONS and self.iterations >= ITERATIONS:
            return
        self.client.get("/", name="/")
        self.kv.increment_by("visits", 1)
        try:
            self.kv.get("missing")
        except KeyNotFoundError:
            if self.let_through:
                self.let_through = False
                raise
        self.iterations += 1
        if ITERATIONS and self.iterations == ITERATIONS:
            with _lock:
                _done += 1
                everyone = _done == self.environment.parsed_options.num_users
            if everyone and not isinstance(self.environment.runner, WorkerRunner):
                gevent.spawn(self.environment.runner.quit)
