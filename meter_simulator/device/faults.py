"""Faults: what a test asks to go wrong, checked whole, and which Modbus requests each one hits.

A request fault (delay, no_answer, close, reset, exception, corrupt) acts on Modbus
requests in its scope, as the Modbus connection loop sees them (and applies it);
a meter fault (freeze, offline) changes what meters publish (control.py applies it).
Each fault draws from its own random generator, seeded from the run's seed and the
fault's id, so one client sending one request at a time sees the same hits every run.
A fault ends after count hits or duration_s, whichever comes first, or when deleted.
At most MAX_FAULTS are active at once.

A request arrives on a face: a TCP port (Modbus/TCP or RTU over TCP) or the serial line.
Some request faults break what only some faces have (a connection, a CRC, an MBAP header);
a request on a face where a fault does not act is outside it, as if out of its scope.
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
CORRUPT_MODES = ("transaction_id", "length", "truncate", "crc")
MAX_DELAY_MS = 60000
# active faults a run keeps: each is looked at by every request of its ports, and a run that
# creates faults without ending them should hear so rather than slow down
MAX_FAULTS = 1000
COMMON_KEYS = frozenset({"type", "scope", "functions", "probability", "count", "duration_s"})
PARAMETERS = {"delay": {"delay_ms"}, "no_answer": {"delay_ms"}, "close": {"delay_ms"},
              "reset": {"delay_ms"}, "exception": {"delay_ms", "code"},
              "corrupt": {"delay_ms", "mode"}, "freeze": set(), "offline": set()}
SCOPE_KEYS = frozenset({"port", "unit_id", "meter", "face"})
FACE_KINDS = ("tcp", "serial")
CONNECTION_FAULTS = ("close", "reset")  # a serial line has no connection to close or reset
# corrupt modes that break a field only one framing has: its CRC, or its MBAP header
FRAMING_OF_MODE = {"crc": "rtu", "transaction_id": "mbap", "length": "mbap"}


class FaultError(ValueError):
    """A fault that cannot be made: the message is one line (HTTP 400)."""


class FaultLimitError(FaultError):
    """MAX_FAULTS are active: a new one must wait until some end (HTTP 409)."""


class UnknownError(KeyError):
    """A port, unit id, meter or fault that does not exist (HTTP 404); str() is the message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Face:
    """Where a request arrives: kind "tcp" (a TCP port, whatever its framing) or "serial" (the
    serial line), and the framing it speaks there, "mbap" or "rtu"."""

    kind: str
    framing: str


MBAP_TCP = Face("tcp", "mbap")
RTU_TCP = Face("tcp", "rtu")
RTU_SERIAL = Face("serial", "rtu")


@dataclass
class Scope:
    """Which meters and requests a fault covers: every field None is everything."""

    port: int | None = None
    unit_id: int | None = None  # a meter's unit id in gateway mode, else the requests' unit id
    face: str | None = None  # a face kind: "tcp" or "serial"

    def as_dict(self) -> dict:
        return {name: value for name, value in (("port", self.port), ("unit_id", self.unit_id),
                                                ("face", self.face)) if value is not None}

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
        if self.scope.face is not None:
            words.append(f"({self.scope.face})")
        return " ".join(words)


def effect_acts_on(kind: str, mode: str | None, face: Face) -> bool:
    """True when a request fault of this type (and corrupt mode) has an effect on face."""
    if kind in CONNECTION_FAULTS:
        return face.kind != "serial"
    framing = FRAMING_OF_MODE.get(mode) if kind == "corrupt" else None
    return framing is None or framing == face.framing


def acts_on(fault: ActiveFault, face: Face) -> bool:
    """True when a request on face may be hit by fault: its scope's face and its effect allow it
    (a meter fault acts on its meter, so on every face)."""
    if fault.scope.face is not None and fault.scope.face != face.kind:
        return False
    return effect_acts_on(fault.type, fault.parameters.get("mode"), face)


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
    """The ports a run serves and, in gateway mode, their unit ids, what every TCP port speaks
    and which port's meters the serial line serves: what a scope may name, and its faces."""

    def __init__(self, ports: Mapping[int, frozenset | None], framing: str = "tcp",
                 serial_port: int | None = None) -> None:
        if framing not in ("tcp", "rtu"):
            raise ValueError(f"framing must be tcp or rtu, not {framing!r}")
        self.ports = dict(ports)  # port -> the unit ids of its meters (gateway), or None
        self.gateway = any(ids is not None for ids in self.ports.values())
        self.framing = framing  # every TCP port's: "tcp" (MBAP) or "rtu"
        if serial_port is not None and serial_port not in self.ports:
            raise ValueError(f"the serial line's port {serial_port} is not served")
        self.serial_port = serial_port  # None: the run has no serial line

    def with_serial_port(self, serial_port: int | None) -> Topology:
        """The same run with the serial line serving serial_port's meters (None: no serial line)."""
        return Topology(self.ports, self.framing, serial_port)

    def covers(self, scope: Scope, port: int, unit_id: int | None) -> bool:
        """True when scope covers the meter on port (unit_id as for Scope.covers) on some face."""
        if scope.face == "serial" and port != self.serial_port:
            return False
        return scope.covers(port, unit_id)

    def faces(self, scope: Scope | None = None) -> list[Face]:
        """The faces a scope covers (None: every face of the run)."""
        scope = scope or Scope()
        covered = []
        if scope.face != "serial":
            covered.append(RTU_TCP if self.framing == "rtu" else MBAP_TCP)
        if self.serial_port is not None and scope.face != "tcp" and scope.port in (None, self.serial_port):
            covered.append(RTU_SERIAL)
        return covered

    def scope(self, value) -> Scope:
        """The checked scope of a fault: FaultError for a bad shape, UnknownError for a port,
        unit id, meter or serial line the run does not serve."""
        if value is None:
            return Scope()
        if not isinstance(value, dict):
            raise FaultError(f"scope must be an object, not {value!r}")
        unknown = sorted(set(value) - SCOPE_KEYS)
        if unknown:
            raise FaultError(f"unknown scope key {unknown[0]!r}: give port, unit_id, meter or face")
        face = value.get("face")  # null is no face, as null is no port or unit id
        if "face" in value and face not in FACE_KINDS:
            raise FaultError(f"scope face must be tcp or serial, not {face!r}")
        if "meter" in value:
            if set(value) - {"face"} != {"meter"}:
                raise FaultError("scope meter stands alone, without port or unit_id")
            meter = self.meter_scope(value["meter"])
            port, unit_id = meter.port, meter.unit_id
        else:
            port = whole(value, "port", 1, 65535) if "port" in value else None
            unit_id = whole(value, "unit_id", 0, 255) if "unit_id" in value else None
            if port is not None and port not in self.ports:
                raise UnknownError(f"port {port} is not served")
        if face == "serial":
            if self.serial_port is None:
                raise UnknownError("this run has no serial line")
            if port is not None and port != self.serial_port:
                raise UnknownError(f"the serial line serves port {self.serial_port}, not port {port}")
        if unit_id is not None and self.gateway:
            self.check_unit_id(unit_id, port if port is not None or face != "serial" else self.serial_port)
        return Scope(port, unit_id, face)

    def check_unit_id(self, unit_id: int, port: int | None) -> None:
        """UnknownError unless unit_id is a meter on port (None: on any port); gateway mode."""
        ports = [port] if port is not None else list(self.ports)
        if not any(unit_id in (self.ports[p] or ()) for p in ports):
            where = f"port {port}" if port is not None else "any port"
            raise UnknownError(f"unit id {unit_id} is not a meter on {where}")

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
    parameters = parameters_of(kind, spec)
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
    if kind in METER_FAULTS:
        check_meter_scope(kind, scope, topology)
    else:
        check_faces(kind, parameters.get("mode"), scope, topology)
    return {"type": kind, "scope": scope, "parameters": parameters, "functions": functions,
            "probability": probability, "count": count, "duration_s": duration_s}


def parameters_of(kind: str, spec: Mapping) -> dict:
    """delay_ms, code and mode of a fault of this type, checked."""
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
    return parameters


def check_meter_scope(kind: str, scope: Scope, topology: Topology) -> None:
    """FaultError for a meter fault's scope that would not name meters."""
    if scope.unit_id is not None and not topology.gateway:
        # Scope.covers lets a unit id through for a meter without one: it would hit every meter
        raise FaultError(f"{article(kind)} {kind} fault outside gateway mode cannot be scoped by unit_id: "
                         "every meter answers every unit id; scope it by port or meter")
    if scope.face is not None:
        raise FaultError(f"{article(kind)} {kind} fault acts on the meter on every face: "
                         "scope it without face")


def check_faces(kind: str, mode: str | None, scope: Scope, topology: Topology) -> None:
    """FaultError for a request fault that could act on no face its scope covers, naming the
    type or mode and what is missing."""
    if any(effect_acts_on(kind, mode, face) for face in topology.faces(scope)):
        return
    if kind in CONNECTION_FAULTS:
        raise FaultError(f"{kind} does not act on the serial line")
    faces = "RTU faces" if FRAMING_OF_MODE[mode] == "rtu" else "Modbus/TCP (MBAP) faces"
    in_run = any(effect_acts_on(kind, mode, face) for face in topology.faces())
    raise FaultError(f"{kind} {mode} acts on {faces} only, and "
                     f"{'its scope covers none' if in_run else 'this run has none'}")


def fault_rng(seed: int | None, fault_id: str) -> random.Random:
    """A fault's own generator: reproducible from the run's seed and the fault id."""
    return random.Random(f"{seed}/{fault_id}") if seed is not None else random.Random()


def first_hit(candidates: Iterable[ActiveFault], active: Mapping[str, ActiveFault], now_s: float,
              unit_id: int, function_code: int, face: Face) -> tuple[ActiveFault | None, list[ActiveFault]]:
    """The first of candidates (oldest first) still active that hits a request (see hits), and
    the ones met before it whose duration has passed (the caller holds the table's lock)."""
    expired = []
    for fault in candidates:
        if fault.id not in active:
            continue
        expires = fault.expires_s
        if expires is not None and now_s >= expires:
            expired.append(fault)
            continue
        if hits(fault, unit_id, function_code, face):
            return fault, expired
    return None, expired


def hits(fault: ActiveFault, unit_id: int, function_code: int, face: Face) -> bool:
    """True when fault acts on a request with this unit id and function code arriving on face
    (the caller holds the table's lock and has checked the port and the expiry): face, scope,
    functions, probability; a hit is counted and uses up one of count. A request outside the
    fault draws nothing, so the hits on one face do not depend on the requests on another."""
    if not acts_on(fault, face):
        return False
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
