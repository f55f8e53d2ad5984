"""TCP side of the Modbus server: the listening socket, who may connect, and the per-connection loop.

pyModbusTCP builds a stdlib ThreadingTCPServer and sets its class attributes for
the whole process (address family, daemon threads) and keeps the listen backlog
of 5. Here those are attributes of our own subclass, per server, and the
connection loop also serves IPv6 peers (pyModbusTCP unpacks getpeername() into
two values and drops every IPv6 client).

What a hostile or broken client can do is bounded here:
- at most max_clients connections per port; past it a connection is closed as
  soon as it is accepted, and so is one from outside the allow list, with a
  rate-limited warning instead of a line per connection;
- a connection with no complete request for idle_timeout_s is closed, so a
  client that trickles a frame one byte at a time (slowloris) or goes silent
  gives its slot back; the idle clock restarts when a request arrives and when
  a delayed answer goes out, and bytes that complete a frame are never dropped;
- a request held by a delay fault watches its socket: when the client closes or
  resets the connection, the request is dropped unexecuted and the slot freed at
  once, not when the delay ends;
- a frame whose MBAP header is not Modbus/TCP (protocol id other than 0, a length
  field outside 2..254) closes that connection only: the stream cannot be
  re-synchronised after it.

Faults a test injects (faults.py) act here, on one connection each: the loop looks
at its server's request_faults, an empty tuple while none may act on its port (else
the port's own faults and every port's), so the hot path pays one attribute test.
Each connection counts its requests by function code and result in a dict of its
own (no lock on the request path); /metrics sums them.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Sequence

from pyModbusTCP.constants import (
    ENCAPSULATED_INTERFACE_TRANSPORT,
    MEI_TYPE_READ_DEVICE_ID,
    READ_COILS,
    READ_DISCRETE_INPUTS,
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    WRITE_MULTIPLE_COILS,
    WRITE_MULTIPLE_REGISTERS,
    WRITE_READ_MULTIPLE_REGISTERS,
    WRITE_SINGLE_COIL,
    WRITE_SINGLE_REGISTER,
)
from pyModbusTCP.server import ModbusServer

from .ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024  # hundreds of clients may connect at once: no SYN retransmit waits
RECV_AHEAD_BYTES = 4096  # a few whole frames: pipelined requests cost no extra recv
POLL_S = 0.5  # how often a blocked connection looks at its idle deadline and at server stop
MAX_HELD_AHEAD_BYTES = 65536  # read ahead while a request is held; past it the kernel buffers

# MBAP length field = unit id (1 byte) + PDU; the PDU is 1 to 253 bytes (Modbus/TCP ADU <= 260).
MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
MIN_MBAP_LENGTH = 2
MAX_MBAP_LENGTH = 254

# PDU sizes in bytes, function code included, of requests with a fixed size.
FIXED_PDU_SIZE = {READ_COILS: 5, READ_DISCRETE_INPUTS: 5, READ_HOLDING_REGISTERS: 5,
                  READ_INPUT_REGISTERS: 5, WRITE_SINGLE_COIL: 5, WRITE_SINGLE_REGISTER: 5}
# Requests that end in a byte count and that many bytes: offset of the byte count.
BYTE_COUNT_AT = {WRITE_MULTIPLE_COILS: 5, WRITE_MULTIPLE_REGISTERS: 5,
                 WRITE_READ_MULTIPLE_REGISTERS: 9}
# what a request's answer was, in the per-connection counts (key: function code << 2 | result)
RESULT_OK, RESULT_EXCEPTION, RESULT_FAULT = 0, 1, 2
EXCEPTION_KEY = 1 << 10  # + exception code: exception answers sent, by code
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
READ_DEVICE_ID_PDU_SIZE = 4  # 0x2B, MEI type 0x0E, read device id code, object id
SUPPORTED_FUNCTIONS = frozenset(FIXED_PDU_SIZE) | frozenset(BYTE_COUNT_AT) | {
    ENCAPSULATED_INTERFACE_TRANSPORT}


class BindError(Exception):
    """The address and port cannot be served; the message says why in one line."""


class FramingError(ModbusServer.NetworkError):
    """The byte stream is not Modbus/TCP: the connection is closed."""


class IdleTimeout(ModbusServer.NetworkError):
    """No complete request within the idle timeout: the connection is closed."""


def resolve(host: str, port: int) -> tuple[int, tuple]:
    """(address family, socket address) to bind host:port, IPv4 or IPv6."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise BindError(f"cannot resolve {host!r}: {getattr(exc, 'strerror', None) or exc}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def is_loopback(host: str) -> bool:
    """True when host resolves to a loopback address only (0.0.0.0 and :: are every address)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        return False
    return all(client_ip(info[4][0]).is_loopback for info in infos)


def client_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A peer's IP address; an IPv4 client of a dual-stack socket (::ffff:a.b.c.d) as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # no IPv6 zone index
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def pdu_size_ok(pdu: bytes) -> bool:
    """True when a request PDU of a supported function code has the size its fields call for."""
    func_code = pdu[0]
    if func_code in FIXED_PDU_SIZE:
        return len(pdu) == FIXED_PDU_SIZE[func_code]
    if func_code in BYTE_COUNT_AT:
        at = BYTE_COUNT_AT[func_code]
        if len(pdu) <= at or len(pdu) != at + 1 + pdu[at]:
            return False
        if func_code == WRITE_MULTIPLE_COILS:  # pyModbusTCP takes any byte count >= what is needed
            (quantity,) = struct.unpack_from(">H", pdu, 3)
            return pdu[at] == (quantity + 7) // 8
        return True
    if func_code == ENCAPSULATED_INTERFACE_TRANSPORT:
        if len(pdu) < 2:
            return False
        return pdu[1] != MEI_TYPE_READ_DEVICE_ID or len(pdu) == READ_DEVICE_ID_PDU_SIZE
    return True  # unknown function codes are refused with 0x01 whatever their size


def allowed(allow, address: str) -> bool:
    """True when a client at this address may connect (allow: networks, or None for any)."""
    if allow is None:
        return True
    try:
        ip = client_ip(address)
    except ValueError:
        return False
    return any(ip in network for network in allow)


def shut_down_and_join(lock: threading.Lock, handlers, threads, timeout_s: float) -> None:
    """Shut down the sockets of the connections being served and join every connection thread
    (also those just started or just ending), as copied under lock: what a server's stop needs."""
    with lock:
        serving = list(handlers)
        known = list(threads)
    for handler in serving:
        try:
            handler.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    for thread in known:
        if thread is not threading.current_thread() and thread.ident is not None:
            thread.join(timeout_s)


def listen_or_close(server: socketserver.TCPServer) -> None:
    """Bind and listen, for a server made with bind_and_activate=False; closed and BindError
    with the system's reason otherwise."""
    try:
        server.server_bind()
        server.server_activate()
    except OSError as exc:
        server.server_close()
        raise BindError(exc.strerror or str(exc)) from None


def start_connection_thread(server, lock: threading.Lock, prefix: str, request, client_address) -> None:
    """Serve a connection in a daemon thread named for it (leak checks find it by name), known in
    server.threads from before it starts until a stop has joined it."""
    thread = threading.Thread(target=server.process_request_thread, args=(request, client_address),
                              name=f"{prefix} {client_address[0]} {client_address[1]}", daemon=True)
    with lock:
        if len(server.threads) > 2 * len(server.connections) + 16:  # forget the ended ones now and then
            server.threads = {known for known in server.threads if known.is_alive()}
        server.threads.add(thread)
    try:
        thread.start()
    except BaseException:
        with lock:
            server.threads.discard(thread)
        raise


def dual_stack(sock: socket.socket, family: int) -> None:
    """An IPv6 listener takes IPv4 clients too (::ffff:a.b.c.d), whatever the system default."""
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)


def add_counts(total: dict, counts: dict) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


class MeterTCPServer(socketserver.ThreadingTCPServer):
    """ThreadingTCPServer with a deep backlog, per-instance address family, daemon threads,
    a connection limit, an allow list checked at accept time and an idle timeout."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    block_on_close = False

    def __init__(self, host: str, port: int, handler_class, *, max_clients: int = 100,
                 idle_timeout_s: float = 120.0,
                 allow: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None) -> None:
        self.max_clients = max_clients
        self.idle_timeout_s = idle_timeout_s  # 0: never
        self.allow = tuple(allow) if allow is not None else None  # None: any client
        self.clients = 0  # connections being served now
        self._clients_lock = threading.Lock()  # also guards the connection and request counts
        self.accepted = 0
        self.refused = {"max_clients": 0, "allow": 0}
        self.connections: dict = {}  # handler -> its thread, while it serves
        self.threads: set = set()  # every connection thread that may still run (joined on stop)
        self.ended_counts: dict[int, int] = {}  # the request counts of connections that ended
        self.closed = threading.Event()  # set when the listener closes: connections end now
        self.request_faults: tuple = ()  # or (this port's request faults, every port's): control.py
        self.match_fault = None  # control.Control.match, when a fault is active
        self._log_full = RateLimitedLog(log)
        self._log_not_allowed = RateLimitedLog(log)
        self.address_family, sockaddr = resolve(host, port)
        super().__init__(sockaddr, handler_class, bind_and_activate=False)
        listen_or_close(self)

    def server_bind(self) -> None:
        dual_stack(self.socket, self.address_family)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()

    def allowed(self, address: str) -> bool:
        """True when a client at this address may connect."""
        return allowed(self.allow, address)

    def verify_request(self, request, client_address) -> bool:
        """Accept-time checks; a refused connection is closed by the caller at once."""
        port = self.server_address[1]
        if not self.allowed(client_address[0]):
            self._log_not_allowed("refused connection from %s to port %d: not in --allow",
                                  client_address[0], port)
            self.refused["allow"] += 1
            return False
        with self._clients_lock:
            if self.clients >= self.max_clients:
                full = True
                self.refused["max_clients"] += 1
            else:
                full = False
                self.clients += 1  # given back when the connection's thread ends
                self.accepted += 1
        if full:
            self._log_full("refused connection from %s to port %d: %d clients already "
                           "(--max-clients)", client_address[0], port, self.max_clients)
            return False
        return True

    def release(self) -> None:
        """A served connection has ended: its slot is free."""
        with self._clients_lock:
            self.clients -= 1

    def register(self, handler) -> None:
        """A connection starts being served (its counts are summed while it lives)."""
        with self._clients_lock:
            self.connections[handler] = threading.current_thread()

    def unregister(self, handler) -> None:
        """A connection ends: its counts join those of the ended ones, in one step."""
        with self._clients_lock:
            self.connections.pop(handler, None)
            add_counts(self.ended_counts, handler.counts)

    def request_counts(self) -> dict[int, int]:
        """Requests by function code and result, and exceptions by code, of every connection."""
        with self._clients_lock:
            total = dict(self.ended_counts)
            for handler in self.connections:
                add_counts(total, handler.counts.copy())
        return total

    def server_close(self) -> None:
        self.closed.set()
        super().server_close()

    def end_connections(self, timeout_s: float = 2.0) -> None:
        """Shut every connection down and wait for its thread (after server_close)."""
        shut_down_and_join(self._clients_lock, self.connections, self.threads, timeout_s)

    def process_request(self, request, client_address) -> None:
        try:
            start_connection_thread(self, self._clients_lock, "modbus-connection", request, client_address)
        except BaseException:  # no thread to give the slot back: do it here, then let it fail
            self.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.release()

    def handle_error(self, request, client_address) -> None:
        log.exception("error serving %s", client_address)


class ConnectionHandler(ModbusServer.ModbusService):
    """pyModbusTCP's connection loop with strict MBAP framing, an idle timeout and IPv6 peers."""

    def setup(self) -> None:
        self.counts: dict[int, int] = {}  # requests by function code << 2 | result, exceptions
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Every blocking call returns within POLL_S, and the loop then looks at the server's
        # stop and the idle deadline: one settimeout per connection, none per request.
        self.request.settimeout(POLL_S)
        self.idle_timeout_s = getattr(self.server, "idle_timeout_s", 0) or 0
        self._running = getattr(self.server, "evt_running", None)
        self._received = bytearray()  # bytes read ahead of the frame being parsed
        self.mark_active()

    def mark_active(self) -> None:
        """A complete request arrived: the idle timeout counts from now."""
        self.deadline = (time.monotonic() + self.idle_timeout_s) if self.idle_timeout_s else None

    @property
    def server_running(self) -> bool:
        return self._running is None or self._running.is_set()

    def check_alive(self) -> None:
        """Raise when the connection must end now: the server stopped, or the idle time is up."""
        if not self.server_running:
            raise ModbusServer.NetworkError("server stopped")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise IdleTimeout(f"no complete request for {self.idle_timeout_s:g} s")

    def _recv_all(self, size: int) -> bytes:
        """The next size bytes. Reads ahead, so a whole frame usually costs one recv."""
        received = self._received
        while len(received) < size:
            try:
                chunk = self.request.recv(RECV_AHEAD_BYTES)
            except socket.timeout:
                chunk = None
            if chunk == b"":
                raise ModbusServer.NetworkError("closed by the client")
            if chunk:
                received += chunk
                if len(received) >= size:
                    break  # what has come is served, even when the idle deadline just passed
            self.check_alive()  # also between the bytes of a client that sends slowly
        data = bytes(received[:size])
        del received[:size]
        return data

    def _send_all(self, data: bytes) -> bool:
        # a client that stops reading its answers is bounded by the same deadline
        view = memoryview(data)
        while view:
            try:
                sent = self.request.send(view)
            except socket.timeout:
                sent = 0
            view = view[sent:]
            if view:
                self.check_alive()
        return True

    def read_mbap(self, mbap: ModbusServer.MBAP) -> None:
        """Fill mbap from the next 7 bytes; FramingError when they are not a Modbus/TCP header.

        pyModbusTCP's own check accepts length 255 (a 254-byte PDU, past the 253 Modbus allows)
        and refuses length 2 (a PDU of a function code alone, which deserves an answer).
        """
        tid, protocol_id, length, unit_id = MBAP.unpack(self._recv_all(MBAP.size))
        if protocol_id != 0:
            raise FramingError(f"protocol id {protocol_id}, not 0")
        if not MIN_MBAP_LENGTH <= length <= MAX_MBAP_LENGTH:
            raise FramingError(f"MBAP length {length}, not {MIN_MBAP_LENGTH} to {MAX_MBAP_LENGTH}")
        mbap.transaction_id, mbap.protocol_id, mbap.length, mbap.unit_id = tid, protocol_id, length, unit_id

    def count(self, function_code: int, answer_pdu: bytes | None, result: int) -> None:
        """Count one request (before its answer is sent) and the exception answer it gets."""
        counts = self.counts
        key = function_code << 2 | result
        counts[key] = counts.get(key, 0) + 1
        if answer_pdu is not None and len(answer_pdu) >= 2 and answer_pdu[0] & 0x80:
            key = EXCEPTION_KEY + answer_pdu[1]
            counts[key] = counts.get(key, 0) + 1

    def handle(self) -> None:
        session_data = ModbusServer.SessionData()
        peer = ("?", 0)
        server = self.server
        counts = self.counts
        server.register(self)
        try:
            peer = self.request.getpeername()
            session_data.client.address, session_data.client.port = peer[0], peer[1]
            log.debug("connection from %s port %s", peer[0], peer[1])
            while True:
                session_data.new_request()  # new request and response frames
                request, response = session_data.request, session_data.response
                self.read_mbap(request.mbap)
                pdu = request.pdu.raw = self._recv_all(request.mbap.length - 1)
                self.mark_active()
                session_data.set_response_mbap()
                request_faults = server.request_faults
                if request_faults:
                    fault = server.match_fault(request_faults, request.mbap.unit_id, pdu[0])
                    if fault is not None:
                        self.inject(fault, session_data)
                        continue
                server.engine(session_data)
                answer_pdu = response.pdu.raw
                # self.count() inlined: this runs for every request
                if answer_pdu[0] & 0x80:
                    key = pdu[0] << 2 | RESULT_EXCEPTION
                    code_key = EXCEPTION_KEY + answer_pdu[1]
                    counts[code_key] = counts.get(code_key, 0) + 1
                else:
                    key = pdu[0] << 2
                counts[key] = counts.get(key, 0) + 1
                self._send_all(response.raw)
        except (ModbusServer.Error, OSError) as exc:
            log.debug("connection from %s port %s closed: %s", peer[0], peer[1], exc)
        finally:
            self.request.close()
            server.unregister(self)

    def inject(self, fault, session_data) -> None:
        """Act out a fault on this request instead of the normal exchange (faults.py); raises
        NetworkError when the fault ends the connection."""
        function_code = session_data.request.pdu.raw[0]
        if fault.delay_s:
            self.hold(fault.delay_s)
            self.mark_active()  # the wait was ours, not the client's: its idle time starts now
        kind = fault.type
        if kind in ("delay", "corrupt"):  # executed when the answer is built
            self.server.engine(session_data)
            self.count(function_code, session_data.response.pdu.raw, RESULT_FAULT)
            answer = session_data.response.raw
            if kind == "corrupt":
                answer = corrupted(answer, fault.parameters["mode"])
            self._send_all(answer)
        elif kind == "exception":
            session_data.response.pdu.raw = bytes(((function_code | 0x80) & 0xFF,
                                                   fault.parameters["code"]))
            self.count(function_code, session_data.response.pdu.raw, RESULT_FAULT)
            self._send_all(session_data.response.raw)
        elif kind == "no_answer":
            self.count(function_code, None, RESULT_FAULT)
        elif kind == "close":
            self.count(function_code, None, RESULT_FAULT)
            try:
                self.request.shutdown(socket.SHUT_WR)  # FIN now, whatever is still unread
            except OSError:
                pass
            raise ModbusServer.NetworkError("closed by a fault")
        elif kind == "reset":
            self.count(function_code, None, RESULT_FAULT)
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            raise ModbusServer.NetworkError("reset by a fault")

    def hold(self, delay_s: float) -> None:
        """Wait delay_s (only this connection waits) while watching the socket: what the client
        sends meanwhile joins the read-ahead; NetworkError when it closes (a reset raises
        ConnectionResetError) or the server stops, so a request nobody waits for is dropped
        unexecuted and its slot freed."""
        sock, received, closed = self.request, self._received, self.server.closed
        end_s = time.monotonic() + delay_s
        try:
            while True:
                left_s = end_s - time.monotonic()
                if left_s <= 0:
                    return
                if closed.is_set():
                    raise ModbusServer.NetworkError("server stopped")
                if len(received) >= MAX_HELD_AHEAD_BYTES:
                    closed.wait(min(left_s, POLL_S))
                    continue
                sock.settimeout(min(left_s, POLL_S))
                try:
                    chunk = sock.recv(RECV_AHEAD_BYTES)
                except socket.timeout:
                    continue
                if not chunk:  # also a stopping server's shutdown of the socket
                    raise ModbusServer.NetworkError("closed by the client while its request waited")
                received += chunk
        finally:
            sock.settimeout(POLL_S)


def corrupted(answer: bytes, mode: str) -> bytes:
    """An answer ADU garbled as a corrupt fault asks: the transaction id + 1, the MBAP length
    + 1 (announcing a byte that never comes), or its first half."""
    if mode == "transaction_id":
        (tid,) = struct.unpack_from(">H", answer)
        return struct.pack(">H", (tid + 1) & 0xFFFF) + answer[2:]
    if mode == "length":
        (length,) = struct.unpack_from(">H", answer, 4)
        return answer[:4] + struct.pack(">H", (length + 1) & 0xFFFF) + answer[6:]
    return answer[:max(len(answer) // 2, 1)]
