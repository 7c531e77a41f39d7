"""A small login service for the seeding and account_pool scenarios, served on loopback by a gevent WSGI server.

It enforces what the test accounts are for: one session per account at a
time. ``POST /login`` answers 401 for a wrong password and 409 when the
account already has a session (and counts the conflict); ``GET /profile``
and ``POST /logout`` need the session's token.

Fencing: a login may carry ``fence``, the fencing token of the lease its
client holds on the account (``Claim.token``). A login whose fence is larger
than the fence of the account's open session takes the account over: the
store granted a newer lease, so the old session's holder had lost its lease
(it stopped without logging out). The old session then answers 401 with
``"session taken over"``. A login without a fence, or with one not larger,
is a conflict as before.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from gevent import socket
from gevent.pywsgi import WSGIServer

from accounts import password_of

__all__ = ["LoginService"]


class LoginService:
    """The service's state and its WSGI app; ``start()`` serves it on 127.0.0.1 at a free port."""

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}  # token -> account
        self.active: dict[str, str] = {}  # account -> token
        self.fences: dict[str, int] = {}  # token -> the fence its login gave
        self.taken_over: set[str] = set()  # tokens of sessions a newer lease took over
        self.counts: Counter[str] = Counter()
        self.conflicts: list[str] = []
        self._server: WSGIServer | None = None

    def start(self) -> str:
        """Serve in the background (a greenlet of this process); the base URL."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Accepted connections inherit it: without it, a response written in two parts waits
        # out the client's delayed ACK, 40 ms per request.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)  # the account_pool scenario connects 200 users in half a second
        self._server = WSGIServer(listener, self.app, log=None, error_log=None)
        self._server.start()
        host, port = listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=1)

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        body: dict[str, Any] = {}
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        token = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ")
        if (method, path) == ("POST", "/login"):
            status, reply = self._login(body.get("account", ""), body.get("password", ""), body.get("fence"))
        elif (method, path) == ("GET", "/profile") and token in self.sessions:
            status, reply = "200 OK", {"account": self.sessions[token]}
        elif (method, path) == ("POST", "/logout") and token in self.sessions:
            self._end(token)
            self.counts["logouts"] += 1
            status, reply = "200 OK", {}
        elif path in ("/profile", "/logout") and token in self.taken_over:
            status, reply = "401 Unauthorized", {"error": "session taken over"}
        elif path in ("/profile", "/logout"):
            status, reply = "401 Unauthorized", {"error": "no such session"}
        else:
            status, reply = "404 Not Found", {"error": "no such page"}
        data = json.dumps(reply).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def _login(self, account: str, password: str, fence: int | None = None) -> tuple[str, dict[str, Any]]:
        if not account or password != password_of(account):
            self.counts["bad_passwords"] += 1
            return "401 Unauthorized", {"error": "wrong account or password"}
        if account in self.active:
            held = self.fences.get(self.active[account])
            if fence is None or held is None or fence <= held:
                self.conflicts.append(account)
                return "409 Conflict", {"error": "account already has a session"}
            stale = self.active[account]
            self._end(stale)
            self.taken_over.add(stale)
            self.counts["takeovers"] += 1
        token = secrets.token_hex(8)
        self.sessions[token] = account
        self.active[account] = token
        if fence is not None:
            self.fences[token] = fence
        self.counts["logins"] += 1
        return "200 OK", {"token": token}

    def _end(self, token: str) -> None:
        del self.active[self.sessions.pop(token)]
        self.fences.pop(token, None)
