"""A tiny threaded HTTP(S) server on 127.0.0.1, for tests that need a real socket.

``LoopbackServer(route)`` answers every GET with ``route(path)`` (the path with its query):
a status, headers, and a body given whole or as an iterable of chunks (a generator may
sleep between them, to play a slow host). It counts the requests in flight, and with
``gather=n`` holds each request until ``n`` are in flight together, so tests can check how
many a client sends at once without depending on timing. ``RawServer(respond)`` hands each
connection's socket to ``respond`` after reading the request head, for replies no HTTP
server library would send (a status line and headers trickled a byte at a time).
``tls_contexts(names)`` makes a throwaway CA and a certificate for ``names``, so the same
server can speak HTTPS to a client that trusts only that CA.

Imported by the test modules of this directory (pytest puts it on ``sys.path``). Nothing
here leaves loopback: the server binds 127.0.0.1 and port 0.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LoopbackServer", "RawServer", "Reply", "Route", "tls_contexts"]

Reply = tuple[int, dict[str, str], bytes | Iterable[bytes]]
Route = Callable[[str], Reply]


class LoopbackServer:
    """A threaded HTTP(S) server answering from ``route``; a context manager.

    Args:
        route: path (with query) -> (status, headers, body or chunks).
        gather: hold each request until this many are in flight at once; a request that
            waits ``patience`` seconds without company is answered anyway (the client had
            no more to send), so the count is what the client sent, never what timing made.
        patience: see ``gather``.
        tls: a server-side SSL context for HTTPS, or None for plain HTTP.
    """

    def __init__(self, route: Route, *, gather: int = 0, patience: float = 2.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.route = route
        self.gather = gather
        self.patience = patience
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True, name=f"loopback-{self.port}")

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:{port}``."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _arrived(self, path: str) -> None:
        with self._changed:
            self.paths.append(path)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.in_flight >= self.gather, self.patience)

    def _answered(self) -> None:
        # Counted as done *before* the reply is written: a client cannot start its next
        # request before it has this reply, so the count never overstates concurrency.
        with self._changed:
            self.in_flight -= 1


class RawServer:
    """A TCP server on 127.0.0.1 that reads each request head and hands the socket on.

    Args:
        respond: called with the connection and the request head (bytes up to the blank
            line), in a thread of its own; it writes whatever it likes and returns, and the
            connection is then closed.
    """

    def __init__(self, respond: Callable[[socket.socket, bytes], None]) -> None:
        self.respond = respond
        self.heads: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"raw-{self.port}")

    @property
    def url(self) -> str:
        """``http://127.0.0.1:{port}``."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            self.heads.append(head)
            try:
                self.respond(conn, head)
            except OSError:
                pass  # the client gave up (a deadline or a size cap): what such tests want


def _handler_for(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            server._arrived(self.path)
            try:
                status, headers, body = server.route(self.path)
            finally:
                server._answered()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            chunks = [body] if isinstance(body, bytes) else body
            try:
                for chunk in chunks:
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client gave up (a timeout or a size cap): what such tests want

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


def tls_contexts(names: Iterable[str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Return (server context, client context) for a certificate valid for ``names``.

    The certificate is signed by a throwaway CA that only the client context trusts.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "atrepo test CA")])
    ca = (_builder(ca_name, ca_name, ca_key.public_key(), now)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(names)
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    leaf = (_builder(leaf_name, ca_name, key.public_key(), now)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(
        cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any,
             now: datetime.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False))
