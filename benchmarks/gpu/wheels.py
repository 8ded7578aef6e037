"""The carried wheels of the GPU run: checked here before they travel, completed on the device if need be.

    python benchmarks/gpu/wheels.py check DIR DEVICE_LIST NAME==VERSION...   (fetch_wheels.sh, here)
    python benchmarks/gpu/wheels.py needed DIR/fallback                     (run.sh, on the device)

`check` removes wheels of DIR that are not pinned (one version of each must travel), then fails when a
pinned package is on the device already or a requirement of a carried wheel is neither carried nor on the
device; it prints, one a line, the device's packages that carried wheels need at a minimum version, which
fetch_wheels.sh then fetches as fallbacks. `needed` prints the fallback wheels whose requirement the
device's own version does not meet, for run.sh to install beside the others. Needs only `packaging`.
"""

from __future__ import annotations

import logging
import re
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

log = logging.getLogger("wheels")

# The device's interpreter and platform, for the requirements' environment markers.
DEVICE_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
# A requirement met by another distribution of the same module (cv2 either way).
PROVIDED_BY = {"opencv-python": "opencv-python-headless"}
REQUIREMENTS_FILE = "requirements.txt"


def normalize(name: str) -> str:
    """The PEP 503 form of a project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_project(path: Path) -> tuple[str, str]:
    """(normalized name, version) from a wheel's file name."""
    name, version = path.name.split("-")[:2]
    return normalize(name), version


def requirements(path: Path) -> list[Requirement]:
    """The requirements of a wheel that apply on the device (extras and other platforms left out)."""
    with zipfile.ZipFile(path) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(archive.read(meta).decode())
    found = [Requirement(line) for line in headers.get_all("Requires-Dist") or []]
    return [r for r in found if r.marker is None or r.marker.evaluate(DEVICE_ENV)]


def prune(folder: Path, pins: dict[str, str]) -> list[Path]:
    """Remove the wheels of `folder` that are not pinned; the wheels that stay."""
    kept = []
    for path in sorted(folder.glob("*.whl")):
        name, version = wheel_project(path)
        if pins.get(name) == version:
            kept.append(path)
        else:
            log.info("removing %s (not pinned)", path.name)
            path.unlink()
    return kept


def check(folder: Path, device_list: Path, pins: dict[str, str]) -> tuple[list[str], list[str]]:
    """Errors of the carried set, and the device packages needed at a floor (merged specifiers)."""
    device = {normalize(n) for n in device_list.read_text().split() if not n.startswith("#")}
    errors = [f"{name} is on the device already: do not carry it" for name in pins if name in device]
    wheels = prune(folder, pins)
    errors += [f"{name}=={version}: no wheel in {folder}" for name, version in pins.items()
               if name not in {wheel_project(w)[0] for w in wheels}]
    floors: dict[str, SpecifierSet] = {}
    for wheel in wheels:
        for req in requirements(wheel):
            name = normalize(PROVIDED_BY.get(normalize(req.name), req.name))
            if name in pins:
                if not req.specifier.contains(pins[name], prereleases=True):
                    errors.append(f"{wheel.name} needs {req}, but {name}=={pins[name]} is carried")
            elif name in device:
                if str(req.specifier):
                    floors[name] = floors.get(name, SpecifierSet()) & req.specifier
            else:
                errors.append(f"{wheel.name} needs {req}: neither carried nor on the device")
    for message in errors:
        log.error("%s", message)
    return errors, [f"{name}{spec}" for name, spec in sorted(floors.items())]


def needed(fallback: Path) -> list[Path]:
    """The fallback wheels whose requirement the installed version does not meet."""
    lines = (fallback / REQUIREMENTS_FILE).read_text().split() if (fallback / REQUIREMENTS_FILE).is_file() else []
    wheels = {wheel_project(w)[0]: w for w in fallback.glob("*.whl")}
    missing = []
    for req in map(Requirement, lines):
        try:
            installed = Version(metadata.version(req.name))
        except metadata.PackageNotFoundError:
            installed = None
        if (installed is None or not req.specifier.contains(installed, prereleases=True)) and normalize(req.name) in wheels:
            log.warning("%s: the device has %s; installing the carried fallback", req, installed or "none")
            missing.append(wheels[normalize(req.name)])
    return missing


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="wheels: %(message)s", stream=sys.stderr)
    if len(argv) >= 3 and argv[0] == "check":
        pins = {normalize(name): version for name, version in (p.split("==") for p in argv[3:])}
        errors, floors = check(Path(argv[1]), Path(argv[2]), pins)
        print("\n".join(floors))
        return 1 if errors else 0
    if len(argv) == 2 and argv[0] == "needed":
        print(" ".join(str(p) for p in needed(Path(argv[1]))))
        return 0
    log.error("usage: wheels.py check DIR DEVICE_LIST NAME==VERSION... | wheels.py needed FALLBACK_DIR")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
