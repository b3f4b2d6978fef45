#!/usr/bin/env python3
"""Our worker's overhead per job around a real InvokeAI (the rig's).

    scripts/invokeai-rig start
    python3 scripts/invokeai_rig/overhead.py target/release/pingvas [RUNS]

Starts `pingvas serve` (the given binary: build it with `cargo build
--release -p pingvas-host --bin pingvas`) on a fresh data dir with its
in-process worker on the `invokeai` backend at the rig's URL
(target/invokeai/rig.json), then runs each operation RUNS times (after one
warm-up) and prints, per job kind, the medians of: InvokeAI's own time
(queue item created_at -> completed_at), our time before it (job
started_at, the lease -> item created_at) and after it (item completed_at
-> job completed_at). Standard library only.
"""

import base64
import io
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RIG = json.load(open(os.environ.get("INVOKEAI_RIG_JSON", os.path.join(REPO, "target/invokeai/rig.json"))))
INVOKE = RIG["url"]

MODELS = os.path.join(REPO, "scripts/invokeai_rig/models.toml")


def png(w, h, rgb):
    """A flat PNG, base64."""
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return base64.b64encode(data).decode()


def call(method, url, body=None, token=None):
    req = urllib.request.Request(url, method=method)
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {url}: {e.code} {e.read()[:300]}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rfc3339(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def invoke_time(text):
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)


def newest_item():
    ids = call("GET", f"{INVOKE}/api/v1/queue/default/item_ids")
    ids = ids["item_ids"] if isinstance(ids, dict) else ids
    return call("GET", f"{INVOKE}/api/v1/queue/default/i/{max(ids)}")


def main():
    binary = os.path.abspath(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    data = tempfile.mkdtemp(prefix="pingvas-overhead-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PINGVAS_ADDR=f"127.0.0.1:{port}", PINGVAS_DATA_DIR=data,
               PINGVAS_MODELS_FILE=MODELS, PINGVAS_WORKER_BACKEND="invokeai",
               PINGVAS_WORKER_BACKEND_URL=INVOKE, PINGVAS_RATE_LIMITS_ENABLED="false",
               PINGVAS_WORKER_MODELS="rig-sd1,rig-sd1-lora,rig-sd1-controlnet,real-esrgan",
               RUST_LOG="warn")
    server = subprocess.Popen([binary, "serve"], cwd=data, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/healthz")
                break
            except OSError:
                time.sleep(0.05)
        email = "bench@example.com"
        creds = {"email": email, "password": "SecurePass123!"}
        call("POST", f"{base}/api/v1/auth/register", creds)
        subprocess.run([binary, "admin", "grant-credits", email, "100000"], cwd=data, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        token = call("POST", f"{base}/api/v1/auth/login", creds)["data"]["access_token"]
        t2i = {"prompt": "a red cat", "model": "rig-sd1", "width": 64, "height": 64, "steps": 4, "seed": 7}
        cases = [
            ("text-to-image", "text-to-image", t2i),
            ("+LoRA", "text-to-image", dict(t2i, loras=[{"name": "rig-sd1-lora", "weight": 1.0}])),
            ("image-to-image", "image-to-image", dict(t2i, source_image=png(64, 64, (200, 40, 40)), strength=0.6)),
            ("inpaint", "inpaint", {"prompt": "a red cat", "model": "rig-sd1", "steps": 4, "seed": 7,
                                    "source_image": png(64, 64, (200, 40, 40)),
                                    "mask_image": png(64, 64, (255, 255, 255))}),
            ("+ControlNet", "text-to-image",
             dict(t2i, controlnet={"model": "rig-sd1-controlnet", "image": png(64, 64, (250, 250, 250)), "weight": 1.0})),
            ("upscale", "upscale", {"image": png(64, 64, (200, 40, 40)), "scale": 2}),
        ]
        print(f"medians of {runs} runs each (after one warm-up), {binary}")
        print("| job | InvokeAI | lease → enqueue | done → stored | overhead | overhead ÷ InvokeAI "
              "| lease → call | call → enqueue | done → call returned | returned → stored |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, kind, body in cases:
            rows = []
            for i in range(runs + 1):
                job = call("POST", f"{base}/api/v1/generate/{kind}", body, token)["data"]["job_id"]
                while True:
                    d = call("GET", f"{base}/api/v1/queue/items/{job}", token=token)["data"]
                    if d["status"] in ("completed", "failed", "cancelled"):
                        break
                    time.sleep(0.02)
                assert d["status"] == "completed", d
                item = newest_item()
                assert item["status"] == "completed", item
                ms = lambda delta: delta.total_seconds() * 1e3
                created, completed = invoke_time(item["created_at"]), invoke_time(item["completed_at"])
                before = ms(created - rfc3339(d["started_at"]))
                after = ms(rfc3339(d["completed_at"]) - completed)
                invoke = ms(completed - created)
                # The backend's call (gpu_started_at .. gpu_finished_at)
                # splits each side: our worker's own part, and the part in
                # the backend's HTTP calls (uploads and enqueue; hearing
                # the end and the image download).
                lease_to_call = ms(rfc3339(d["gpu_started_at"]) - rfc3339(d["started_at"]))
                call_to_store = ms(rfc3339(d["completed_at"]) - rfc3339(d["gpu_finished_at"]))
                if i > 0:
                    rows.append((invoke, before, after, lease_to_call, before - lease_to_call,
                                 after - call_to_store, call_to_store))
            med = lambda k: statistics.median(r[k] for r in rows)
            inv, bef, aft = med(0), med(1), med(2)
            parts = " | ".join(f"{med(k):.1f}" for k in range(3, 7))
            print(f"| {name} | {inv:.0f} ms | {bef:.1f} ms | {aft:.1f} ms | {bef + aft:.1f} ms | {(bef + aft) / inv:.3f} | {parts} |")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
