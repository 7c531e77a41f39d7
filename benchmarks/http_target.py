"""A minimal HTTP/1.1 server on 127.0.0.1 that answers every GET with 200 "ok".

The target of the load-generator cost benchmark's HTTP task, run as
``python http_target.py PORT`` by bench_locust.py. It keeps connections
alive and writes each response in one segment with TCP_NODELAY, so the
client's rate is not capped by delayed ACKs.
"""

import socket
import sys

from gevent.server import StreamServer

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def handle(sock: socket.socket, _address: object) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        pending += data
        requests = pending.count(b"\r\n\r\n")  # GETs only: no request bodies
        if requests:
            pending = pending[pending.rfind(b"\r\n\r\n") + 4 :]
            sock.sendall(RESPONSE * requests)


if __name__ == "__main__":
    StreamServer(("127.0.0.1", int(sys.argv[1])), handle).serve_forever()
