"""Profiles: the register maps a meter can be served through, built in or from a map file.

The built-in maps are map files too (package data in profiles/, the format of
mapfile.py), so a user can copy one and edit it. Each profile is compiled once
per meter type (codec.compile_map) and shared by every meter that serves it.
"""
from __future__ import annotations

import dataclasses
import functools
import os

from ..model.meters import METER_TYPES
from . import mapfile
from .codec import CompiledMap, compile_map
from .extremes import EncodeError, check_encodes
from .points import Profile

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "builtin")
SEED = "seed"
BUILT_IN = ("seed", "sdm630", "sunspec", "sunspec-float")
ELECTRIC_ONLY = ("sdm630", "sunspec", "sunspec-float")
FILE_SUFFIXES = (".toml", ".json")
INVERTER_CHAIN = "sunspec-hybrid"  # the built-in map of a site's inverter (maps/hybrid.py)
INVERTER_BUILT_IN = ("huawei-sun2000",)  # built-in map files --inverter-profile also names
INVERTER_PROFILES = (INVERTER_CHAIN, *INVERTER_BUILT_IN)
INVERTER_MAP_TYPES = ("electric", "inverter")  # what a map file for the inverter may declare


class ProfileError(ValueError):
    """A profile that cannot be served; the message is one line."""


def built_in_path(name: str) -> str:
    """The map file of a built-in profile."""
    return os.path.join(FOLDER, f"{name}.toml")


def is_file(value: str) -> bool:
    """True when a --profile value names a map file rather than a built-in profile."""
    return os.sep in value or "/" in value or value.lower().endswith(FILE_SUFFIXES)


@functools.cache
def built_in(name: str) -> Profile:
    """A built-in profile by name (seed, sdm630, sunspec, sunspec-float, sunspec-hybrid,
    huawei-sun2000)."""
    profile = mapfile.load_map(built_in_path(name), types=mapfile.MAP_TYPES)
    # the seed map's coils, discrete inputs and status writes are the simulator's own
    return dataclasses.replace(profile, coils=True) if name == SEED else profile


def seed() -> Profile:
    return built_in(SEED)


def profile_named(value: str, meter_type: str | None) -> Profile:
    """The profile a --profile value names, for the meter type given on the command line (None: not
    given); ProfileError with one line when it cannot serve it."""
    if is_file(value):
        try:
            profile = mapfile.load_map(value, meter_type)
        except mapfile.MapError as exc:
            raise ProfileError(str(exc)) from None
        check(profile, meter_type)
        return profile
    name = value.lower()
    if name not in BUILT_IN:
        raise ProfileError(f"--profile must be {', '.join(BUILT_IN)} or a map file (.toml), "
                           f"not {value!r}")
    profile = built_in(name)
    if name in ELECTRIC_ONLY and meter_type not in (None, "electric"):
        raise ProfileError(f"--profile {name} is an electric meter's map: it cannot serve "
                           f"--type {meter_type}")
    return profile


def inverter_profile_named(value: str) -> Profile | None:
    """The map --inverter-profile names: None for the built-in chain (hybrid.chain builds it for
    the site's configuration), else a built-in inverter map (INVERTER_BUILT_IN) or a map file of
    type electric or inverter, checked for a site's inverter; ProfileError with one line when it
    cannot serve one."""
    name = value.lower()
    if name == INVERTER_CHAIN:
        return None
    if name in INVERTER_BUILT_IN:
        profile = built_in(name)
    elif not is_file(value):
        raise ProfileError(f"--inverter-profile must be {', '.join(INVERTER_PROFILES)} or a map file "
                           f"(.toml), not {value!r}")
    else:
        try:
            profile = mapfile.load_map(value, None, types=INVERTER_MAP_TYPES)
        except mapfile.MapError as exc:
            raise ProfileError(str(exc)) from None
    check(profile, served_as="inverter")  # whatever type the file names, the inverter serves it
    return profile


_COMPILED: dict[tuple[int, str], CompiledMap] = {}


def check(profile: Profile, meter_type: str | None = None, served_as: str | None = None) -> None:
    """ProfileError with one line unless the profile encodes every reachable tick for each meter
    type it can serve: served_as (a site's inverter), else its own type, else --type (meter_type),
    else any. What compiles is kept."""
    served = served_as or profile.meter_type or meter_type
    for kind in (served,) if served else METER_TYPES:
        try:
            _COMPILED[(id(profile), kind)] = check_encodes(profile, kind)
        except EncodeError as exc:
            raise ProfileError(f"profile {profile.source}: {exc}") from None


def compiled(profile: Profile, meter_type: str) -> CompiledMap:
    """The profile's map compiled for a meter type, once per process (by identity: hashing a
    whole map for each of 10,000 meters would cost more than compiling it)."""
    key = (id(profile), meter_type)
    found = _COMPILED.get(key)
    if found is None or found.profile is not profile:
        found = _COMPILED[key] = compile_map(profile, meter_type)
    return found
