"""Print pyproject's dependencies with every upper bound removed (overrides for `make check-latest`)."""

import re
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
for spec in specs:
    name, rest = re.match(r"([A-Za-z0-9_.\-\[\]]+)\s*(.*)", spec).groups()
    lower = [part.strip() for part in rest.split(",") if part.strip().startswith(">=")]
    print(name + ",".join(lower))
