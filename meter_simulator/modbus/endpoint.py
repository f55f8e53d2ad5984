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
from .tcp import MeterTCPServer


class ModbusEndpoint(ModbusServer):
    """pyModbusTCP's ModbusServer (its data handler and identification) on our TCP server."""

    def __init__(self, *args, transport_options: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.transport_options = transport_options or {}  # MeterTCPServer's limits and allow list
        self.responder = Responder(self.data_hdl, self.device_id)

    def start(self) -> None:
        """Bind and listen; the MeterServer's Acceptor serves the socket. BindError with one line
        when the address cannot be served."""
        self._service = MeterTCPServer(self.host, self.port, ConnectionHandler,
                                       responder=self.responder, **self.transport_options)
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
