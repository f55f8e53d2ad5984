"""The dashboard's static files (package data in static/), served at GET / and beside it.

Plain HTML, CSS and JavaScript: no build step, no CDN, nothing fetched from elsewhere, so
the page works on a lab box with no network. The files are read once, on the first request.
"""
from __future__ import annotations

import functools
from importlib import resources

# path on the control port -> (file in static/, Content-Type)
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),  # what a browser asks for unprompted
}
PATHS = tuple(FILES)
# scripts and styles are files of their own, never inline (control-contract section 11)
CSP = "default-src 'self'"


@functools.cache
def asset(path: str) -> tuple[bytes, str]:
    """(body, Content-Type) of the file served at path; KeyError for any other path."""
    name, content_type = FILES[path]
    return resources.files(__package__).joinpath("static", name).read_bytes(), content_type


__all__ = ["CSP", "FILES", "PATHS", "asset"]
