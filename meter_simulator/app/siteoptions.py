"""The site's options (--site, --battery-kwh, --battery-kw, --inverter-night, --inverter-profile)
and --start-time, checked."""
from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from ..device.site import NIGHT_MODES
from ..maps.points import Profile
from ..maps.profiles import inverter_profile_named
from ..maps.schema import site_entry
from ..model.site import BATTERY_KW_RANGE, MAX_BATTERY_KWH

START_TIME = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?")
DEFAULT_BATTERY_KW = "KWH/2"  # the usage text's default: half the capacity
INVERTER_OPTIONS = ("--inverter-night", "--inverter-profile")  # part B's: only with --site


class SiteOptionError(ValueError):
    """A bad site option; the message is one line naming it."""


def decimal(name: str, text: str, low: float, high: float) -> float:
    """A plain decimal number (no inf, nan, 1e3 or underscores) from low to high."""
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?|-?\.[0-9]+", text):
        raise SiteOptionError(f"{name} must be a number, not {text!r}")
    value = float(text)
    if not low <= value <= high:
        raise SiteOptionError(f"{name} must be from {low:g} to {high:g}, not {text}")
    return value


def start_time(text: str) -> float | None:
    """--start-time HH:MM (or HH:MM:SS) as seconds since midnight; None for now."""
    if text == "now":
        return None
    match = START_TIME.fullmatch(text)
    hours, minutes, seconds = (int(part or 0) for part in match.groups()) if match else (99, 0, 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise SiteOptionError(f"--start-time must be a time of day from 00:00 to 23:59 (HH:MM), "
                              f"not {text!r}")
    return hours * 3600.0 + minutes * 60.0 + seconds


def site_options(args: dict, meter_type: str, unit_ids: Sequence[int] | None,
                 type_option: str = "--type", profile: Profile | None = None,
                 given: Collection[str] = ()) -> dict:
    """site, battery_kwh, battery_kw, inverter_night, inverter_profile (Config's fields), checked
    against each other and the meter type, unit ids and grid meter's map (profile) asked for;
    type_option: the option that named the meter type (or the --profile map file that did); given:
    the options on the command line. ProfileError for an --inverter-profile that cannot be served."""
    site = bool(args["--site"])
    night, inverter_map = args["--inverter-night"], args["--inverter-profile"]
    if night not in NIGHT_MODES:
        raise SiteOptionError(f"--inverter-night must be {' or '.join(NIGHT_MODES)}, not {night!r}")
    if not site:
        for option in INVERTER_OPTIONS:  # even with their default values
            if option in given:
                raise SiteOptionError(f"{option} sets a site's inverter: give --site too")
        entry = site_entry(profile) if profile is not None else None
        if entry is not None:
            raise SiteOptionError(f"profile {profile.source}: {entry} belongs to a site: give --site too")
    battery_kwh = decimal("--battery-kwh", args["--battery-kwh"], 0.0, MAX_BATTERY_KWH)
    given_kw = args["--battery-kw"]
    battery_kw = None if given_kw == DEFAULT_BATTERY_KW else decimal(
        "--battery-kw", given_kw, *BATTERY_KW_RANGE)
    if site and unit_ids is not None:
        raise SiteOptionError("--site serves fixed unit ids (1 and 200): leave out --unit-ids")
    if site and meter_type != "electric":
        raise SiteOptionError(f"--site serves an electric grid meter, not {type_option} {meter_type}")
    if not site and battery_kwh:
        raise SiteOptionError("--battery-kwh is a site's battery: give --site too")
    if not site and battery_kw is not None:
        raise SiteOptionError("--battery-kw is a site's battery: give --site too")
    if battery_kw is not None and not battery_kwh:
        raise SiteOptionError("--battery-kw needs a battery: give --battery-kwh above 0")
    return {"site": site, "battery_kwh": battery_kwh, "battery_kw": battery_kw, "inverter_night": night,
            "inverter_profile": inverter_profile_named(inverter_map) if site else None}
