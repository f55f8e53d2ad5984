"""The project's habits: the build-system table, the license, the changelog, scripts/ and tox.

`tox -e dist` builds and installs the distributions (tests/dist_check.py) and `tox -e lint`
runs ruff; these checks keep the files those rely on as the docs say they are.
"""
from __future__ import annotations

import configparser
import re

from meter_simulator import __version__
from support import ROOT


def tox() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini", encoding="utf-8")
    return config


def test_pyproject_holds_only_the_build_system_table():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert [line for line in lines if line.startswith("[")] == ["[build-system]"]
    assert 'build-backend = "setuptools.build_meta"' in lines
    assert any(re.fullmatch(r'requires = \["setuptools>=\d+"\]', line) for line in lines), lines


def test_the_license_file_is_the_license_setup_cfg_names():
    setup = configparser.ConfigParser(interpolation=None)
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    assert setup["metadata"]["license"] == "MIT"
    assert setup["metadata"]["license_files"] == "LICENSE"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert "Permission is hereby granted, free of charge" in text


def test_the_changelog_has_a_section_for_this_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert any(re.fullmatch(rf"{re.escape(__version__)} - \d{{4}}-\d{{2}}-\d{{2}}", h) for h in headings)


def test_tox_runs_lint_and_the_distributions_after_every_python():
    config = tox()
    # sdm630: the SDM630 profile through the sdm_modbus client, which needs a pymodbus of its own;
    # browser: the dashboard in headless Chromium, once
    assert [env.strip() for env in config["tox"]["envlist"].split(",")] == [
        "py39", "py310", "py311", "py312", "py313", "sdm630", "browser", "lint", "dist"]
    browser = config["testenv:browser"]
    assert "browser" in browser["extras"] and "CI" in browser["pass_env"]
    assert "tests/test_dashboard_browser.py" in browser["commands"]
    assert config["testenv:lint"]["commands"].strip() == "ruff check {posargs:.}"
    assert re.fullmatch(r"ruff==[\d.]+", config["testenv:lint"]["deps"].strip())
    dist = config["testenv:dist"]["commands"]
    assert "python -m build --outdir {envtmpdir}/dist {toxinidir}" in dist
    assert "tests/dist_check.py {envtmpdir}/dist" in dist
    ruff = (ROOT / "ruff.toml").read_text(encoding="utf-8")
    assert re.search(r'^select = \[.*"I".*\]', ruff, re.MULTILINE), "import order is checked"


def test_scripts_holds_the_program_the_unit_and_the_tools():
    """scripts/ is what users run (the program, the unit); the tools for working on the
    simulator are in folders of their own: bench/ (measurements) and dev/."""
    scripts = ROOT / "scripts"
    assert sorted(p.name for p in scripts.iterdir() if p.name != "__pycache__") == [
        "bench", "dev", "run_meter.py", "systemd"]
    dev = sorted(p.name for p in (scripts / "dev").iterdir() if p.suffix == ".py")
    assert dev == ["dashboard_screenshot.py"]
    readme = (scripts / "dev" / "README.md").read_text(encoding="utf-8")
    for tool in dev:
        assert f"[`{tool}`]({tool})" in readme, f"scripts/dev/README.md describes {tool}"
    readme = (scripts / "bench" / "README.md").read_text(encoding="utf-8")
    tools = sorted(p.name for p in (scripts / "bench").iterdir()
                   if p.suffix in (".py", ".c"))
    assert tools == ["benchmark.py", "fault_scale.py", "kill9_loss.py", "loadgen.c", "ref_server.py",
                     "save_latency.py", "soak.py"]
    for tool in tools:
        assert f"[`{tool}`]({tool})" in readme, f"scripts/bench/README.md describes {tool}"
