"""The control port's HTTP server alone (web.py), with an application of the test's own: the idle
timeout, a bug in the application answered 500 and logged, and stop ending kept-alive connections."""
from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time

import pytest

from meter_simulator.api import Api
from meter_simulator.web import ControlServer, Request, json_answer
from support import closed_by_server


def serve(application, **options) -> ControlServer:
    server = ControlServer("127.0.0.1", 0, application, **options)
    server.start()
    return server


def echo(request: Request):
    return json_answer(200, {"method": request.method, "target": request.target,
                             "body": request.body.decode()})


def test_an_idle_connection_is_closed_after_the_idle_timeout():
    server = serve(echo, idle_timeout_s=0.3)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
            started = time.monotonic()
            assert closed_by_server(silent, timeout=5)
            assert 0.25 <= time.monotonic() - started < 3.0
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("POST", "/x", body=b"{}")
        answer = connection.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["body"] == "{}"
        connection.close()
    finally:
        server.stop()


def test_a_bug_in_the_application_answers_500_logs_it_and_serving_goes_on(caplog):
    class Broken(Api):
        def route(self, request):
            if request.target == "/boom":
                raise RuntimeError("bug")
            return super().route(request)

    class NoControl:
        meters = []

    server = serve(Broken(NoControl()))
    try:
        with caplog.at_level(logging.ERROR, logger="meter_simulator"):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            connection.request("GET", "/boom")
            answer = connection.getresponse()
            assert answer.status == 500
            assert answer.getheader("Content-Type") == "application/json"
            assert json.loads(answer.read()) == {"error": "internal error: RuntimeError"}
            connection.request("GET", "/nowhere")  # the same connection still serves
            answer = connection.getresponse()
            assert answer.status == 404 and json.loads(answer.read()) == {"error": "no such path: /nowhere"}
            connection.close()
        assert any("error answering GET /boom" in record.getMessage() and record.exc_info
                   for record in caplog.records)
    finally:
        server.stop()


@pytest.mark.parametrize("connections", [1, 5])
def test_stop_ends_kept_alive_connections_and_joins_their_threads(connections):
    before = set(threading.enumerate())
    server = serve(echo)
    clients = []
    for _ in range(connections):
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        client.request("GET", "/")
        client.getresponse().read()
        clients.append(client)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2.0
    assert set(threading.enumerate()) == before
    for client in clients:
        client.close()
