"""The Blender add-on (``scoretrack/blender_addon/``) as a zip for Blender's Install dialog.

``scoretrack --blender-addon scoretrack_blender.zip`` writes it; in Blender, *Edit > Preferences >
Add-ons > Install...* takes the zip (Blender 4.2 and later: *Install from Disk...* in the menu at the
top right), and the add-on appears as "scoretrack" in the Sequencer's sidebar.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from .errors import BadParameterError
from .media import atomic_output

ADDON_SOURCE = Path(__file__).parent / "blender_addon"
ADDON_MODULE = "scoretrack_blender"  # the add-on's module name inside Blender (the zip's folder)


def write_blender_addon(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the add-on's zip to ``path`` (a ``.zip``), every module in one folder as Blender installs it.

    Raises
    ------
    BadParameterError
        ``path`` does not end in ``.zip`` or its folder does not exist.
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise BadParameterError(f"--blender-addon {path}: must name a .zip file (Blender installs add-ons from zips)")
    with atomic_output(path, overwrite=overwrite) as temp:
        with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as archive:
            for module in sorted(ADDON_SOURCE.glob("*.py")):
                archive.write(module, f"{ADDON_MODULE}/{module.name}")
    return path
