import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from lib_fusion import cli

PNG = base64.b64encode(b"\x89PNG fake").decode()


class FakeApi(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeApi.received.append((self.path, body))
        args = body["alwayson_scripts"]["model fusion"]["args"][0]
        status, payload = (200, {"images": [PNG]}) if args["model"] != "missing" else (500, {"errors": "Model Fusion: not found"})
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    FakeApi.received = []
    server = HTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_three_outputs_from_one_seed(api, tmp_path):
    argv = ["--url", api, "--model0", "general", "--model1", "cartoon", "--prompt", "a lion", "--prompt1", "a cartoon lion"]
    assert cli.main([*argv, "--fusion_selection", "600,1,1", "--mode", "2", "--outdir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused", "model0_alone", "model1_alone"]
    bodies = {b["alwayson_scripts"]["model fusion"]["args"][0]["mode"]: b for _, b in FakeApi.received}
    assert {b["seed"] for _, b in FakeApi.received} == {42}
    assert [b["alwayson_scripts"]["model fusion"]["args"][0]["solo"] for _, b in FakeApi.received] == ["active", "fusion", "active"]
    assert bodies[2]["override_settings"] == {"sd_model_checkpoint": "general"}
    assert (tmp_path / "fused" / "42_00.png").read_bytes() == base64.b64decode(PNG)


def test_bad_arguments_fail_before_any_request(api, tmp_path, capsys):
    argv = ["--url", api, "--model0", "a", "--model1", "b", "--prompt", "x", "--fusion_selection", "600,1"]
    assert cli.main([*argv, "--outdir", str(tmp_path)]) == 2
    assert "three comma-separated" in capsys.readouterr().err
    assert FakeApi.received == []


def test_api_errors_are_reported(api, tmp_path, capsys):
    argv = ["--url", api, "--model0", "a", "--model1", "missing", "--prompt", "x", "--outdir", str(tmp_path)]
    assert cli.main(argv) == 1
    assert "Model Fusion: not found" in capsys.readouterr().err
