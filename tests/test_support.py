"""The test helpers themselves: a port drawn free and taken before the program binds it."""

import socket
from contextlib import closing

from support import MeterProcess, accepts, free_ports


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


def test_a_fleet_whose_last_port_is_taken_is_started_again_on_other_ports():
    """The fleet binds its first ports before it exits on the taken one; the helper waits for
    every port to accept, so it sees the exit and draws other ports."""
    first = free_ports(3)
    with closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", first + 2))
        program = MeterProcess("--count", "3", "--interval", "3600")
        program.port = first  # as if somebody bound the third port after it was drawn
        with program:
            assert program.port != first
            assert all(accepts("127.0.0.1", program.port + offset) for offset in range(3))


def test_a_port_the_test_chose_itself_is_not_changed():
    with closing(bound_port()) as taken:
        port = taken.getsockname()[1]
        try:
            MeterProcess(port=port).start()
        except AssertionError as error:
            assert str(error) == (f"program exited 1: meter-simulator: cannot serve on 127.0.0.1:{port}: "
                                  "Address already in use\n")
        else:
            raise AssertionError("the program served on a port in use")
