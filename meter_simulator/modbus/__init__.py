"""Modbus over TCP: the PDU dispatch every framing shares, the write rules, MBAP framing and the
connection loop, the server on pyModbusTCP. Imports model, maps, device and net."""
