"""A first end-to-end read through pyModbusTCP's client."""
from pyModbusTCP.client import ModbusClient

from support import u32


def test_electric_meter_answers_a_read(shared_servers):
    server = shared_servers["electric"]
    assert server.updater.wait_ticks(2, timeout=10)
    client = ModbusClient(host="127.0.0.1", port=server.port, timeout=5)
    try:
        regs = client.read_holding_registers(0, 102)
        assert regs is not None and len(regs) == 102
        assert regs[101] == 0 and regs[100] == 1
        assert 2070 <= regs[10] <= 2530
        assert u32(regs[2:4]) > 0
    finally:
        client.close()
