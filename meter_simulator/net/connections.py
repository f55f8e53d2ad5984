"""Connection threads of a threaded TCP server: started named (leak checks find them), known
until a stop has joined them, and shut down and joined together on stop."""
from __future__ import annotations

import socket
import threading


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

