"""The dashboard without a browser (control-contract section 11, with sections 2, 3 and 9): its
static files as the control port serves them (content types, the Content-Security-Policy, no
absolute URL, nothing inline, relative paths only, the test hooks), their access with a token
and with --read-only, and the one request a refresh makes, GET /api/meters?summary=1, against the
listing, online changes and faults; Control.fleet_summary on a fake clock at the end.

Everything runs in-process (MeterSimulator with http=True) on meters that do not tick (1 h
interval), so the summary and the listing of one answer can be compared. The page in a real
browser is test_dashboard_browser.py's.
"""
from __future__ import annotations

import random
import re
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from importlib import resources
from urllib.parse import urlsplit

import pytest
from test_control_http import ControlProcess, Reply, call, refused

from meter_simulator.device.control import Control
from meter_simulator.device.fleet import PortPlan
from meter_simulator.device.updater import Updater
from meter_simulator.modbus.server import new_device
from meter_simulator.model.meters import make_meter
from meter_simulator.testing import MeterSimulator
from support import FakeClock, connect, wait_for

STILL = 3600  # seconds between ticks: no tick runs during a test
TOKEN = "s3cret-dashboard"
CSP = "default-src 'self'"
JS_TYPES = ("text/javascript", "application/javascript")
# path on the control port -> (file in meter_simulator/http/static, acceptable media types)
ASSETS = {
    "/": ("index.html", ("text/html",)),
    "/index.html": ("index.html", ("text/html",)),
    "/dashboard.css": ("dashboard.css", ("text/css",)),
    "/dashboard.js": ("dashboard.js", JS_TYPES),
    "/favicon.svg": ("favicon.svg", ("image/svg+xml",)),
    "/favicon.ico": ("favicon.svg", ("image/svg+xml",)),
}
ACTIONS = ("online", "offline", "reset", "fault-delay", "fault-no-answer", "fault-busy",
           "fault-freeze", "clear-faults")
LISTING_KEYS = {"count", "offset", "limit", "meters"}
SUMMARY_KEYS = {"meters", "online", "offline", "faults", "power_total", "flow", "types", "sites", "tick",
                "read_only"}
ABSOLUTE_URL = re.compile(r"https?://", re.IGNORECASE)
# ways a script could reach anything but the relative API paths, or keep the token outside the page
FORBIDDEN_JS = ("XMLHttpRequest", "WebSocket", "EventSource", "sendBeacon", "importScripts",
                "new Worker", "import(", "document.cookie", "localStorage", "sessionStorage")


def packaged(name: str) -> bytes:
    """A static file as the package ships it."""
    return resources.files("meter_simulator.http").joinpath("static", name).read_bytes()


def http_port(sim: MeterSimulator) -> int:
    return urlsplit(sim.http_url).port


def get(sim: MeterSimulator, path: str, token: str | None = None) -> Reply:
    return call(http_port(sim), "GET", path, token=token)


def media_type(reply: Reply) -> str:
    return reply.headers.get("Content-Type", "").split(";")[0].strip().lower()


def listing(sim: MeterSimulator, query: str = "summary=1&limit=1000", token: str | None = None) -> dict:
    """GET /api/meters?query as a document (200 checked)."""
    reply = get(sim, f"/api/meters?{query}", token=token)
    assert reply.status == 200, reply
    return reply.doc


def summary(sim: MeterSimulator) -> dict:
    return listing(sim)["summary"]


def rates(page: dict, meter_type: str) -> float:
    """The summed rate of the listed meters of one type."""
    return sum(meter["rate"] for meter in page["meters"] if meter["type"] == meter_type)


@pytest.fixture(scope="module")
def fleet():
    """Three electric meters that do not tick, with the control port; the tests only read."""
    with MeterSimulator(http=True, count=3, interval=STILL, seed=11) as sim:
        yield sim


@pytest.fixture(scope="module")
def files(fleet) -> dict[str, Reply]:
    """Every asset path's answer, fetched once."""
    return {path: get(fleet, path) for path in ASSETS}


# --- reading the files -------------------------------------------------------------------------

class Page(HTMLParser):
    """The tags of an HTML page with their attributes, the text inside its scripts, and the
    attributes of the elements inside id="meter-details"."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.script_text: list[str] = []
        self.in_details: list[tuple[str, dict]] = []
        self._script = False
        self._details: str | None = None  # the details panel's tag while inside it
        self._depth = 0
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if self._details is not None:
            self.in_details.append((tag, attributes))
            self._depth += tag == self._details
        elif attributes.get("id") == "meter-details":
            self._details, self._depth = tag, 1
        self._script = tag == "script"

    def handle_startendtag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))
        if self._details is not None:
            self.in_details.append((tag, dict(attrs)))

    def handle_endtag(self, tag) -> None:
        if tag == "script":
            self._script = False
        if self._details is not None and tag == self._details:
            self._depth -= 1
            if self._depth == 0:
                self._details = None

    def handle_data(self, data) -> None:
        if self._script:
            self.script_text.append(data)

    def with_tag(self, name: str) -> list[dict]:
        return [attributes for tag, attributes in self.tags if tag == name]


def without_comments(source: str, line_comments: bool = True) -> str:
    """JavaScript (or CSS: line_comments=False) without its comments; string literals kept, so a
    // in one is no comment. Enough for these files, which have no regular expression literal."""
    out = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char in "\"'`":
            j = i + 1
            while j < n and source[j] != char:
                j += 2 if source[j] == "\\" else 1
            out.append(source[i:j + 1])
            i = j + 1
        elif line_comments and source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`(?:[^`\\]|\\.)*`', re.DOTALL)


def literals(code: str) -> list[str]:
    """The string literals of comment-free code, without their quotes."""
    return [match.group()[1:-1] for match in STRING.finditer(code)]


def is_relative(reference: str) -> bool:
    """A path relative to the page: no scheme, no leading /, no // (protocol-relative)."""
    return bool(reference) and not reference.startswith("/") and "//" not in reference \
        and ":" not in reference.split("?")[0].split("#")[0]


def head_raw(port: int, path: str) -> tuple[bytes, bytes]:
    """(head, what followed it) of a HEAD request, read on a raw socket to the server's close."""
    with connect(port) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


# --- section 11: the files ---------------------------------------------------------------------

@pytest.mark.parametrize("path", list(ASSETS))
def test_every_asset_is_served_with_its_type_the_csp_and_nosniff(files, path):
    name, types = ASSETS[path]
    reply = files[path]
    assert reply.status == 200, reply
    assert media_type(reply) in types, reply.headers.get("Content-Type")
    if media_type(reply).startswith("text/"):  # the files hold non-ASCII text (…, ×, m³)
        assert "charset=utf-8" in reply.headers["Content-Type"].lower().replace(" ", "")
    assert reply.headers.get_all("Content-Security-Policy") == [CSP]
    assert reply.headers.get("X-Content-Type-Options") == "nosniff"
    assert reply.body == packaged(name)
    assert int(reply.headers["Content-Length"]) == len(reply.body)


def test_head_answers_the_headers_without_a_body(fleet, files):
    for path in ("/", "/dashboard.js"):
        head, rest = head_raw(http_port(fleet), path)
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].split(" ")[1] == "200", lines[0]
        headers = {key.strip().lower(): value.strip()
                   for key, _, value in (line.partition(":") for line in lines[1:])}
        assert headers["content-security-policy"] == CSP
        assert headers["content-type"] == files[path].headers["Content-Type"]
        assert int(headers["content-length"]) == len(files[path].body)
        assert rest == b"", rest[:100]  # nothing after the head


def test_the_page_has_no_absolute_url_anywhere(files):
    html = files["/"].body.decode("utf-8")
    assert files["/index.html"].body == files["/"].body
    assert not ABSOLUTE_URL.search(html), ABSOLUTE_URL.search(html)
    assert "javascript:" not in html.lower()


def test_the_page_loads_its_script_and_stylesheet_by_relative_paths(fleet, files):
    page = Page(files["/"].body.decode("utf-8"))
    scripts = [attributes.get("src") for attributes in page.with_tag("script")]
    sheets = [attributes.get("href") for attributes in page.with_tag("link")
              if "stylesheet" in (attributes.get("rel") or "").lower().split()]
    assert scripts == ["dashboard.js"]
    assert sheets == ["dashboard.css"]
    references = [value for _, attributes in page.tags for name, value in attributes.items()
                  if name in ("src", "href", "action", "data", "poster", "srcset") and value is not None]
    assert references, "the page references no file"
    for reference in references:
        assert is_relative(reference), reference
        assert get(fleet, "/" + reference).status == 200, reference  # resolved against /
    assert not page.with_tag("base")  # a <base> would move every relative path


def test_the_page_has_nothing_inline(files):
    html = files["/"].body.decode("utf-8")
    page = Page(html)
    assert "".join(page.script_text).strip() == "", "an inline script body"
    assert not page.with_tag("style"), "a <style> element"
    for tag, attributes in page.tags:
        assert "style" not in attributes, (tag, attributes)
        handlers = [name for name in attributes if name.startswith("on")]
        assert not handlers, (tag, handlers)
    # the same on the raw text, in case the parser read a tag differently than a browser would
    assert not re.search(r"<style\b", html, re.IGNORECASE)
    assert not re.search(r"<[^>]*\sstyle\s*=", html, re.IGNORECASE)
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html, re.IGNORECASE)


def test_the_script_and_stylesheet_have_no_absolute_url(files):
    for path in ("/dashboard.js", "/dashboard.css"):
        text = files[path].body.decode("utf-8")
        assert not ABSOLUTE_URL.search(text), (path, ABSOLUTE_URL.search(text))
    css = without_comments(files["/dashboard.css"].body.decode("utf-8"), line_comments=False)
    assert "@import" not in css
    for reference in re.findall(r"url\(\s*['\"]?([^'\")]*)", css):
        assert is_relative(reference), reference


def test_the_script_fetches_only_relative_api_paths(files):
    code = without_comments(files["/dashboard.js"].body.decode("utf-8"))
    for word in FORBIDDEN_JS:
        assert word not in code, word
    for literal in literals(code):
        assert not literal.startswith("//"), literal
        if re.search(r"(^|/)api(/|\?|$)", literal):
            assert literal.startswith("api/"), literal
    # one fetch, in the helper every request goes through; the browser tests see where they go
    assert len(re.findall(r"(?<![\w$.])fetch\s*\(", code)) == 1


def test_the_favicon_is_an_svg_document(files):
    root = ET.fromstring(files["/favicon.svg"].body)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


# --- section 11: test hooks --------------------------------------------------------------------

def test_the_action_buttons_are_in_the_details_panel_and_the_script_knows_them(files):
    page = Page(files["/"].body.decode("utf-8"))
    assert [attributes for attributes in page.with_tag("section") + page.with_tag("div")
            + page.with_tag("aside") if attributes.get("id") == "meter-details"], 'no id="meter-details"'
    buttons = {attributes.get("data-action") for tag, attributes in page.in_details if tag == "button"}
    assert set(ACTIONS) <= buttons, set(ACTIONS) - buttons
    code_literals = set(literals(without_comments(files["/dashboard.js"].body.decode("utf-8"))))
    assert set(ACTIONS) <= code_literals, set(ACTIONS) - code_literals  # a button the script ignores


@pytest.mark.parametrize("hook", ["meter", "reading", "site", "flow"])
def test_the_row_and_reading_hooks_are_set(files, hook):
    html = files["/"].body.decode("utf-8")
    code = without_comments(files["/dashboard.js"].body.decode("utf-8"))
    assert f"data-{hook}" in html + code or re.search(rf"\.dataset\.{hook}\s*=", code), hook


# --- section 9: access -------------------------------------------------------------------------

def test_with_a_token_the_files_need_none_and_the_api_does():
    with MeterSimulator(http=True, http_token=TOKEN, interval=STILL, seed=2) as sim:
        port = http_port(sim)
        for path, (name, _) in ASSETS.items():
            reply = get(sim, path)
            assert reply.status == 200 and reply.body == packaged(name), (path, reply)
            assert reply.headers["Content-Security-Policy"] == CSP
        assert call(port, "HEAD", "/").status == 200
        for token in (None, "wrong"):
            for path in ("/api/meters", "/api/meters?summary=1", "/nope", "/static/dashboard.js"):
                reply = call(port, "GET", path, token=token)
                refused(reply, 401)
                assert reply.headers["WWW-Authenticate"].startswith("Bearer"), path
        assert set(listing(sim, token=TOKEN)["summary"]) == SUMMARY_KEYS


def test_read_only_serves_the_files_and_says_so_in_the_summary(fleet):
    assert summary(fleet)["read_only"] is False
    with MeterSimulator(http=True, read_only=True, interval=STILL, seed=2) as sim:
        for path, (name, _) in ASSETS.items():
            reply = get(sim, path)
            assert reply.status == 200 and reply.body == packaged(name), (path, reply)
        assert summary(sim)["read_only"] is True
        refused(call(http_port(sim), "POST", "/", b"{}"), 403)


def test_only_get_and_head_are_allowed_on_the_files(fleet):
    for path in ("/", "/dashboard.js"):
        reply = call(http_port(fleet), "POST", path, b"{}")
        refused(reply, 405)
        assert {word.strip() for word in reply.headers["Allow"].split(",")} == {"GET", "HEAD"}


def test_the_files_may_not_be_framed_by_another_page(files):
    for path, reply in files.items():
        assert reply.headers["X-Frame-Options"] == "DENY", path


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://127.0.0.1:1"},  # another port of the same host: another origin
])
def test_a_change_sent_by_another_sites_page_is_refused_and_changes_nothing(headers):
    with MeterSimulator(http=True, interval=STILL, seed=3) as sim:
        port = http_port(sim)
        for method, path, body in (("PUT", f"/api/meters/{sim.meter_ids[0]}/online", {"online": False}),
                                   ("POST", "/api/faults", {"type": "freeze"}),
                                   ("POST", f"/api/meters/{sim.meter_ids[0]}/reset", None)):
            message = refused(call(port, method, path, body, headers=headers), 403)
            assert "another site" in message, message
        assert sim.meter()["online"] and sim.faults() == []
        assert get(sim, "/api/meters").status == 200  # reads are not concerned


def test_a_change_from_the_dashboards_own_origin_or_no_browser_is_taken():
    with MeterSimulator(http=True, interval=STILL, seed=3) as sim:
        port = http_port(sim)
        own = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
        path = f"/api/meters/{sim.meter_ids[0]}/online"
        assert call(port, "PUT", path, {"online": False}, headers=own).status == 200
        assert not sim.meter()["online"]
        assert call(port, "PUT", path, {"online": True}).status == 200  # curl sends no Origin
        assert sim.meter()["online"]


# --- GET /api/meters?summary=1 -----------------------------------------------------------------

def test_the_summary_is_the_whole_fleets_beside_the_listing(fleet):
    page = listing(fleet)
    found = page.pop("summary")
    assert set(found) == SUMMARY_KEYS
    for key in ("meters", "online", "offline", "faults", "tick"):
        assert type(found[key]) is int, (key, found[key])
    assert found["meters"] == page["count"] == len(page["meters"]) == 3
    assert found["online"] + found["offline"] == found["meters"]
    assert found["online"] == sum(meter["online"] for meter in page["meters"]) == 3
    assert found["faults"] == 0
    assert found["types"] == {"electric": 3}
    assert found["power_total"] == pytest.approx(rates(page, "electric"), abs=0.01)
    assert found["power_total"] > 0
    assert found["flow"] == 0
    assert found["sites"] == 0
    assert found["tick"] == fleet.ticks
    assert page == listing(fleet, "limit=1000")  # summary adds a key and changes nothing else
    # a page of the listing still summarises every meter (the dashboard shows 50 a page)
    one = listing(fleet, "offset=1&limit=1&summary=1")
    assert len(one["meters"]) == 1 and one["summary"] == found


@pytest.mark.parametrize("query", ["", "?summary=0", "?summary=false", "?offset=0&limit=2&summary=0"])
def test_without_summary_the_listing_is_as_before(fleet, query):
    reply = get(fleet, "/api/meters" + query)
    assert reply.status == 200, reply
    assert set(reply.doc) == LISTING_KEYS


@pytest.mark.parametrize("query", ["limit=0&summary=1", "offset=-1&summary=1", "limit=1001&summary=1"])
def test_bad_paging_is_400_with_summary_too(fleet, query):
    refused(get(fleet, f"/api/meters?{query}"), 400)


def test_online_and_offline_follow_the_meters():
    with MeterSimulator(http=True, count=3, interval=STILL, seed=5) as sim:
        ids = sim.meter_ids
        assert (summary(sim)["online"], summary(sim)["offline"]) == (3, 0)
        sim.set_online(False, meter=ids[1])
        found = summary(sim)
        assert (found["meters"], found["online"], found["offline"]) == (3, 2, 1)
        reply = call(http_port(sim), "PUT", f"/api/meters/{ids[2]}/online", {"online": False})
        assert reply.status == 200, reply
        page = listing(sim)
        assert (page["summary"]["online"], page["summary"]["offline"]) == (1, 2)
        assert page["summary"]["online"] == sum(meter["online"] for meter in page["meters"])
        sim.set_online(True, meter=ids[1])
        sim.set_online(True, meter=ids[2])
        assert (summary(sim)["online"], summary(sim)["offline"]) == (3, 0)


def test_a_gateway_fleet_counts_every_unit_id():
    with MeterSimulator(http=True, count=2, unit_ids=[1, 2, 7], interval=STILL, seed=4) as sim:
        page = listing(sim)
        found = page["summary"]
        assert found["meters"] == page["count"] == len(sim.meter_ids) == 6
        assert found["types"] == {"electric": 6}
        assert (found["online"], found["offline"]) == (6, 0)
        assert found["power_total"] == pytest.approx(rates(page, "electric"), abs=0.01)
        sim.set_online(False, meter=sim.meter_ids[-1])
        assert (summary(sim)["online"], summary(sim)["offline"]) == (5, 1)


def test_faults_count_while_active():
    with MeterSimulator(http=True, count=3, interval=STILL, seed=5) as sim:
        port, ids = http_port(sim), sim.meter_ids
        assert summary(sim)["faults"] == 0
        with sim.fault("delay", delay_ms=1000):
            assert summary(sim)["faults"] == 1
            with sim.fault("no_answer", meter=ids[0]):
                assert summary(sim)["faults"] == 2
            assert summary(sim)["faults"] == 1
        assert summary(sim)["faults"] == 0
        # an offline fault over HTTP: a fault, and its meter offline, until it is deleted
        reply = call(port, "POST", "/api/faults", {"type": "offline", "scope": {"meter": ids[1]}})
        assert reply.status == 201, reply
        found = summary(sim)
        assert (found["faults"], found["online"], found["offline"]) == (1, 2, 1)
        assert call(port, "DELETE", f"/api/faults/{reply.doc['id']}").status == 200
        found = summary(sim)
        assert (found["faults"], found["online"], found["offline"]) == (0, 3, 0)
        # a fault that ends by its duration leaves the count without a DELETE
        started = time.monotonic()
        reply = call(port, "POST", "/api/faults", {"type": "freeze", "duration_s": 1.0})
        assert reply.status == 201, reply
        active = summary(sim)["faults"]
        if time.monotonic() - started < 0.8:  # certainly before the end, even on a loaded machine
            assert active == 1
        wait_for(lambda: summary(sim)["faults"] == 0, timeout=10)


def test_the_summed_power_follows_a_pin():
    with MeterSimulator(http=True, count=3, interval=STILL, seed=6) as sim:
        ids = sim.meter_ids
        sim.set(meter=ids[0], power_total=5000)
        sim.set(meter=ids[2], power_total=250)
        page = listing(sim)
        found = page["summary"]
        assert found["power_total"] == pytest.approx(rates(page, "electric"), abs=0.01)
        others = sum(meter["rate"] for meter in page["meters"] if meter["id"] == ids[1])
        assert found["power_total"] == pytest.approx(5250 + others, abs=0.01)


def test_solar_power_is_summed_with_its_sign():
    with MeterSimulator(http=True, count=2, pv_kwp=10, interval=STILL, seed=3) as sim:
        ids = sim.meter_ids
        sim.set(meter=ids[0], power_total=-3000)
        sim.set(meter=ids[1], power_total=1000)
        found = summary(sim)
        assert found["power_total"] == pytest.approx(-2000, abs=0.01)
        assert found["types"] == {"electric": 2}


@pytest.mark.parametrize("meter_type", ["water", "gas"])
def test_flow_meters_sum_their_flow_and_no_power(meter_type):
    with MeterSimulator(http=True, type=meter_type, count=3, interval=STILL, seed=8) as sim:
        sim.set(meter=sim.meter_ids[0], flow=12.5)
        page = listing(sim)
        found = page["summary"]
        assert found["types"] == {meter_type: 3}
        assert found["meters"] == 3 and found["online"] + found["offline"] == 3
        assert found["power_total"] == 0
        assert found["flow"] == pytest.approx(rates(page, meter_type), abs=0.01)
        assert found["flow"] >= 12.5 - 0.01


def test_a_run_of_sites_counts_them_and_sums_the_grid_meters_power_alone():
    options = ("--site", "--pv-kwp", "8", "--battery-kwh", "10", "--start-time", "12:00",
               "--seed", "2", "--interval", str(STILL))
    with ControlProcess(*options, count=3) as program:
        program.change("PUT", f"/api/sites/{program.port}", {"load_w": 9000, "pv_available_w": 0})
        page = program.get("/api/meters?summary=1&limit=1000")
        sites = program.get("/api/sites")
    found = page["summary"]
    assert found["sites"] == sites["count"] == 3
    assert found["types"] == {"inverter": 3, "electric": 3}
    assert found["meters"] == found["online"] == 6
    assert found["flow"] == 0  # an inverter's power is its site's, never a flow
    assert found["power_total"] == pytest.approx(rates(page, "electric"), abs=0.01)
    assert found["power_total"] == pytest.approx(sum(site["grid_w"] for site in sites["sites"]), abs=0.01)
    assert sites["sites"][0]["grid_w"] == pytest.approx(4000.0)  # the pinned site imports 4 kW


# --- Control.fleet_summary without sockets -----------------------------------------------------

def mixed_control(clock: FakeClock) -> Control:
    """Two electric meters, a water and a gas meter on an updater that never starts (ticks by
    hand), on a fake clock."""
    rng = random.Random(9)

    def device(meter_type: str):
        return new_device(make_meter(meter_type, random.Random(rng.getrandbits(32)), 12 * 3600))

    plan = [PortPlan(5020, device=device("electric")), PortPlan(5021, device=device("electric")),
            PortPlan(5022, device=device("water")), PortPlan(5023, device=device("gas"))]
    updater = Updater([u for endpoint in plan for u in endpoint.devices], interval_s=1.0, clock=clock)
    return Control(updater, plan, seed=1, clock=clock)


def test_fleet_summary_by_type_state_and_faults():
    clock = FakeClock()
    control = mixed_control(clock)
    try:
        control.set_overrides("5020", {"power_total": 1000.0})
        control.set_overrides("5021", {"power_total": 2500.0})
        control.set_overrides("5022", {"flow": 12.5})
        control.set_overrides("5023", {"flow": 3.0})
        found = control.fleet_summary()
        assert set(found) == SUMMARY_KEYS - {"read_only"}  # read-only is the HTTP side's
        assert found["types"] == {"electric": 2, "water": 1, "gas": 1}
        assert (found["meters"], found["online"], found["offline"], found["faults"]) == (4, 4, 0, 0)
        assert found["power_total"] == pytest.approx(3500.0)
        assert found["flow"] == pytest.approx(15.5)
        assert found["tick"] == control.updater.ticks
        control.updater.tick()
        assert control.fleet_summary()["tick"] == found["tick"] + 1

        control.set_online("5022", False)
        assert (control.fleet_summary()["online"], control.fleet_summary()["offline"]) == (3, 1)
        control.start_fault({"type": "no_answer", "scope": {"port": 5023}})
        control.start_fault({"type": "offline", "scope": {"meter": "5020"}})
        found = control.fleet_summary()
        assert (found["faults"], found["online"], found["offline"]) == (2, 2, 2)
        control.clear_faults()
        control.set_online("5022", True)
        found = control.fleet_summary()
        assert (found["faults"], found["online"], found["offline"]) == (0, 4, 0)
    finally:
        control.close()


def test_fleet_summary_ends_a_fault_whose_duration_passed():
    clock = FakeClock()
    control = mixed_control(clock)
    try:
        control.start_fault({"type": "no_answer", "duration_s": 600})
        assert control.fleet_summary()["faults"] == 1
        clock.now += 600.0  # its timer has not run yet (a loaded machine): the summary ends it
        assert control.fleet_summary()["faults"] == 0
    finally:
        control.close()


def test_fleet_summary_ends_an_expired_meter_fault_before_counting_the_meters():
    clock = FakeClock()
    control = mixed_control(clock)
    try:
        control.start_fault({"type": "offline", "scope": {"meter": "5020"}, "duration_s": 600})
        found = control.fleet_summary()
        assert (found["faults"], found["online"], found["offline"]) == (1, 3, 1)
        clock.now += 600.0  # the fault's duration passes before its timer runs
        found = control.fleet_summary()
        assert (found["faults"], found["online"], found["offline"]) == (0, 4, 0)
    finally:
        control.close()
