"""An LDAP proxy that injects faults at exact points of the conversation, for real.

It sits between the code under test and slapd: clients connect with TLS (the proxy holds a
certificate from the test CA, so clients verify it as strictly as slapd's), and the proxy
forwards plain LDAP to slapd's ldap:// port. Because it sees every LDAP message it can count
them (``counts``: requests and answers by operation, over all connections) and act right
after the Nth answer of a kind, whatever the timing, chunking or TLS record sizes:

    proxy.after("modifyResponse", 100, proxy.cut)                  # connection lost
    proxy.after("searchResEntry", 120, restart_and_cut)            # server restarted
    proxy.after("modifyResponse", 100, proxy.hang)                 # server stops answering

The action runs in the connection's own thread before anything else is forwarded on that
connection, and new connections wait until it has finished: the client has received
exactly N answers of that kind when the fault hits. An action that should also end the
connection (a restart) calls ``cut`` itself; one that leaves it open lets it go on.
``stop_listening`` closes the listening socket (new connections are refused, as by a
stopped server) and ``listen`` reopens the same port.

One thread per connection does both directions (``select``), because a TLS socket must not
be used by two threads at once.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.servers.tls import write_tls_files

# protocolOp tags (RFC 4511, APPLICATION class).
OPERATIONS = {
    0x60: "bindRequest",
    0x61: "bindResponse",
    0x42: "unbindRequest",
    0x63: "searchRequest",
    0x64: "searchResEntry",
    0x65: "searchResDone",
    0x73: "searchResRef",
    0x66: "modifyRequest",
    0x67: "modifyResponse",
    0x77: "extendedReq",
    0x78: "extendedResp",
    0x50: "abandonRequest",
}

Action = Callable[["ProxiedConnection"], None]

# Actions run in this one long-lived thread, not in the connection's: a server an action
# restarts is the child of the thread that forked it, and the test servers die with their
# parent (PR_SET_PDEATHSIG counts threads), so a connection thread's end would kill it.
_ACTIONS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proxy-action")


class ProxiedConnection:
    """One client connection and its upstream connection to slapd."""

    def __init__(self, proxy: LdapProxy, client: socket.socket, number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.number = number
        self.upstream: socket.socket | None = None
        self.closed = False
        self.cutting = False

    def cut(self) -> None:
        """End it as a server that goes away does: what was forwarded still arrives, then
        the end of the stream. (Closing with unread requests would send a reset, and a
        reset makes the client drop answers it has received but not yet read.)"""
        self.cutting = True
        with suppress(OSError):
            self.client.shutdown(socket.SHUT_WR)
        if self.upstream is not None:
            self.upstream.close()

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class LdapProxy:
    """See the module docstring. ``host``: the loopback address to listen on."""

    def __init__(self, target_port: int, tls_dir: Path, host: str = "127.0.0.1") -> None:
        self.target_port = target_port
        self.host = host
        tls = write_tls_files(tls_dir)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(tls.cert_file, tls.key_file)
        self.counts: Counter[str] = Counter()
        self.connections = 0
        self.cuts = 0
        self._fault: tuple[str, int, Action] | None = None
        self._hung = threading.Event()
        self._gate = threading.Lock()  # held while an action runs: new connections wait
        self._lock = threading.Lock()
        self._open: list[ProxiedConnection] = []
        self._stopped = False
        self.port = 0
        self._listener: socket.socket | None = None
        self.listen()

    # --- faults ---------------------------------------------------------------------

    def after(self, operation: str, count: int, action: Action) -> None:
        """Run ``action`` right after the ``count``-th ``operation`` message (counted from
        now, over all connections) has been forwarded."""
        assert operation in OPERATIONS.values(), operation
        with self._lock:
            self._fault = (operation, self.counts[operation] + count, action)

    def cut(self, connection: ProxiedConnection) -> None:
        """Close that connection: the client loses the answers still to come."""
        with self._lock:
            self.cuts += 1
        connection.cut()

    def hang(self, connection: ProxiedConnection) -> None:
        """From now on nothing passes on any connection, new ones included (they get no
        TLS handshake): a server that stopped answering."""
        self._hung.set()

    def recover(self) -> None:
        """After ``hang``: new connections work again (hung ones stay dead)."""
        self._hung.clear()

    def stop_listening(self) -> None:
        """Refuse new connections (connection refused), as a stopped server would."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not
            listener.close()

    def listen(self) -> None:
        """Accept connections (again, on the same port)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    # --- forwarding -----------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stop_listening() or close()
            with self._lock:
                self.connections += 1
                connection = ProxiedConnection(self, client, self.connections)
                self._open.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: ProxiedConnection) -> None:
        try:
            with self._gate:  # an action (a restart) in progress finishes first
                pass
            if self._hung.is_set():
                self._wait_until_closed(connection)
                return
            connection.client.settimeout(10)
            connection.client = self._context.wrap_socket(connection.client, server_side=True)
            connection.client.settimeout(None)
            try:
                connection.upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                connection.close()  # the server is down: the client sees the connection close
                return
            self._forward(connection)
        except OSError:
            pass
        finally:
            connection.close()

    def _wait_until_closed(self, connection: ProxiedConnection) -> None:
        """Read and drop what the client sends until it closes the connection."""
        while not (self._stopped or connection.closed):
            readable, _, _ = select.select([connection.client], [], [], 0.1)
            try:
                if readable and not connection.client.recv(65536):
                    return
            except OSError:
                return

    def _forward(self, connection: ProxiedConnection) -> None:
        client, upstream = connection.client, connection.upstream
        assert isinstance(client, ssl.SSLSocket) and upstream is not None
        buffers: dict[socket.socket, bytearray] = {client: bytearray(), upstream: bytearray()}
        while not (self._stopped or connection.closed):
            readable: list[socket.socket]
            if client.pending():
                readable = [client]
            else:
                readable, _, _ = select.select([client, upstream], [], [], 0.1)
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                if self._hung.is_set():
                    continue  # swallowed: nothing reaches the client any more
                sink = upstream if source is client else client
                buffer = buffers[source]
                buffer += data
                for message in _messages(buffer):
                    sink.sendall(message)
                    self._count(connection, message)
                    if self._hung.is_set() or connection.cutting:
                        self._wait_until_closed(connection)
                    if connection.closed or connection.cutting or self._hung.is_set():
                        return  # what else the buffer held is lost with the connection

    def _count(self, connection: ProxiedConnection, message: bytes) -> None:
        operation = OPERATIONS.get(_operation(message), "other")
        action = None
        with self._lock:
            self.counts[operation] += 1
            if self._fault is not None and self._fault[:2] == (operation, self.counts[operation]):
                action, self._fault = self._fault[2], None
        if action is not None:
            with self._gate:
                _ACTIONS.submit(action, connection).result()

    def close(self) -> None:
        self._stopped = True
        self.stop_listening()
        with self._lock:
            for connection in self._open:
                connection.close()


def _messages(buffer: bytearray) -> Iterator[bytes]:
    """Take every complete BER-framed LDAP message off the front of ``buffer``."""
    while len(buffer) >= 2:
        first = buffer[1]
        if first < 0x80:
            header, length = 2, first
        else:
            size = first & 0x7F
            if len(buffer) < 2 + size:
                return
            header, length = 2 + size, int.from_bytes(buffer[2 : 2 + size], "big")
        if len(buffer) < header + length:
            return
        message = bytes(buffer[: header + length])
        del buffer[: header + length]
        yield message


def _operation(message: bytes) -> int:
    """The protocolOp tag: after the SEQUENCE header and the messageID INTEGER."""
    header = 2 if message[1] < 0x80 else 2 + (message[1] & 0x7F)
    id_length = message[header + 1]
    return message[header + 2 + id_length]


@contextmanager
def ldap_proxy(target_port: int, tls_dir: Path, host: str = "127.0.0.1") -> Iterator[LdapProxy]:
    proxy = LdapProxy(target_port, tls_dir, host)
    try:
        yield proxy
    finally:
        proxy.close()
