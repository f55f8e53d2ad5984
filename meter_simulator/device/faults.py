"""Faults: what a test asks to go wrong, checked whole, and which Modbus requests each one hits.

A request fault (delay, no_answer, close, reset, exception, corrupt) acts on Modbus
requests in its scope, as the Modbus connection loop sees them (and applies it);
a meter fault (freeze, offline) changes what meters publish (control.py applies it).
Each fault draws from its own random generator, seeded from the run's seed and the
fault's id, so one client sending one request at a time sees the same hits every run.
A fault ends after count hits or duration_s, whichever comes first, or when deleted.
At most MAX_FAULTS are active at once.
"""
from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import attrgetter

from ..checks import is_finite_number

REQUEST_FAULTS = ("delay", "no_answer", "close", "reset", "exception", "corrupt")
METER_FAULTS = ("freeze", "offline")
FAULT_TYPES = REQUEST_FAULTS + METER_FAULTS
CORRUPT_MODES = ("transaction_id", "length", "truncate")
MAX_DELAY_MS = 60000
# active faults a run keeps: each is looked at by every request of its ports, and a run that
# creates faults without ending them should hear so rather than slow down
MAX_FAULTS = 1000
COMMON_KEYS = frozenset({"type", "scope", "functions", "probability", "count", "duration_s"})
PARAMETERS = {"delay": {"delay_ms"}, "no_answer": {"delay_ms"}, "close": {"delay_ms"},
              "reset": {"delay_ms"}, "exception": {"delay_ms", "code"},
              "corrupt": {"delay_ms", "mode"}, "freeze": set(), "offline": set()}
SCOPE_KEYS = frozenset({"port", "unit_id", "meter"})


@dataclass(frozen=True)
class Face:
    """Where a request arrives: kind "tcp" (a TCP port, whatever its framing) or "serial" (the
    serial line), and the framing it speaks there, "mbap" or "rtu"."""

    kind: str
    framing: str


MBAP_TCP = Face("tcp", "mbap")
RTU_TCP = Face("tcp", "rtu")
RTU_SERIAL = Face("serial", "rtu")


class FaultError(ValueError):
    """A fault that cannot be made: the message is one line (HTTP 400)."""


class FaultLimitError(FaultError):
    """MAX_FAULTS are active: a new one must wait until some end (HTTP 409)."""


class UnknownError(KeyError):
    """A port, unit id, meter or fault that does not exist (HTTP 404); str() is the message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class Scope:
    """Which meters and requests a fault covers: every field None is everything."""

    port: int | None = None
    unit_id: int | None = None  # a meter's unit id in gateway mode, else the requests' unit id

    def as_dict(self) -> dict:
        return {name: value for name, value in (("port", self.port), ("unit_id", self.unit_id))
                if value is not None}

    def covers(self, port: int, unit_id: int | None) -> bool:
        """True for the meter on port (unit_id: its unit id in gateway mode, else None)."""
        if self.port is not None and port != self.port:
            return False
        return self.unit_id is None or unit_id is None or unit_id == self.unit_id


@dataclass
class ActiveFault:
    """One active fault and its bookkeeping; the table's lock guards remaining and applied."""

    id: str
    type: str
    scope: Scope
    sequence: int = 0  # creation order, the n of its id fn: the older of two faults acts first
    parameters: dict = field(default_factory=dict)  # delay_ms, code, mode
    functions: frozenset | None = None  # function codes it applies to, None: every one
    probability: float = 1.0
    count: int | None = None
    duration_s: float | None = None
    created_s: float = 0.0  # on the table's clock
    rng: random.Random | None = None
    remaining: int | None = None
    applied: int = 0

    @property
    def is_request_fault(self) -> bool:
        return self.type in REQUEST_FAULTS

    @property
    def delay_s(self) -> float:
        return self.parameters.get("delay_ms", 0) / 1000.0

    @property
    def expires_s(self) -> float | None:
        return None if self.duration_s is None else self.created_s + self.duration_s

    def as_dict(self, now_s: float) -> dict:
        """The fault as the API shows it."""
        expires = self.expires_s
        return {"id": self.id, "type": self.type, **self.parameters, "scope": self.scope.as_dict(),
                "functions": sorted(self.functions) if self.functions is not None else None,
                "probability": self.probability, "count": self.count, "remaining": self.remaining,
                "duration_s": self.duration_s,
                "expires_in_s": None if expires is None else round(max(expires - now_s, 0.0), 3),
                "applied": self.applied}

    def describe(self) -> str:
        """A few words for the log: 'delay 500 ms on port 5020'."""
        words = [self.type.replace("_", " ")]
        if self.type == "exception":
            words.append(f"0x{self.parameters['code']:02X}")
        if self.type == "corrupt":
            words.append(self.parameters["mode"].replace("_", " "))
        if self.parameters.get("delay_ms"):
            words.append(f"{self.parameters['delay_ms']} ms" if self.type == "delay"
                         else f"after {self.parameters['delay_ms']} ms")
        if self.scope.port is not None and self.scope.unit_id is not None:
            words.append(f"on {self.scope.port}-{self.scope.unit_id}")
        elif self.scope.port is not None:
            words.append(f"on port {self.scope.port}")
        elif self.scope.unit_id is not None:
            words.append(f"on unit id {self.scope.unit_id}")
        else:
            words.append("on every meter")
        return " ".join(words)


def oldest_first(own: Iterable[ActiveFault], shared: Iterable[ActiveFault]) -> Iterator[ActiveFault]:
    """Two lists of faults, each oldest first (a port's own and every port's), as one."""
    return heapq.merge(own, shared, key=attrgetter("sequence"))


def whole(spec: Mapping, name: str, low: int, high: int) -> int:
    """spec[name] as a whole number in low..high; FaultError otherwise."""
    value = spec[name]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FaultError(f"{name} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise FaultError(f"{name} must be from {low} to {high}, not {value}")
    return value


class Topology:
    """The ports a run serves and, in gateway mode, their unit ids: what a scope may name."""

    def __init__(self, ports: Mapping[int, frozenset | None]) -> None:
        self.ports = dict(ports)  # port -> the unit ids of its meters (gateway), or None
        self.gateway = any(ids is not None for ids in self.ports.values())

    def scope(self, value) -> Scope:
        """The checked scope of a fault: FaultError for a bad shape, UnknownError for a port,
        unit id or meter the run does not serve."""
        if value is None:
            return Scope()
        if not isinstance(value, dict):
            raise FaultError(f"scope must be an object, not {value!r}")
        unknown = sorted(set(value) - SCOPE_KEYS)
        if unknown:
            raise FaultError(f"unknown scope key {unknown[0]!r}: give port, unit_id or meter")
        if "meter" in value:
            if set(value) != {"meter"}:
                raise FaultError("scope meter stands alone, without port or unit_id")
            return self.meter_scope(value["meter"])
        port = whole(value, "port", 1, 65535) if "port" in value else None
        unit_id = whole(value, "unit_id", 0, 255) if "unit_id" in value else None
        if port is not None and port not in self.ports:
            raise UnknownError(f"port {port} is not served")
        if unit_id is not None and self.gateway:
            ports = [port] if port is not None else list(self.ports)
            if not any(unit_id in (self.ports[p] or ()) for p in ports):
                where = f"port {port}" if port is not None else "any port"
                raise UnknownError(f"unit id {unit_id} is not a meter on {where}")
        return Scope(port, unit_id)

    def meter_scope(self, meter) -> Scope:
        """The scope of one meter by its id: "5020", or "5020-7" in gateway mode."""
        if not isinstance(meter, str):
            raise FaultError(f"scope meter must be a meter id like \"5020\", not {meter!r}")
        port_text, _, unit_text = meter.partition("-")
        try:
            port = int(port_text)
            unit_id = int(unit_text) if unit_text else None
        except ValueError:
            raise UnknownError(f"no meter {meter!r}") from None
        ids = self.ports.get(port, False)
        if ids is False or (ids is None) != (unit_id is None) or (ids is not None and unit_id not in ids):
            raise UnknownError(f"no meter {meter!r}")
        return Scope(port, unit_id)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def fault_fields(spec, topology: Topology) -> dict:
    """The fields of a new fault from a request body, checked whole; FaultError (400) or
    UnknownError (404) naming the first problem."""
    if not isinstance(spec, dict):
        raise FaultError("a fault must be a JSON object")
    kind = spec.get("type")
    if kind not in FAULT_TYPES:
        raise FaultError(f"type must be one of {', '.join(FAULT_TYPES)}, not {kind!r}")
    unknown = sorted(set(spec) - COMMON_KEYS - PARAMETERS[kind])
    if unknown:
        raise FaultError(f"unknown key {unknown[0]!r} for {article(kind)} {kind} fault")
    parameters: dict = {}
    if kind == "delay":
        if "delay_ms" not in spec:
            raise FaultError("a delay fault needs delay_ms (1 to 60000)")
        parameters["delay_ms"] = whole(spec, "delay_ms", 1, MAX_DELAY_MS)
    elif kind in REQUEST_FAULTS:
        parameters["delay_ms"] = whole(spec, "delay_ms", 0, MAX_DELAY_MS) if "delay_ms" in spec else 0
    if kind == "exception":
        if "code" not in spec:
            raise FaultError("an exception fault needs code (1 to 255)")
        parameters["code"] = whole(spec, "code", 1, 255)
    if kind == "corrupt":
        mode = spec.get("mode")
        if mode not in CORRUPT_MODES:
            raise FaultError(f"mode must be one of {', '.join(CORRUPT_MODES)}, not {mode!r}")
        parameters["mode"] = mode
    if kind in METER_FAULTS:
        for name in ("probability", "count", "functions"):
            if spec.get(name) is not None:
                raise FaultError(f"{article(kind)} {kind} fault takes duration_s only, not {name}")
    functions = None
    if spec.get("functions") is not None:
        codes = spec["functions"]
        if not isinstance(codes, list) or not codes:
            raise FaultError(f"functions must be a list of function codes, not {codes!r}")
        functions = frozenset(whole({"functions": code}, "functions", 1, 255) for code in codes)
    probability = 1.0
    if spec.get("probability") is not None:
        probability = spec["probability"]
        if not is_finite_number(probability) or not 0.0 < probability <= 1.0:
            raise FaultError(f"probability must be a number above 0 and at most 1, not {probability!r}")
        probability = float(probability)
    count = whole(spec, "count", 1, 2**31 - 1) if spec.get("count") is not None else None
    duration_s = None
    if spec.get("duration_s") is not None:
        duration_s = spec["duration_s"]
        if not is_finite_number(duration_s) or not 0.0 < duration_s <= 1e9:
            raise FaultError(f"duration_s must be a number of seconds above 0, not {duration_s!r}")
        duration_s = float(duration_s)
    scope = topology.scope(spec.get("scope"))
    if kind in METER_FAULTS and scope.unit_id is not None and not topology.gateway:
        # Scope.covers lets a unit id through for a meter without one: it would hit every meter
        raise FaultError(f"{article(kind)} {kind} fault outside gateway mode cannot be scoped by unit_id: "
                         "every meter answers every unit id; scope it by port or meter")
    return {"type": kind, "scope": scope, "parameters": parameters, "functions": functions,
            "probability": probability, "count": count, "duration_s": duration_s}


def fault_rng(seed: int | None, fault_id: str) -> random.Random:
    """A fault's own generator: reproducible from the run's seed and the fault id."""
    return random.Random(f"{seed}/{fault_id}") if seed is not None else random.Random()


def hits(fault: ActiveFault, unit_id: int, function_code: int) -> bool:
    """True when fault acts on a request with this unit id and function code (the caller holds
    the table's lock and has checked the port and the expiry): scope, functions, probability;
    a hit is counted and uses up one of count."""
    if fault.scope.unit_id is not None and unit_id != fault.scope.unit_id:
        return False
    if fault.functions is not None and function_code not in fault.functions:
        return False
    if fault.probability < 1.0 and fault.rng.random() >= fault.probability:
        return False
    fault.applied += 1
    if fault.remaining is not None:
        fault.remaining -= 1
    return True
