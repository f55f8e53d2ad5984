"""GET /metrics and /healthz on the control port (control contract sections 6 and 7), read with
http.client and Prometheus' own text parser: the content type, every metric of the table with its
type and labels, requests counted exactly by the time the client has its answer, connections,
ticks, the per-meter gauges and the fleet sums above 1,000 meters, bounded labels, and health.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import struct
from collections import Counter
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meter_simulator.testing import MeterSimulator
from support import closed_by_server, modbus_exchange, wait_for

HOST = "127.0.0.1"
STILL = 3600  # no tick during a test
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "meter_simulator_"

# contract section 6: (metric, type, labels); a counter's samples carry the name, its family the
# name without _total (as Prometheus' parser names it)
TABLE = [
    ("modbus_requests_total", "counter", {"function", "result"}),
    ("modbus_exceptions_total", "counter", {"code"}),
    ("faults_applied_total", "counter", {"type"}),
    ("connections_open", "gauge", set()),
    ("connections_accepted_total", "counter", set()),
    ("connections_refused_total", "counter", {"reason"}),
    ("ticks_total", "counter", set()),
    ("tick_duration_seconds", "histogram", set()),
    ("tick_lag_seconds", "gauge", set()),
    ("meters", "gauge", {"type", "state"}),
    ("meter_total", "gauge", {"meter", "type"}),
    ("meter_rate", "gauge", {"meter", "type"}),
    ("uptime_seconds", "gauge", set()),
]
LABEL_NAMES = {"function", "result", "code", "type", "reason", "state", "meter", "le"}


def family_name(metric: str, kind: str) -> str:
    return PREFIX + (metric[:-len("_total")] if kind == "counter" else metric)


class Control:
    """A keep-alive HTTP/1.1 connection to the control port (never counted as a Modbus one)."""

    def __init__(self, sim: MeterSimulator, source: str | None = None, token: str | None = None) -> None:
        parts = urlsplit(sim.http_url)
        self.connection = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=10, source_address=(source, 0) if source else None)
        self.token = token

    def request(self, method: str, path: str, body=None, token: str | None = None):
        headers = {}
        if token or self.token:
            headers["Authorization"] = f"Bearer {token or self.token}"
        self.connection.request(method, path, body=None if body is None else json.dumps(body),
                                headers=headers)
        answer = self.connection.getresponse()
        return answer, answer.read()

    def scrape(self) -> dict:
        """{family name: family} of one GET /metrics."""
        answer, body = self.request("GET", "/metrics")
        assert answer.status == 200, body
        assert answer.getheader("Content-Type") == CONTENT_TYPE
        return {family.name: family for family in text_string_to_metric_families(body.decode("utf-8"))}

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def make_sim():
    """Started simulators with the control port and a scraping connection to each."""
    running = []

    def factory(_source: str | None = None, **keywords) -> tuple[MeterSimulator, Control]:
        sim = MeterSimulator(http=True, **keywords).start()
        control = Control(sim, source=_source)
        running.append((sim, control))
        return sim, control

    yield factory
    for sim, control in running:
        control.close()
        sim.stop()


def samples(families: dict, name: str) -> dict[tuple, float]:
    """{sorted label items: value} of one sample name (a counter's name with _total)."""
    found = {}
    for family in families.values():
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(families: dict, name: str, **labels) -> float:
    """One sample's value; 0 when the label set has no sample yet (a counter not yet counted)."""
    return samples(families, PREFIX + name).get(tuple(sorted(labels.items())), 0.0)


def by_label(families: dict, name: str, *names: str) -> dict:
    """{label values: value} of a metric's non-zero samples."""
    return {tuple(dict(labels)[label] for label in names): count
            for labels, count in samples(families, PREFIX + name).items() if count}


# --- raw Modbus: exactly one request each, nothing retried --------------------------------------

def pdu(function: int, *words: int) -> bytes:
    return bytes((function,)) + struct.pack(f">{len(words)}H", *words)


READ_OK = pdu(0x03, 0, 4)
READ_INPUT_OK = pdu(0x04, 0, 4)
READ_PAST_THE_MAP = pdu(0x03, 100, 5)  # registers 100-104: past 101 -> 0x02
DEVICE_ID = bytes((0x2B, 0x0E, 0x01, 0x00))
UNKNOWN_FUNCTIONS = (bytes((0x07,)), bytes((0x64, 0, 0)))  # -> 0x01, function label "other"


def connect(port: int, source: str | None = None) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=10,
                                    source_address=(source, 0) if source else None)


# --- the format ---------------------------------------------------------------------------------

def test_metrics_is_prometheus_text_0_0_4_with_every_metric_of_the_table(make_sim):
    sim, control = make_sim(interval=0.05, count=2, seed=1)
    with connect(sim.port) as sock:
        modbus_exchange(sock, READ_OK)
        modbus_exchange(sock, READ_PAST_THE_MAP)
    wait_for(lambda: value(control.scrape(), "ticks_total") >= 1)
    answer, body = control.request("GET", "/metrics")
    assert answer.status == 200
    assert answer.getheader("Content-Type") == CONTENT_TYPE
    families = {family.name: family for family in text_string_to_metric_families(body.decode("utf-8"))}
    for metric, kind, labels in TABLE:
        name = family_name(metric, kind)
        assert name in families, f"{PREFIX + metric} is missing"
        family = families[name]
        assert family.type == kind, (metric, family.type)
        assert family.samples, f"{PREFIX + metric} has no sample"
        for sample in family.samples:
            if kind == "histogram":
                assert sample.name in {name + "_bucket", name + "_count", name + "_sum"}, sample
                assert set(sample.labels) == ({"le"} if sample.name.endswith("_bucket") else set())
            else:
                assert sample.name == PREFIX + metric, sample
                assert set(sample.labels) == labels, sample
    assert all(name.startswith(PREFIX) for name in families)


def test_head_metrics_has_the_headers_and_no_body(make_sim):
    sim, control = make_sim(interval=STILL)
    answer, body = control.request("HEAD", "/metrics")
    assert answer.status == 200 and body == b""
    assert answer.getheader("Content-Type") == CONTENT_TYPE
    control.scrape()  # the connection is still good


# --- requests and exceptions: exact, as soon as the client has the answer -------------------------

def assert_counts(control: Control, requests: Counter, exceptions: Counter, where: str) -> dict:
    families = control.scrape()
    assert by_label(families, "modbus_requests_total", "function", "result") == dict(requests), where
    assert by_label(families, "modbus_exceptions_total", "code") == dict(exceptions), where
    return families


def test_every_request_is_counted_once_by_the_time_the_client_has_the_answer(make_sim):
    sim, control = make_sim(interval=STILL, seed=3)
    requests: Counter = Counter()
    exceptions: Counter = Counter()
    sock = connect(sim.port)
    try:
        steps = [(READ_OK, "3", None)] * 5 + [(READ_PAST_THE_MAP, "3", 2)] * 3 + \
                [(READ_INPUT_OK, "4", None)] * 2 + [(DEVICE_ID, "43", None)] + \
                [(UNKNOWN_FUNCTIONS[0], "other", 1), (UNKNOWN_FUNCTIONS[1], "other", 1)]
        for index, (request, function, code) in enumerate(steps):
            answer = modbus_exchange(sock, request, transaction_id=index + 1)[3]
            assert bool(answer[0] & 0x80) == (code is not None), (index, answer)
            requests[(function, "ok" if code is None else "exception")] += 1
            if code is not None:
                assert answer[1] == code
                exceptions[(str(code),)] += 1
            assert_counts(control, requests, exceptions, f"after request {index}")

        # a fault's requests: result "fault", an injected exception counted as an exception sent
        with sim.fault("exception", code=6, count=2, functions=[4]):
            for _ in range(2):
                assert modbus_exchange(sock, READ_INPUT_OK)[3] == bytes((0x84, 6))
                requests[("4", "fault")] += 1
                exceptions[("6",)] += 1
                assert_counts(control, requests, exceptions, "an injected exception")
        with sim.fault("delay", delay_ms=20, count=1):
            assert not modbus_exchange(sock, READ_OK)[3][0] & 0x80
            requests[("3", "fault")] += 1
            assert_counts(control, requests, exceptions, "a delayed answer")
        with sim.fault("close", count=1):
            sock.sendall(struct.pack(">HHHB", 99, 0, len(READ_OK) + 1, 1) + READ_OK)
            assert closed_by_server(sock), "the close fault's answer is the FIN"
            requests[("3", "fault")] += 1
            families = assert_counts(control, requests, exceptions, "a closed connection")
    finally:
        sock.close()
    assert value(families, "faults_applied_total", type="exception") == 2
    assert value(families, "faults_applied_total", type="delay") == 1
    assert value(families, "faults_applied_total", type="close") == 1
    assert value(families, "faults_applied_total", type="no_answer") == 0


# --- connections --------------------------------------------------------------------------------

def connections(control: Control) -> tuple[float, float, float, float]:
    families = control.scrape()
    return (value(families, "connections_open"), value(families, "connections_accepted_total"),
            value(families, "connections_refused_total", reason="max_clients"),
            value(families, "connections_refused_total", reason="allow"))


def test_connections_accepted_open_and_refused_at_max_clients(make_sim):
    sim, control = make_sim(max_clients=1, interval=STILL)
    assert connections(control) == (0, 0, 0, 0), "the scraping HTTP connection is not counted"
    first = connect(sim.port)
    try:
        modbus_exchange(first, READ_OK)
        assert connections(control) == (1, 1, 0, 0)
        with connect(sim.port) as second:
            assert closed_by_server(second), "over --max-clients: closed at accept"
        wait_for(lambda: connections(control)[2] == 1)
        assert connections(control) == (1, 1, 1, 0)
    finally:
        first.close()
    wait_for(lambda: connections(control)[0] == 0)
    with connect(sim.port) as third:
        modbus_exchange(third, READ_OK)
        assert connections(control) == (1, 2, 1, 0)


def test_connections_refused_by_allow(make_sim):
    # the scraper comes from 127.0.0.2, the refused Modbus client from 127.0.0.1
    sim, control = make_sim(allow="127.0.0.2/32", interval=STILL, _source="127.0.0.2")
    with connect(sim.port, source="127.0.0.2") as allowed:
        modbus_exchange(allowed, READ_OK)
        with connect(sim.port) as refused:
            assert closed_by_server(refused)
        wait_for(lambda: connections(control)[3] == 1)
        assert connections(control) == (1, 1, 0, 1)


# --- ticks and time -----------------------------------------------------------------------------

def test_ticks_total_the_tick_histogram_and_uptime_grow(make_sim):
    sim, control = make_sim(interval=0.05)
    first = control.scrape()
    later = wait_for(lambda: (families := control.scrape()) and
                     value(families, "ticks_total") >= value(first, "ticks_total") + 3 and families)
    ticks = value(later, "ticks_total")
    name = PREFIX + "tick_duration_seconds"
    count = value(later, "tick_duration_seconds_count")
    assert ticks - 1 <= count <= ticks + 1, (count, ticks)  # a tick may end between the two reads
    buckets = sorted((float(dict(labels)["le"]), v) for labels, v in samples(later, name + "_bucket").items())
    assert buckets[-1][0] == float("inf") and buckets[-1][1] == count
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "cumulative buckets"
    assert value(later, "tick_duration_seconds_sum") >= 0
    assert value(later, "tick_lag_seconds") >= 0
    assert value(later, "uptime_seconds") > value(first, "uptime_seconds")


# --- meters -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("meter_type", "keywords", "total", "rate"), [
    ("electric", {"count": 3}, "energy_import", "power_total"),
    ("water", {"unit_ids": "1-2"}, "volume_total", "flow"),
])
def test_per_meter_gauges_equal_the_readings(make_sim, meter_type, keywords, total, rate):
    sim, control = make_sim(type=meter_type, interval=STILL, seed=8, **keywords)
    for index, meter in enumerate(sim.meter_ids):
        sim.set_total(1000.25 + index * 111.11, meter=meter)
    sim.set(sim.meter_ids[0], **({"power_total": 4321.5} if meter_type == "electric" else {"flow": 12.5}))
    sim.set_online(False, meter=sim.meter_ids[-1])
    families = control.scrape()
    totals = samples(families, PREFIX + "meter_total")
    rates = samples(families, PREFIX + "meter_rate")
    assert len(totals) == len(rates) == len(sim.meter_ids)
    for meter in sim.meter_ids:
        readings = sim.read(meter)
        key = tuple(sorted({"meter": meter, "type": meter_type}.items()))
        assert totals[key] == pytest.approx(readings[total], rel=1e-12, abs=1e-9), meter
        assert rates[key] == pytest.approx(readings[rate], rel=1e-9, abs=1e-9), meter
    count = len(sim.meter_ids)
    assert value(families, "meters", type=meter_type, state="online") == count - 1
    assert value(families, "meters", type=meter_type, state="offline") == 1


@pytest.mark.parametrize(("unit_ids", "per_meter"), [("1-200", True), ("1-201", False)])
def test_above_1000_meters_only_the_fleet_sums(make_sim, unit_ids, per_meter):
    sim, control = make_sim(count=5, unit_ids=unit_ids, interval=STILL, seed=6)
    meters = sim.meter_ids
    assert len(meters) == (1000 if per_meter else 1005)
    sim.set_total(77.5, meter=meters[-1])
    families = control.scrape()
    totals = samples(families, PREFIX + "meter_total")
    assert len(totals) == (len(meters) if per_meter else 0)
    assert len(samples(families, PREFIX + "meter_rate")) == len(totals)
    readings = [sim.read(meter) for meter in meters]
    fleet_total = samples(families, PREFIX + "fleet_total")
    fleet_rate = samples(families, PREFIX + "fleet_rate")
    assert list(fleet_total) == list(fleet_rate) == [(("type", "electric"),)]
    assert fleet_total[(("type", "electric"),)] == pytest.approx(sum(r["energy_import"] for r in readings))
    assert fleet_rate[(("type", "electric"),)] == pytest.approx(sum(r["power_total"] for r in readings))
    assert value(families, "meters", type="electric", state="online") == len(meters)


def test_no_label_carries_a_client_address_a_register_or_a_fault_id(make_sim):
    sim, control = make_sim(unit_ids="1-3", interval=0.05, seed=2)
    sim.fault("freeze", meter=f"{sim.port}-3")
    sim.fault("delay", delay_ms=1, unit_id=2)
    sim.fault("exception", code=4, functions=[1])
    with connect(sim.port) as sock:
        modbus_exchange(sock, READ_OK, unit_id=1)
        modbus_exchange(sock, READ_OK, unit_id=2)
        modbus_exchange(sock, READ_PAST_THE_MAP, unit_id=1)
        modbus_exchange(sock, pdu(0x01, 0, 8), unit_id=1)
        modbus_exchange(sock, READ_OK, unit_id=9)  # not a meter: 0x0B
        families = control.scrape()
    fault_ids = {fault["id"] for fault in sim.faults()}
    assert fault_ids == {"f1", "f2", "f3"}
    seen = set()
    for family in families.values():
        for sample in family.samples:
            assert set(sample.labels) <= LABEL_NAMES, sample
            for label, text in sample.labels.items():
                seen.add(label)
                assert "127.0.0" not in text and "::1" not in text and text not in fault_ids, sample
                if label in ("function", "code"):
                    assert re.fullmatch(r"[0-9]{1,3}|other", text), sample
                if label == "meter":
                    assert text in sim.meter_ids, sample
    assert {"function", "result", "code", "type", "meter"} <= seen


# --- /healthz -----------------------------------------------------------------------------------

def health(control: Control, method: str = "GET", token: str | None = None):
    answer, body = control.request(method, "/healthz", token=token)
    assert answer.getheader("Content-Type") == "application/json"
    return answer.status, (json.loads(body) if body else None)


def test_healthz_is_200_ok_and_head_works_as_get_without_a_body(make_sim):
    sim, control = make_sim(interval=0.05)
    status, document = health(control)
    assert status == 200 and document["status"] == "ok"
    answer, body = control.request("HEAD", "/healthz")
    assert answer.status == 200 and body == b""
    assert int(answer.getheader("Content-Length")) > 0  # the GET's length, without its body
    assert health(control)[0] == 200  # the connection still frames answers right


def test_healthz_needs_no_token_the_metrics_do(make_sim):
    sim, control = make_sim(interval=0.05, http_token="s3cret")
    status, document = health(control)  # no Authorization header
    assert status == 200 and document["status"] == "ok"
    answer, _ = control.request("GET", "/metrics")
    assert answer.status == 401 and answer.getheader("WWW-Authenticate") == "Bearer"
    answer, body = control.request("GET", "/metrics", token="s3cret")
    assert answer.status == 200 and answer.getheader("Content-Type") == CONTENT_TYPE
    assert PREFIX + "ticks_total" in body.decode("utf-8")


def assert_unhealthy(control: Control, words: str) -> None:
    status, document = health(control)
    assert status == 503, document
    assert document["status"] == "unhealthy"
    reasons = document["reasons"]
    assert isinstance(reasons, list) and reasons and all(isinstance(r, str) and r for r in reasons)
    assert any(words in reason for reason in reasons), reasons
    answer, body = control.request("HEAD", "/healthz")
    assert answer.status == 503 and body == b""


def test_healthz_is_503_once_the_updater_has_stopped(make_sim):
    sim, control = make_sim(interval=0.05)
    assert health(control)[0] == 200
    sim._simulator.server.updater.stop()  # white-box: what a dead ticker looks like
    assert_unhealthy(control, "stopped")


def test_healthz_is_503_once_the_updater_has_failed(make_sim, monkeypatch, caplog):
    sim, control = make_sim(interval=0.05)
    updater = sim._simulator.server.updater
    assert health(control)[0] == 200

    def broken_tick():
        raise RuntimeError("a broken tick")

    monkeypatch.setattr(updater, "tick", broken_tick)  # white-box: the next scheduled tick fails
    wait_for(lambda: health(control)[0] == 503)
    assert_unhealthy(control, "failed")
    assert "a broken tick" in caplog.text


@pytest.mark.slow
def test_healthz_is_503_while_the_updaters_lock_is_held_too_long(make_sim):
    sim, control = make_sim(interval=0.05)
    updater = sim._simulator.server.updater
    assert health(control)[0] == 200
    with updater.lock:  # a hung tick: max(2 x 0.05 s, 1 s) passes with the lock held
        status, document = health(control)
    assert status == 503 and document["reasons"], document
    wait_for(lambda: health(control)[0] == 200)  # healthy again once ticks run
