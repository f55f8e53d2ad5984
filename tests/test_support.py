"""The test helpers themselves: a port drawn free and taken before the program binds it."""

import socket
from contextlib import closing

from support import MeterProcess, accepts


def bound_port() -> socket.socket:
    """A socket holding a loopback port, bound and not listening (no connect reaches it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def test_a_port_taken_after_it_was_drawn_is_drawn_again():
    """Another suite running beside this one may bind a drawn port first; the helper starts the
    program on other free ports instead of failing the test."""
    with closing(bound_port()) as taken:
        program = MeterProcess("--count", "2", "--interval", "3600")
        program.port = taken.getsockname()[1]  # as if somebody bound it after it was drawn
        with program:
            assert program.port != taken.getsockname()[1]
            assert accepts("127.0.0.1", program.port) and accepts("127.0.0.1", program.port + 1)


def test_a_port_the_test_chose_itself_is_not_changed():
    with closing(bound_port()) as taken:
        port = taken.getsockname()[1]
        try:
            MeterProcess(port=port).start()
        except AssertionError as error:
            assert "Address already in use" in str(error)
        else:
            raise AssertionError("the program served on a port in use")
