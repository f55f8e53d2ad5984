"""The control port's routes: JSON in and out over the control core, /metrics and /healthz.

Api(request) -> Answer, with no socket in sight (web.py serves it). Order of checks:
without a token, a Host that is not this port's address (403: a page whose name was
rebound to 127.0.0.1 must not reach the port through the tester's browser); the bearer
token (every path but /healthz and the dashboard's files); a change a browser sends from
another site's page (403); --read-only (every method but GET and HEAD is 403); the path
(404) and method (405). Api.refusal() runs those on the request line and headers alone,
before the body is read. Then the body, validated whole by the control core before
anything changes: the core's own refusals are 400 (409 for one fault too many) and 404;
anything else is a bug, logged and answered 500.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import re
from typing import Callable
from urllib.parse import parse_qs, unquote

from ..checks import JsonProblem, json_document
from ..device.control import Control, ControlError
from ..device.faults import FaultError, FaultLimitError, UnknownError
from ..device.sitecontrol import SiteError
from ..model.pins import PinError
from . import dashboard
from .web import Answer, Request, error_answer, json_answer

log = logging.getLogger(__name__)

READ_METHODS = ("GET", "HEAD")
PUBLIC_PATHS = ("/healthz", *dashboard.PATHS)  # no token: supervisors, the dashboard's files
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")


class BadRequest(ValueError):
    """A request the API cannot take (400)."""


# what the core refuses before it changes anything: the only errors a client is told are its own
REFUSALS = (BadRequest, ControlError, FaultError, PinError, SiteError)


def host_and_port(header: str) -> tuple[str, int | None] | None:
    """(host name or address, port) of a Host header: "127.0.0.1:8080", "[::1]:8080",
    "localhost" (port None); None when it is not one."""
    header = header.strip().lower()
    if header.startswith("["):
        host, bracket, rest = header[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text = header.partition(":")
        port_text = port_text if colon else None
    if port_text is not None and not (port_text.isascii() and port_text.isdigit()):
        return None
    return host.rstrip("."), int(port_text) if port_text is not None else None


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostCheck:
    """The Host values a control port without a token answers: its own address.

    A web page whose name the attacker re-resolves to 127.0.0.1 (DNS rebinding) is
    same-origin with the control port in the tester's browser, but its requests carry the
    attacker's name in Host. Loopback names and the bound host pass, with the bound port
    or none; bound to every address (0.0.0.0, ::), so does any IP address, which no
    rebinding can give a page."""

    def __init__(self, bound_host: str, port: int) -> None:
        self.port = port
        self.names = {*LOOPBACK_NAMES, bound_host.strip("[]").lower().rstrip(".")}
        self.any_address = bound_host in WILDCARDS

    def __call__(self, header: str | None) -> bool:
        if header is None:
            return True  # no browser sends a request without Host: nothing to rebind
        parsed = host_and_port(header)
        if parsed is None:
            return False
        host, port = parsed
        if port is not None and port != self.port:
            return False
        return host in self.names or (self.any_address and is_address(host))


def constant_time_equal(given: str, expected: str) -> bool:
    """Token comparison whose time does not depend on where the strings differ."""
    import hmac  # here, not at import: it loads OpenSSL, which a run without a token never needs

    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


BODY_PROBLEMS = {"utf8": "the body is not UTF-8", "depth": "bad JSON: nested too deeply",
                 "digits": "bad JSON: a number with too many digits"}


def body_problem(problem: JsonProblem) -> str:
    """A request body that is no JSON, in one line."""
    if problem.error is not None:
        error = problem.error
        return f"bad JSON: {error.msg} at line {error.lineno} column {error.colno}"
    return BODY_PROBLEMS[problem.kind]


def body_object(request: Request, *, optional: bool = False) -> dict:
    """The request body as one JSON object; BadRequest otherwise (an empty body is {} when
    optional)."""
    text = request.body.strip()
    if not text:
        if optional:
            return {}
        raise BadRequest("the body must be a JSON object")
    try:
        document = json_document(text)
    except JsonProblem as problem:
        raise BadRequest(body_problem(problem)) from None
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    return document


def only_keys(document: dict, allowed: tuple[str, ...], required: bool = True) -> None:
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r}: give {', '.join(allowed)}")
    missing = [key for key in allowed if key not in document]
    if required and missing:
        raise BadRequest(f"missing key {missing[0]!r}")


def cross_site(request: Request) -> str | None:
    """The origin of a browser's request sent by another site's page, else None. Browsers send
    Origin with every change, also a simple cross-site POST that needs no CORS preflight: without
    this any web page open beside the dashboard could reset meters through the engineer's browser.
    Clients that are no browser (curl, scripts) send no Origin and are not concerned."""
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if origin is None:
        return "Sec-Fetch-Site: cross-site" if fetch_site == "cross-site" else None
    host = request.headers.get("Host", "").strip().lower()
    if fetch_site != "cross-site" and host and origin.strip().lower() in (f"http://{host}", f"https://{host}"):
        return None
    return f"Origin {origin}"


def whole_query(query: dict, name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    text = values[-1]
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise BadRequest(f"{name} must be a whole number, not {text!r}")
    return int(text)


class Api:
    """Routes a request to the control core, /metrics or /healthz."""

    def __init__(self, control: Control, *, metrics: Callable[[], tuple[bytes, str]] | None = None,
                 health: Callable[[], list[str]] | None = None, read_only: bool = False,
                 token: str | None = None) -> None:
        if token is not None and not token.strip():
            raise ValueError("the control port's token must not be empty")
        self.control = control
        self.metrics = metrics
        self.health = health
        self.read_only = read_only
        self.token = token
        self.host_check: HostCheck | None = None  # bound(): a run without a token checks Host
        meter = r"/api/meters/(?P<meter>[^/]+)"
        # (path pattern, {method: handler}) in the order they are tried
        self.routes = [
            (re.compile(r"/healthz"), {"GET": self.get_health}),
            (re.compile(r"/metrics"), {"GET": self.get_metrics}),
            (re.compile("(?P<path>" + "|".join(map(re.escape, dashboard.PATHS)) + ")"),
             {"GET": self.get_file}),
            (re.compile(r"/api/meters"), {"GET": self.get_meters}),
            (re.compile(meter), {"GET": self.get_meter}),
            (re.compile(meter + "/overrides"), {"PUT": self.put_overrides,
                                                 "DELETE": self.delete_overrides}),
            (re.compile(meter + "/online"), {"PUT": self.put_online}),
            (re.compile(meter + "/reset"), {"POST": self.post_reset}),
            (re.compile(meter + "/total"), {"PUT": self.put_total}),
            (re.compile(r"/api/sites"), {"GET": self.get_sites}),
            (re.compile(r"/api/sites/(?P<port>[^/]+)"), {"GET": self.get_site, "PUT": self.put_site}),
            (re.compile(r"/api/faults"), {"GET": self.get_faults, "POST": self.post_fault,
                                          "DELETE": self.delete_faults}),
            (re.compile(r"/api/faults/(?P<fault>[^/]+)"), {"GET": self.get_fault,
                                                           "DELETE": self.delete_fault}),
        ]

    def bound(self, host: str, port: int) -> None:
        """The address the control port was bound to: without a token, only requests whose
        Host names it (or loopback) are answered."""
        self.host_check = HostCheck(host, port) if self.token is None else None

    def __call__(self, request: Request) -> Answer:
        try:
            return self.route(request)
        except Exception as exc:  # the HTTP boundary: a bug answers 500 and serving goes on
            log.exception("control: error answering %s %s", request.method, request.path)
            return error_answer(500, f"internal error: {type(exc).__name__}")

    def refusal(self, request: Request) -> Answer | None:
        """The answer to a request refused for its line and headers alone, else None."""
        try:
            found = self.find(request)
        except Exception as exc:  # the HTTP boundary, as in __call__
            log.exception("control: error answering %s %s", request.method, request.path)
            return error_answer(500, f"internal error: {type(exc).__name__}")
        return found if isinstance(found, Answer) else None

    def route(self, request: Request) -> Answer:
        found = self.find(request)
        if isinstance(found, Answer):
            return found
        handler, arguments = found
        try:
            return handler(request, parse_qs(request.query), **arguments)
        except UnknownError as exc:
            return error_answer(404, str(exc))
        except FaultLimitError as exc:
            return error_answer(409, str(exc))
        except REFUSALS as exc:
            return error_answer(400, str(exc).splitlines()[0] if str(exc) else "bad request")

    def find(self, request: Request):
        """(handler, its arguments) for a request, or the Answer that refuses it."""
        path = request.path if request.path in ("", "/") else request.path.rstrip("/")
        path = path or "/"
        if self.host_check is not None and not self.host_check(request.headers.get("Host")):
            return error_answer(403, f"refused: Host {request.headers.get('Host', '')[:100]!r} is not "
                                     "this control port's address (use 127.0.0.1, or a token)")
        if self.token is not None and path not in PUBLIC_PATHS and not self.authorized(request):
            return error_answer(401, "a bearer token is needed (Authorization: Bearer ...)",
                                {"WWW-Authenticate": "Bearer"})
        if request.method not in READ_METHODS and (origin := cross_site(request)) is not None:
            return error_answer(403, f"refused: a change sent by another site's page ({origin})")
        if self.read_only and request.method not in READ_METHODS:
            return error_answer(403, f"read-only: {request.method} is refused (--read-only)")
        for pattern, methods in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            handler = methods.get("GET" if request.method == "HEAD" else request.method)
            if handler is None:
                allowed = sorted(methods) + (["HEAD"] if "GET" in methods else [])
                return error_answer(405, f"{request.method} is not allowed on {path}",
                                    {"Allow": ", ".join(allowed)})
            return handler, {name: unquote(value) for name, value in match.groupdict().items()}
        return error_answer(404, f"no such path: {path}")

    def authorized(self, request: Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and constant_time_equal(given.strip(), self.token)

    # --- plain pages ---
    def get_health(self, request, query) -> Answer:
        reasons = self.health() if self.health is not None else []
        if reasons:
            return json_answer(503, {"status": "unhealthy", "reasons": reasons})
        return json_answer(200, {"status": "ok", "meters": len(self.control.meters),
                                 "ticks": self.control.updater.ticks,
                                 "uptime_s": round(self.control.uptime_s(), 3)})

    def get_metrics(self, request, query) -> Answer:
        body, content_type = self.metrics()
        return Answer(200, body, {"Content-Type": content_type})

    def get_file(self, request, query, path) -> Answer:
        body, content_type = dashboard.asset(path)
        return Answer(200, body, {"Content-Type": content_type, "Content-Security-Policy": dashboard.CSP,
                                  "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"})

    # --- meters ---
    def get_meters(self, request, query) -> Answer:
        offset = whole_query(query, "offset", 0)
        limit = whole_query(query, "limit", 100)
        page = self.control.page(offset, limit)
        if query.get("summary", [""])[-1] not in ("", "0", "false"):  # the dashboard's one request
            page["summary"] = {**self.control.fleet_summary(), "read_only": self.read_only}
        return json_answer(200, page)

    def get_meter(self, request, query, meter) -> Answer:
        return json_answer(200, self.control.details(meter))

    def put_overrides(self, request, query, meter) -> Answer:
        self.control.meter(meter)
        changes = body_object(request)
        details = self.control.set_overrides(meter, changes)
        pinned = ", ".join(f"{name}={value:g}" for name, value in changes.items() if value is not None)
        released = ", ".join(name for name, value in changes.items() if value is None)
        words = [f"pins {pinned}" if pinned else "", f"releases {released}" if released else ""]
        return json_answer(200, details, summary=f"{meter} " + (" and ".join(w for w in words if w)
                                                                 or "pins nothing"))

    def delete_overrides(self, request, query, meter) -> Answer:
        details = self.control.release(meter)
        return json_answer(200, details, summary=f"{meter} releases every pin")

    def put_online(self, request, query, meter) -> Answer:
        self.control.meter(meter)
        document = body_object(request)
        only_keys(document, ("online",))
        details = self.control.set_online(meter, document["online"])
        return json_answer(200, details, summary=f"{meter} {'online' if document['online'] else 'offline'}")

    def post_reset(self, request, query, meter) -> Answer:
        self.control.meter(meter)
        only_keys(body_object(request, optional=True), (), required=False)
        return json_answer(200, self.control.reset(meter), summary=f"{meter} reset")

    def put_total(self, request, query, meter) -> Answer:
        self.control.meter(meter)
        document = body_object(request)
        only_keys(document, ("total",))
        details = self.control.set_total(meter, document["total"])
        return json_answer(200, details, summary=f"{meter} total {document['total']}")

    # --- faults ---
    # --- sites ---
    def get_sites(self, request, query) -> Answer:
        return json_answer(200, self.control.sites.page(whole_query(query, "offset", 0),
                                                        whole_query(query, "limit", 100)))

    def get_site(self, request, query, port) -> Answer:
        return json_answer(200, self.control.sites.site(port))

    def put_site(self, request, query, port) -> Answer:
        self.control.sites.of(port)
        changes = body_object(request)
        site = self.control.sites.set_site(port, changes)
        log.info("control: site %s: %s", site["port"], ", ".join(
            f"{name}={json.dumps(value)}" for name, value in changes.items()))
        return json_answer(200, site)

    def get_faults(self, request, query) -> Answer:
        return json_answer(200, {"faults": self.control.faults()})

    def post_fault(self, request, query) -> Answer:
        fault = self.control.start_fault(body_object(request))
        return json_answer(201, self.control.view(fault), summary=f"{fault.id} {fault.describe()}")

    def delete_faults(self, request, query) -> Answer:
        cleared = self.control.clear_faults()
        return json_answer(200, {"cleared": cleared}, summary=f"cleared {cleared} fault"
                           + ("" if cleared == 1 else "s"))

    def get_fault(self, request, query, fault) -> Answer:
        return json_answer(200, self.control.fault(fault))

    def delete_fault(self, request, query, fault) -> Answer:
        return json_answer(200, self.control.delete_fault(fault), summary=f"{fault} ended")


def log_answer(peer: str, method: str, path: str, answer: Answer) -> None:
    """One line an answer: changes and refusals at info, reads at debug; never a body or token."""
    line = f"control {peer}: {method} {path} -> {answer.status}"
    if answer.summary:
        line += f" {answer.summary}"
    if method in READ_METHODS and answer.status < 400:
        log.debug("%s", line)
    else:
        log.info("%s", line)


__all__ = ["Api", "BadRequest", "ControlError", "log_answer"]
