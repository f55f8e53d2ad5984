"""The reference servers of the benchmark, each as its user would set it up, until SIGTERM.

Usage:
  ref_server.py (pymodbustcp | pymodbus) PORT COUNT [UNITS]
  ref_server.py -h | --help

pymodbustcp: bare pyModbusTCP ModbusServer(no_block=True) per port, over its default DataBank.
pymodbus: pymodbus's asyncio ModbusTcpServer per port in one event loop; UNITS > 0: unit ids
1..UNITS, each a device of its own (0, the default: one device for every unit id;
pymodbustcp ignores UNITS).

Prints "ready" on stdout once every port listens.
"""
from __future__ import annotations

import asyncio
import signal
import threading

from docopt import docopt


def serve_pymodbustcp(port: int, count: int) -> None:
    from pyModbusTCP.server import ModbusServer

    servers = [ModbusServer(host="127.0.0.1", port=port + offset, no_block=True)
               for offset in range(count)]
    for server in servers:
        server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    for server in servers:
        server.stop()


def serve_pymodbus(port: int, count: int, devices: int) -> None:
    from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
    from pymodbus.server import ModbusTcpServer

    def device() -> ModbusDeviceContext:  # pymodbus adds 1 to request addresses: blocks from 1
        return ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, [0] * 200),
                                   ir=ModbusSequentialDataBlock(1, [0] * 200),
                                   co=ModbusSequentialDataBlock(1, [False] * 16),
                                   di=ModbusSequentialDataBlock(1, [False] * 16))

    def context() -> ModbusServerContext:
        if devices == 0:
            return ModbusServerContext(devices=device(), single=True)
        return ModbusServerContext(devices={uid: device() for uid in range(1, devices + 1)},
                                   single=False)

    async def main() -> None:
        servers = [ModbusTcpServer(context(), address=("127.0.0.1", port + offset))
                   for offset in range(count)]
        for server in servers:
            await server.serve_forever(background=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
        for server in servers:
            await server.shutdown()

    asyncio.run(main())


if __name__ == "__main__":
    args = docopt(__doc__)
    try:
        port, count, devices = int(args["PORT"]), int(args["COUNT"]), int(args["UNITS"] or 0)
    except ValueError as exc:
        raise SystemExit(f"ref_server.py: {exc}") from None
    if args["pymodbustcp"]:
        serve_pymodbustcp(port, count)
    else:
        serve_pymodbus(port, count, devices)
