"""Metrics: the simulator's own counters in the Prometheus text format, read at scrape time.

A custom collector for prometheus_client: nothing on the Modbus request path calls
into the library. Connections count their requests in dicts of their own
(modbus/mbap.py), the updater its ticks, the control core its faults; a scrape sums
them and copies the meters' totals and rates, and the sites' balances, under the updater's
lock once each.
Label sets are bounded by the configuration: no client address, register address
or fault id; per-meter gauges only up to PER_METER_LIMIT meters, per-site ones up to as many
sites.
"""
from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ..device.control import Control
from ..device.faults import FAULT_TYPES
from ..device.updater import TICK_BUCKETS_S
from ..modbus.mbap import EXCEPTION_KEY, RESULT_EXCEPTION, RESULT_FAULT
from ..modbus.pdu import SUPPORTED_FUNCTIONS
from ..modbus.rtu import FRAME_KEY, FRAME_RESULTS
from ..modbus.server import MeterServer

# the text format 0.0.4, which the library's newer releases no longer make their default
# (releases without the name: their latest is 0.0.4)
CONTENT_TYPE = getattr(prometheus_client, "CONTENT_TYPE_PLAIN_0_0_4", prometheus_client.CONTENT_TYPE_LATEST)
PER_METER_LIMIT = 1000
RESULTS = {0: "ok", RESULT_EXCEPTION: "exception", RESULT_FAULT: "fault"}
PREFIX = "meter_simulator_"
SITE_FLOWS = ("load", "pv_dc", "pv_ac", "battery", "inverter", "grid")  # a Balance's <flow>_w


class SimulatorCollector:
    """Reads a run's counters when Prometheus (or anyone) scrapes /metrics."""

    def __init__(self, server: MeterServer, control: Control, http=None) -> None:
        self.server = server
        self.control = control
        self.http = http  # web.ControlServer: the control port's own refusals

    def collect(self):
        services = self.server.services
        requests, exceptions, frames = self.request_counts()
        family = CounterMetricFamily(PREFIX + "modbus_requests", "Modbus requests answered or faulted",
                                     labels=("function", "result"))
        for labels, value in sorted(requests.items()):
            family.add_metric(labels, value)
        yield family
        family = CounterMetricFamily(PREFIX + "modbus_exceptions",
                                     "Modbus exception answers sent, injected ones included",
                                     labels=("code",))
        for code, value in sorted(exceptions.items(), key=lambda item: int(item[0])):
            family.add_metric((code,), value)
        yield family
        if frames:
            family = CounterMetricFamily(PREFIX + "rtu_frames", "RTU frames received, by what they were",
                                         labels=("face", "result"))
            for labels, value in frames.items():
                family.add_metric(labels, value)
            yield family
        family = CounterMetricFamily(PREFIX + "faults_applied", "Times a fault acted", labels=("type",))
        applied = self.control.applied_counts()
        for kind in FAULT_TYPES:
            family.add_metric((kind,), applied[kind])
        yield family
        yield GaugeMetricFamily(PREFIX + "connections_open", "Modbus/TCP connections open now",
                                value=sum(service.clients for service in services))
        yield CounterMetricFamily(PREFIX + "connections_accepted", "Modbus/TCP connections accepted",
                                  value=sum(service.accepted for service in services))
        family = CounterMetricFamily(PREFIX + "connections_refused",
                                     "Modbus/TCP connections closed at accept", labels=("reason",))
        for reason in ("max_clients", "allow"):
            family.add_metric((reason,), sum(service.refused[reason] for service in services))
        yield family
        yield from self.tick_metrics()
        yield from self.control_port_metrics()
        yield from self.meter_metrics()
        yield from self.site_metrics()
        yield GaugeMetricFamily(PREFIX + "uptime_seconds", "Seconds since start",
                                value=self.control.uptime_s())

    def request_counts(self) -> tuple[dict, dict, dict]:
        """Every face's counts summed: requests by (function, result), exceptions by code, and RTU
        frames by (face, result), with every pair of the faces the run has (zeros included)."""
        requests: dict[tuple[str, str], int] = {}
        exceptions: dict[str, int] = {}
        frames: dict[tuple[str, str], int] = {}
        faces = [("tcp", service) for service in self.server.services]
        if self.server.framing == "rtu":
            frames.update((("tcp", result), 0) for result in FRAME_RESULTS)
        if self.server.line is not None:
            faces.append(("serial", self.server.line))
            frames.update((("serial", result), 0) for result in FRAME_RESULTS)
        for face, source in faces:
            for key, value in source.request_counts().items():
                if key >= FRAME_KEY:
                    label = (face, FRAME_RESULTS[key - FRAME_KEY])
                    frames[label] = frames.get(label, 0) + value
                elif key >= EXCEPTION_KEY:
                    code = str(key - EXCEPTION_KEY)
                    exceptions[code] = exceptions.get(code, 0) + value
                else:
                    function_code, result = key >> 2, key & 3
                    label = (str(function_code) if function_code in SUPPORTED_FUNCTIONS else "other",
                             RESULTS[result])
                    requests[label] = requests.get(label, 0) + value
        return requests, exceptions, frames

    def tick_metrics(self):
        """Ticks, how long they took and how late the last one started."""
        updater = self.server.updater
        yield CounterMetricFamily(PREFIX + "ticks", "Ticks since start", value=updater.ticks)
        times = updater.tick_seconds
        counts, sum_s = list(times.counts), times.sum_s
        buckets, running = [], 0
        for bound, count in zip((*TICK_BUCKETS_S, float("inf")), counts):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        yield HistogramMetricFamily(PREFIX + "tick_duration_seconds", "How long ticks took",
                                    buckets=buckets, sum_value=sum_s)
        yield GaugeMetricFamily(PREFIX + "tick_lag_seconds", "How late the last tick started",
                                value=updater.lag_s)

    def control_port_metrics(self):
        """The control port's refused connections and late requests (never counted with Modbus's)."""
        if self.http is None:
            return
        family = CounterMetricFamily(PREFIX + "control_connections_refused",
                                     "Control port connections closed unserved", labels=("reason",))
        for reason, value in self.http.refused.items():
            family.add_metric((reason,), value)
        yield family
        yield CounterMetricFamily(PREFIX + "control_requests_timed_out",
                                  "Control port requests that did not arrive whole in time",
                                  value=self.http.late)

    def meter_metrics(self):
        rows = self.control.snapshot()
        states: dict[tuple[str, str], int] = {}
        for _, kind, online, _, _ in rows:
            key = (kind, "online" if online else "offline")
            states[key] = states.get(key, 0) + 1
        kinds = sorted({kind for _, kind, _, _, _ in rows})
        family = GaugeMetricFamily(PREFIX + "meters", "Meters served", labels=("type", "state"))
        for kind in kinds:
            for state in ("online", "offline"):
                family.add_metric((kind, state), states.get((kind, state), 0))
        yield family
        if len(rows) <= PER_METER_LIMIT:
            total = GaugeMetricFamily(PREFIX + "meter_total", "A meter's total, kWh or m3",
                                      labels=("meter", "type"))
            rate = GaugeMetricFamily(PREFIX + "meter_rate", "A meter's rate, W or L/min",
                                     labels=("meter", "type"))
            for meter, kind, _, meter_total, meter_rate in rows:
                total.add_metric((meter.id, kind), meter_total)
                rate.add_metric((meter.id, kind), meter_rate)
            yield total
            yield rate
        fleet_total = GaugeMetricFamily(PREFIX + "fleet_total", "Sum of the meters' totals, kWh or m3",
                                        labels=("type",))
        fleet_rate = GaugeMetricFamily(PREFIX + "fleet_rate", "Sum of the meters' rates, W or L/min",
                                       labels=("type",))
        for kind in kinds:
            fleet_total.add_metric((kind,), sum(row[3] for row in rows if row[1] == kind))
            fleet_rate.add_metric((kind,), sum(row[4] for row in rows if row[1] == kind))
        yield fleet_total
        yield fleet_rate

    def site_metrics(self):
        """A site's flows, state of charge and inverter state of the latest tick, for runs of at
        most PER_METER_LIMIT sites (none without --site)."""
        sites = self.control.sites
        if not sites.by_port or len(sites.by_port) > PER_METER_LIMIT:
            return
        balances = sites.balances()
        power = GaugeMetricFamily(PREFIX + "site_power_watts",
                                  "A site's power flows, W: battery + discharging, grid + importing",
                                  labels=("site", "flow"))
        soc = GaugeMetricFamily(PREFIX + "site_soc_percent", "A site's battery state of charge, %",
                                labels=("site",))
        state = GaugeMetricFamily(PREFIX + "site_inverter_state",
                                  "A site's inverter operating state, SunSpec St code", labels=("site",))
        for port, balance in balances:
            site = str(port)
            for flow in SITE_FLOWS:
                power.add_metric((site, flow), getattr(balance, flow + "_w"))
            if balance.has_battery:
                soc.add_metric((site,), balance.soc_pct)
            state.add_metric((site,), balance.state)
        yield power
        if soc.samples:
            yield soc
        yield state


def registry(server: MeterServer, control: Control, http=None) -> CollectorRegistry:
    """A registry of this run alone (never the library's global one: two simulators in one
    process, as a test suite starts them, each have their own)."""
    own = CollectorRegistry(auto_describe=False)
    own.register(SimulatorCollector(server, control, http))
    return own


def exposition(own: CollectorRegistry) -> bytes:
    """The text a scrape gets."""
    return generate_latest(own)
