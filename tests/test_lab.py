"""``make lab``: JupyterLab starts on 127.0.0.1 with the platelab kernel and ipywidgets."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

JUPYTER = Path(sys.executable).with_name("jupyter")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_jupyterlab_serves_notebooks_with_platelab_kernel(tmp_path):
    if not JUPYTER.exists():
        pytest.skip("jupyter not installed in this environment")
    port = _free_port()
    token = "platelab-test"
    server = subprocess.Popen(
        [
            str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--notebook-dir={PROJECT_ROOT / 'notebooks'}",
            "--MappingKernelManager.default_kernel_name=platelab",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def get(path):
        request = urllib.request.Request(
            f"{base}{path}", headers={"Authorization": f"token {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status, _ = get("/api/status")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("JupyterLab did not start")
                time.sleep(0.5)
        specs = json.loads(get("/api/kernelspecs")[1])
        assert "platelab" in specs["kernelspecs"]
        assert specs["default"] == "platelab"
        platelab_spec = specs["kernelspecs"]["platelab"]["spec"]
        assert platelab_spec["env"]["FIFTYONE_DO_NOT_TRACK"] == "true"
        contents = json.loads(get("/api/contents")[1])
        names = {item["name"] for item in contents["content"]}
        assert "00_synthesize.ipynb" in names
        status, page = get("/lab")
        assert status == 200 and b"JupyterLab" in page
        extensions = subprocess.run(
            [str(JUPYTER), "labextension", "list"], capture_output=True, text=True, timeout=120
        )
        assert "@jupyter-widgets/jupyterlab-manager" in extensions.stdout + extensions.stderr
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
