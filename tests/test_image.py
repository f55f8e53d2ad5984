"""Image: the encoded registers and bits of one tick, and the read answers cut from it (pure)."""
from __future__ import annotations

import random
import struct

import pytest

from meter_simulator.maps.image import Image, quantity_ok, read_request


def pack_bits(bits) -> bytes:
    data = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            data[i // 8] |= 1 << (i % 8)
    return bytes(data)


@pytest.fixture
def image() -> Image:
    rng = random.Random(4)
    return Image.of([rng.randrange(65536) for _ in range(102)], [rng.random() < 0.5 for _ in range(11)])


def test_registers_are_big_endian_words_in_address_order():
    image = Image.of([0x0102, 0xFFFF, 0], [True, False])
    assert image.holding == image.input == ((0, 3, bytes([1, 2, 0xFF, 0xFF, 0, 0])),)
    assert image.bits == (True, False)


def test_an_image_cannot_change():
    image = Image.of([1], [True])
    with pytest.raises(AttributeError):
        image.holding = ((0, 1, b"\0\0"),)


@pytest.mark.parametrize("function_code", [0x03, 0x04])
def test_a_register_read_is_a_slice_of_the_image(image, function_code):
    words = list(struct.unpack(">102H", image.holding[0][2]))
    for address in range(102):
        for quantity in range(1, min(125, 102 - address) + 1):
            answer = image.read_answer(function_code, address, quantity)
            assert answer[:2] == bytes([function_code, 2 * quantity])
            assert list(struct.unpack(f">{quantity}H", answer[2:])) == words[address:address + quantity]
            assert image.words(address, quantity) == words[address:address + quantity]


@pytest.mark.parametrize("function_code", [0x01, 0x02])
def test_a_bit_read_packs_the_bits_low_bit_first(image, function_code):
    for address in range(11):
        for quantity in range(1, 11 - address + 1):
            bits = list(image.bits[address:address + quantity])
            answer = image.read_answer(function_code, address, quantity)
            assert answer == bytes([function_code, (quantity + 7) // 8]) + pack_bits(bits)
            assert image.bit_list(address, quantity) == bits


@pytest.mark.parametrize("function_code, address, quantity", [
    (0x03, 0, 103), (0x03, 101, 2), (0x04, 102, 1), (0x03, 65535, 125),
    (0x01, 0, 12), (0x01, 10, 2), (0x02, 11, 1), (0x02, 65535, 2000),
])
def test_a_read_past_the_map_has_no_answer(image, function_code, address, quantity):
    assert image.read_answer(function_code, address, quantity) is None
    getter = image.words if function_code >= 0x03 else image.bit_list
    assert getter(address, quantity) is None


@pytest.mark.parametrize("function_code, quantity, ok", [
    (0x03, 0, False), (0x03, 1, True), (0x03, 125, True), (0x03, 126, False),
    (0x04, 125, True), (0x04, 126, False),
    (0x01, 0, False), (0x01, 2000, True), (0x01, 2001, False), (0x02, 2000, True), (0x02, 2001, False),
])
def test_the_modbus_quantity_limits(function_code, quantity, ok):
    assert quantity_ok(function_code, quantity) is ok


def test_read_request_fields():
    assert read_request(bytes([0x03, 0x00, 0x64, 0x00, 0x02])) == (0x03, 100, 2)
