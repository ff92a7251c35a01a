"""The README's API examples are valid requests for the argument model."""

import json
import re
from pathlib import Path

from lib_fusion.arguments.args import FusionArgs

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


def test_ci_runs_the_readmes_test_command_exactly():
    section = README[README.index("## Run the tests") :]
    command = re.search(r"```bash\n(.+?)\n```", section, flags=re.S).group(1)
    assert "\n" not in command and ".venv" in command  # one line, in a venv of its own
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text().splitlines()
    assert command in ci


def test_the_install_command_shows_no_unseen_url():
    section = README[README.index("## Install and start") : README.index("## Run the tests")]
    command = re.search(r"```bash\n(.+?)\n```", section, flags=re.S).group(1)
    assert "://" not in command and "extensions/" in command
