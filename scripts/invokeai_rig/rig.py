#!/usr/bin/env python3
"""HTTP side of scripts/invokeai-rig; run with the InvokeAI venv's python (httpx is there).

    rig.py free-port                      print a free TCP port on 127.0.0.1
    rig.py wait-up URL PID TIMEOUT        wait until InvokeAI answers GET /api/v1/app/version
    rig.py install URL MODELS_DIR         install the rig's models, print {"main": {...}, ...}

Messages go to stderr; only results go to stdout.
"""

import json
import os
import socket
import sys
import time
from pathlib import Path

import httpx

# role -> (file in MODELS_DIR, name to install it as, expected base, expected type)
MODELS = {
    "main": ("sd1", "rig-sd1", "sd-1", "main"),
    "lora": ("sd1-lora.safetensors", "rig-sd1-lora", "sd-1", "lora"),
    "controlnet": ("sd1-controlnet", "rig-sd1-controlnet", "sd-1", "controlnet"),
}
INSTALL_TIMEOUT_S = 120


def say(*parts) -> None:
    print("invokeai-rig:", *parts, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still answers kill 0.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def wait_up(url: str, pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            say(f"invokeai-web (pid {pid}) exited before answering")
            return 1
        try:
            r = httpx.get(f"{url}/api/v1/app/version", timeout=2)
            if r.status_code == 200:
                say("server answers:", r.text.strip())
                return 0
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    say(f"invokeai-web did not answer {url} within {timeout:.0f} s")
    return 1


def install_one(c: httpx.Client, path: Path, name: str) -> dict:
    """POST /api/v2/models/install?source=<local path>&inplace=true, then poll the job."""
    r = c.post(
        "/api/v2/models/install",
        params={"source": str(path), "inplace": "true"},
        json={"name": name, "description": "invokeai-rig: tiny random-weight test model"},
    )
    if r.status_code >= 400:
        raise RuntimeError(f"install of {name}: HTTP {r.status_code}: {r.text[:1000]}")
    job = r.json()
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    while job["status"] not in ("completed", "error", "cancelled"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"install of {name}: still {job['status']} after {INSTALL_TIMEOUT_S} s")
        time.sleep(0.1)
        job = c.get(f"/api/v2/models/install/{job['id']}").json()
    if job["status"] != "completed":
        raise RuntimeError(
            f"install of {name}: {job['status']}: {job.get('error_reason')}: {job.get('error')}\n"
            f"{job.get('error_traceback') or ''}"
        )
    return job["config_out"]


def install(url: str, models_dir: Path) -> int:
    out = {}
    with httpx.Client(base_url=url, timeout=60) as c:
        for role, (file, name, base, kind) in MODELS.items():
            path = (models_dir / file).resolve()
            if not path.exists():
                say(f"missing model {path}")
                return 1
            t = time.monotonic()
            cfg = install_one(c, path, name)
            got = (cfg["base"], cfg["type"])
            if got != (base, kind):
                say(f"{name} was classified as {got}, expected {(base, kind)}")
                return 1
            say(f"installed {role}: {name} key={cfg['key']} format={cfg['format']} ({time.monotonic() - t:.2f} s)")
            out[role] = {k: cfg[k] for k in ("key", "name", "base", "hash")} | {"type": cfg["type"]}
    print(json.dumps(out))
    return 0


def main(argv: list[str]) -> int:
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if cmd == "free-port" and not args:
            print(free_port())
            return 0
        if cmd == "wait-up" and len(args) == 3:
            return wait_up(args[0], int(args[1]), float(args[2]))
        if cmd == "install" and len(args) == 2:
            return install(args[0], Path(args[1]))
    except (RuntimeError, httpx.HTTPError) as e:
        say(str(e))
        return 1
    say(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
