"""ModbusEndpoint: one port's pyModbusTCP ModbusServer, on our listener and our PDU seam.

The one module that touches pyModbusTCP's private names, each pinned by a test in
tests/test_adapter.py that fails when pyModbusTCP changes it: ModbusServer keeps its
listener in _service (None until started) and its running flag, which is_run reads, in
_evt_running. pyModbusTCP's own start() and engine are not used: MeterTCPServer listens,
the Acceptor accepts, ConnectionHandler frames and pdu.Responder answers.
"""
from __future__ import annotations

from pyModbusTCP.server import ModbusServer

from .mbap import ConnectionHandler
from .pdu import Responder
from .rtu import TCP_SILENCE_S, RtuBus
from .rtutcp import RtuConnectionHandler
from .tcp import MeterTCPServer


class ModbusEndpoint(ModbusServer):
    """pyModbusTCP's ModbusServer (its data handler and identification) on our TCP server."""

    def __init__(self, *args, transport_options: dict | None = None, framing: str = "tcp",
                 silence_s: float = TCP_SILENCE_S, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.transport_options = transport_options or {}  # MeterTCPServer's limits and allow list
        self.responder = Responder(self.data_hdl, self.device_id)
        self.bus = RtuBus(self.responder)  # the port's meters as RTU slaves (RTU over TCP, serial)
        self.framing = framing  # what the port speaks: "tcp" (MBAP) or "rtu"
        self.silence_s = silence_s  # RTU over TCP: what discards a partial frame

    def start(self) -> None:
        """Bind and listen; the MeterServer's Acceptor serves the socket. BindError with one line
        when the address cannot be served."""
        rtu = self.framing == "rtu"
        self._service = MeterTCPServer(self.host, self.port,
                                       RtuConnectionHandler if rtu else ConnectionHandler,
                                       responder=self.responder, bus=self.bus if rtu else None,
                                       silence_s=self.silence_s, **self.transport_options)
        self._evt_running.set()

    def stop(self) -> None:
        """Close the listening socket; connection threads see it and end within POLL_S."""
        if self._service is not None:
            self._service.server_close()
        self._evt_running.clear()

    @property
    def service(self) -> MeterTCPServer | None:
        """The listener, once start() bound it."""
        return self._service

    @property
    def bound_port(self) -> int:
        return self._service.server_address[1]
