"""The README's API examples are valid requests for the argument model."""

import json
import re
from pathlib import Path

from lib_fusion.args import FusionArgs

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_api_example_validates():
    bodies = re.findall(r"-d '(\{.*?\})'\n", README, flags=re.S)
    assert len(bodies) >= 2
    methods = set()
    for body in bodies:
        args = json.loads(body)["alwayson_scripts"]["model fusion"]["args"]
        parsed = FusionArgs.from_script_args(args)
        assert parsed.enabled
        methods.add(parsed.method)
    assert methods == {"snb", "regions"}
