#!/usr/bin/env python3
"""Captures tests/fixtures/invokeai/ from the rig's running InvokeAI.

    scripts/invokeai-rig start >/dev/null
    target/invokeai/venv/bin/pip install websocket-client   # once: python-socketio's websocket transport
    target/invokeai/venv/bin/python scripts/invokeai_rig/capture_fixtures.py
    scripts/invokeai-rig stop

Reads target/invokeai/rig.json (url, model identifiers), uploads a source
image, a mask and a control image, and enqueues — one at a time, each waited
for — txt2img (reference only), txt2img + LoRA, img2img, inpaint, and
txt2img + LoRA + ControlNet, while a socket.io client subscribed to the
queue as the web UI does records every event. Writes:

    graph-txt2img-lora.json graph-img2img.json graph-inpaint.json graph-controlnet.json
        the graphs exactly as enqueued (model identifiers and uploaded image names as sent)
    events-progress.json   the socket.io events of the txt2img + LoRA run (previews trimmed)
    queue-item.json        the ControlNet run's queue item as GET /api/v1/queue/default/i/{id} returns it
    models.json            GET /api/v2/models/

and prints a summary (timings, checks on the output images) as JSON on stdout.
"""

import argparse
import io
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import socketio
from websockets.sync.client import connect as ws_connect
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[2]
QUEUE = "default"
SIZE = 64
STEPS = 4
PROMPT = "a photo of a red cat"


def say(*parts) -> None:
    print("capture:", *parts, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ trimming
def trim(value, depth=0):
    """Data URLs and very long strings shortened; long lists cut to a few entries."""
    if isinstance(value, str):
        if value.startswith("data:") and len(value) > 80:
            return value[:48] + f"...<trimmed, {len(value)} chars>"
        if len(value) > 2000:
            return value[:600] + f"...<trimmed, {len(value)} chars>"
        return value
    if isinstance(value, list):
        if len(value) > 64:
            return [trim(v, depth + 1) for v in value[:8]] + [f"<trimmed, {len(value)} items>"]
        return [trim(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: trim(v, depth + 1) for k, v in value.items()}
    return value


def write(out: Path, name: str, data) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    (out / name).write_text(text)
    say(f"wrote {name} ({len(text) / 1024:.1f} KiB)")


# ------------------------------------------------------------------ events
class EventLog:
    """Every socket.io event, with the time it arrived."""

    def __init__(self, url: str):
        self.events: list[tuple[float, str, dict]] = []
        self.lock = threading.Lock()
        # The websocket transport, as the web UI ends up on. Trap: InvokeAI
        # 6.14.2's engine.io long-polling is broken behind its gzip middleware
        # (a polling GET that accepts gzip gets HTTP 500; with
        # `Accept-Encoding: identity` some polling payloads still arrive
        # undecodable and python-socketio drops the connection mid-run).
        # python-socketio needs websocket-client for this transport.
        try:
            import websocket  # noqa: F401  (websocket-client)
        except ImportError:
            sys.exit("capture: python-socketio needs websocket-client: "
                     f"{sys.executable} -m pip install websocket-client")
        debug = bool(os.environ.get("CAPTURE_DEBUG"))
        self.sio = socketio.Client(reconnection=False, logger=debug, engineio_logger=debug)
        self.sio.on("*", self._any)
        self.url = url

    def _any(self, event, data=None):
        with self.lock:
            self.events.append((time.monotonic(), event, data))

    def connect(self):
        # The web UI: socket.io at /ws/socket.io, then `subscribe_queue` {queue_id}.
        self.sio.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"], wait_timeout=20)
        self.sio.emit("subscribe_queue", {"queue_id": QUEUE})
        say("socket.io connected, transport", self.sio.transport())

    def mark(self) -> int:
        with self.lock:
            return len(self.events)

    def since(self, mark: int) -> list[tuple[float, str, dict]]:
        with self.lock:
            return list(self.events[mark:])


class WireLog:
    """The same events as raw socket.io-over-websocket text frames, the way a
    client without a socket.io library (tokio-tungstenite) sees them:
    engine.io v4 straight on the websocket transport, no polling handshake."""

    def __init__(self, url: str):
        self.ws_url = url.replace("http://", "ws://") + "/ws/socket.io/?EIO=4&transport=websocket"
        self.frames: list[tuple[float, str, str]] = []  # (time, direction, text)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _log(self, direction: str, text: str) -> None:
        with self.lock:
            self.frames.append((time.monotonic(), direction, text))

    def _send(self, ws, text: str) -> None:
        self._log("sent", text)
        ws.send(text)

    def _run(self) -> None:
        with ws_connect(self.ws_url, open_timeout=20, max_size=None) as ws:
            self._log("received", ws.recv())  # 0{"sid", "pingInterval", ...}: engine.io open
            self._send(ws, "40")  # socket.io connect, default namespace, no auth
            self._log("received", ws.recv())  # 40{"sid": ...}
            self._send(ws, '42["subscribe_queue",{"queue_id":"%s"}]' % QUEUE)
            self.ready.set()
            while not self.stop.is_set():
                try:
                    text = ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                self._log("received", text)
                if text == "2":  # engine.io ping -> pong
                    self._send(ws, "3")

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(20):
            raise RuntimeError(f"no socket.io handshake on {self.ws_url}")
        say("raw websocket subscribed:", self.ws_url)

    def mark(self) -> int:
        with self.lock:
            return len(self.frames)

    def since(self, mark: int) -> list[tuple[float, str, str]]:
        with self.lock:
            return list(self.frames[mark:])


# ------------------------------------------------------------------ images
def inputs() -> dict[str, Image.Image]:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    source = Image.fromarray(np.stack([xx * 4, yy * 4, 255 - xx * 2], -1).astype(np.uint8), "RGB")
    # create_gradient_mask: black (0) = repaint, white (255) = keep.
    mask = Image.new("L", (SIZE, SIZE), 255)
    ImageDraw.Draw(mask).rectangle([24, 24, 39, 39], fill=0)
    control = Image.new("RGB", (SIZE, SIZE), "black")  # an edge map, as canny would give
    d = ImageDraw.Draw(control)
    d.rectangle([10, 10, 53, 53], outline="white", width=2)
    d.line([10, 53, 53, 10], fill="white", width=2)
    return {"source": source, "mask": mask, "control": control}


def upload(c: httpx.Client, img: Image.Image, filename: str, category: str) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    r = c.post(
        "/api/v1/images/upload",
        params={"image_category": category, "is_intermediate": "false"},
        files={"file": (filename, buf.getvalue(), "image/png")},
    )
    r.raise_for_status()
    return r.json()["image_name"]


def fetch_image(c: httpx.Client, name: str, mode="RGB") -> np.ndarray:
    r = c.get(f"/api/v1/images/i/{name}/full")
    r.raise_for_status()
    return np.asarray(Image.open(io.BytesIO(r.content)).convert(mode), dtype=np.int16)


# ------------------------------------------------------------------ graphs
class GraphBuilder:
    def __init__(self, gid: str):
        self.nodes: dict[str, dict] = {}
        self.edges: list[dict] = []
        self.id = gid

    def add(self, node_id: str, kind: str, **fields) -> str:
        # use_cache false: InvokeAI otherwise returns a cached output for a node
        # identical to one it ran before (across sessions).
        self.nodes[node_id] = {"id": node_id, "type": kind, **fields, "use_cache": False}
        return node_id

    def link(self, src: str, src_field: str, dst: str, dst_field: str) -> None:
        self.edges.append(
            {"source": {"node_id": src, "field": src_field}, "destination": {"node_id": dst, "field": dst_field}}
        )

    def json(self) -> dict:
        return {"id": self.id, "nodes": self.nodes, "edges": self.edges}


def sd1_graph(name, models, *, seed=1234, lora_weight=None, control=None, source=None, strength=None, mask=None):
    """The SD-1 graph shapes of the backend: txt2img, with a LoRA, a ControlNet,
    from a source image (img2img), or from a source image and a mask (inpaint)."""
    g = GraphBuilder(f"rig-{name}")
    g.add("model", "main_model_loader", model=models["main"])
    unet, clip = ("model", "unet"), ("model", "clip")
    if lora_weight is not None:
        g.add("lora", "lora_loader", lora=models["lora"], weight=lora_weight)
        g.link(*unet, "lora", "unet")
        g.link(*clip, "lora", "clip")
        unet, clip = ("lora", "unet"), ("lora", "clip")
    g.add("positive", "compel", prompt=PROMPT)
    g.add("negative", "compel", prompt="")
    g.link(*clip, "positive", "clip")
    g.link(*clip, "negative", "clip")
    g.add("noise", "noise", seed=seed, width=SIZE, height=SIZE, use_cpu=True)
    g.add(
        "denoise",
        "denoise_latents",
        steps=STEPS,
        cfg_scale=7.5,
        scheduler="euler",
        denoising_start=0.0 if strength is None else round(1.0 - strength, 4),
        denoising_end=1.0,
    )
    g.link(*unet, "denoise", "unet")
    g.link("positive", "conditioning", "denoise", "positive_conditioning")
    g.link("negative", "conditioning", "denoise", "negative_conditioning")
    g.link("noise", "noise", "denoise", "noise")
    if control is not None:
        g.add(
            "control",
            "controlnet",
            image={"image_name": control},
            control_model=models["controlnet"],
            control_weight=0.8,
            begin_step_percent=0.0,
            end_step_percent=0.75,
            control_mode="balanced",
            resize_mode="just_resize",
        )
        g.link("control", "control", "denoise", "control")
    if source is not None:
        g.add("source", "i2l", image={"image_name": source}, fp32=True)
        g.link("model", "vae", "source", "vae")
        g.link("source", "latents", "denoise", "latents")
    decode = g.add("decode", "l2i", fp32=True, is_intermediate=mask is not None)
    g.link("denoise", "latents", "decode", "latents")
    g.link("model", "vae", "decode", "vae")
    out = decode
    if mask is not None:
        # As the 6.14 canvas builds it for an SD-1 model: a gradient mask for the
        # denoise (image/vae/unet connected too; they matter only for inpainting
        # models), then the result blended over the source through the expanded,
        # faded mask so pixels outside it stay the source's.
        g.add(
            "mask",
            "create_gradient_mask",
            mask={"image_name": mask},
            image={"image_name": source},
            edge_radius=8,
            coherence_mode="Gaussian Blur",
            minimum_denoise=0.0,
            fp32=True,
        )
        g.link("model", "vae", "mask", "vae")
        g.link(*unet, "mask", "unet")
        g.link("mask", "denoise_mask", "denoise", "denoise_mask")
        g.add("fade", "expand_mask_with_fade", fade_size_px=8)
        g.link("mask", "expanded_mask_area", "fade", "mask")
        out = g.add("output", "invokeai_img_blend", layer_base={"image_name": source}, is_intermediate=False)
        g.link("decode", "image", "output", "layer_upper")
        g.link("fade", "image", "output", "mask")
    return g.json(), out


# ------------------------------------------------------------------ runs
def graph_time_from_log(log: Path, session_id: str) -> float | None:
    if not log.exists():
        return None
    text = log.read_text(errors="replace")
    i = text.find(f"Graph stats: {session_id}")
    if i < 0:
        return None
    m = re.search(r"TOTAL GRAPH EXECUTION TIME:\s*([0-9.]+)s", text[i:])
    return float(m.group(1)) if m else None


def run(c: httpx.Client, graph: dict) -> tuple[dict, float]:
    t = time.monotonic()
    r = c.post(f"/api/v1/queue/{QUEUE}/enqueue_batch", json={"batch": {"graph": graph, "runs": 1}, "prepend": False})
    if r.status_code >= 400:
        raise RuntimeError(f"{graph['id']}: enqueue HTTP {r.status_code}: {r.text[:3000]}")
    item_id = r.json()["item_ids"][0]
    while True:
        item = c.get(f"/api/v1/queue/{QUEUE}/i/{item_id}").json()
        if item["status"] in ("completed", "failed", "canceled"):
            break
        time.sleep(0.05)
    wall = time.monotonic() - t
    if item["status"] != "completed":
        raise RuntimeError(
            f"{graph['id']}: {item['status']}: {item.get('error_type')}: {item.get('error_message')}\n"
            f"{item.get('error_traceback')}"
        )
    return item, wall


def output_image(item: dict, node: str) -> str:
    session = item["session"]
    prepared = session["source_prepared_mapping"][node][0]
    return session["results"][prepared]["image"]["image_name"]


def trim_frame(text: str) -> str:
    """A socket.io EVENT frame (42[name, data]) with its data trimmed and the
    invocation's fields elided; other frames as they are."""
    if not text.startswith("42"):
        return text
    name, *rest = json.loads(text[2:])
    data = trim(rest[0]) if rest else None
    if isinstance(data, dict) and isinstance(data.get("invocation"), dict):
        inv = data["invocation"]
        data["invocation"] = {"id": inv.get("id"), "type": inv.get("type"), "...": "the node's other fields"}
    return "42" + json.dumps([name, data], separators=(",", ":"))


def wire_fixture(handshake: list[tuple[float, str, str]], frames: list[tuple[float, str, str]]) -> dict:
    kinds, examples = [], []
    for _, direction, text in frames:
        kind = text[: text.find(",")] + "," if text.startswith("42") else text
        if kind not in kinds:
            kinds.append(kind)
        denoising = text.startswith('42["invocation_progress"') and '"message":"Denoising"' in text
        if denoising and not examples:
            examples.append({"direction": direction, "frame": trim_frame(text)})
    return {
        "about": "The same run seen as raw text frames on ws://HOST:PORT/ws/socket.io/?EIO=4&transport=websocket "
        "(engine.io 4 / socket.io 5 protocol; 0 = open, 40 = connect, 42 = event, 2/3 = ping/pong; "
        "no polling first). `handshake`: every frame from the open to the subscription; `kinds`: the "
        "distinct frame starts during the run; `examples`: the first Denoising progress frame "
        "(preview trimmed, the invocation's fields elided).",
        "handshake": [{"direction": d, "frame": f} for _, d, f in handshake],
        "kinds": kinds,
        "examples": examples,
    }


def progress_fixture(events: list[tuple[float, str, dict]], graph_file: str) -> dict:
    t0 = events[0][0] if events else 0.0
    sequence, first, progress = [], {}, []
    for t, name, data in events:
        row = {"t_ms": round((t - t0) * 1000), "event": name}
        if isinstance(data, dict):
            if "invocation_source_id" in data:
                row["node"] = data["invocation_source_id"]
                row["type"] = data.get("invocation", {}).get("type")
            for k in ("status", "message", "percentage"):
                if k in data:
                    row[k] = data[k]
            if name == "invocation_progress":
                row["image"] = (
                    None if data.get("image") is None else {k: data["image"][k] for k in ("width", "height")}
                )
                progress.append(trim({k: v for k, v in data.items() if k != "invocation"}))
        sequence.append(row)
        if name not in first:
            first[name] = trim(data)
    return {
        "about": "socket.io events received while " + graph_file + " ran (python-socketio client, "
        "path /ws/socket.io, emitted subscribe_queue {queue_id: 'default'} after connecting). "
        "`sequence`: every event in arrival order; `invocation_progress`: each progress payload "
        "without its `invocation` (the node's full fields, as in `first_of_each`); "
        "`first_of_each`: the first payload of each event name. Preview data URLs trimmed.",
        "sequence": sequence,
        "invocation_progress": progress,
        "first_of_each": first,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rig", type=Path, default=REPO / "target/invokeai/rig.json")
    ap.add_argument("--out", type=Path, default=REPO / "tests/fixtures/invokeai")
    args = ap.parse_args()
    rig = json.loads(args.rig.read_text())
    url, models = rig["url"], rig["models"]
    model_ids = {role: {k: m[k] for k in ("key", "hash", "name", "base", "type")} for role, m in models.items()}
    log = args.rig.parent / "server.log"
    args.out.mkdir(parents=True, exist_ok=True)

    events = EventLog(url)
    events.connect()
    wire = WireLog(url)
    wire.start()
    handshake = wire.since(0)
    c = httpx.Client(base_url=url, timeout=60)
    version = c.get("/api/v1/app/version").json()["version"]

    imgs = inputs()
    names = {
        "source": upload(c, imgs["source"], "rig-source.png", "user"),
        "mask": upload(c, imgs["mask"], "rig-mask.png", "mask"),
        "control": upload(c, imgs["control"], "rig-control.png", "control"),
    }
    say("uploaded", names)

    plan = {
        "txt2img": dict(),
        "txt2img-lora": dict(lora_weight=0.75),
        "img2img": dict(source=names["source"], strength=0.6),
        "inpaint": dict(source=names["source"], strength=1.0, mask=names["mask"]),
        "controlnet": dict(lora_weight=0.75, control=names["control"]),
    }
    summary = {"invokeai_version": version, "url": url, "uploaded": names, "runs": {}, "checks": {}}
    outputs, items, graphs, run_events, run_frames = {}, {}, {}, {}, {}
    for name, opts in plan.items():
        graph, out_node = sd1_graph(name, model_ids, **opts)
        mark, wire_mark = events.mark(), wire.mark()
        item, wall = run(c, graph)
        time.sleep(0.5)  # the last events (queue_item_status_changed completed) trail the HTTP state
        run_events[name] = events.since(mark)
        run_frames[name] = wire.since(wire_mark)
        got = [e for _, e, _ in run_events[name]]
        sent = [json.loads(f[2:])[0] for _, d, f in run_frames[name] if d == "received" and f.startswith("42")]
        if got != sent or not got or got[-1] != "queue_item_status_changed":
            raise RuntimeError(f"{name}: python-socketio got {len(got)} events, the raw websocket {len(sent)}")
        graphs[name], items[name] = graph, item
        outputs[name] = output_image(item, out_node)
        summary["runs"][name] = {
            "item_id": item["item_id"],
            "session_id": item["session_id"],
            "wall_s": round(wall, 3),
            "graph_execution_s (server.log)": graph_time_from_log(log, item["session_id"]),
            "started_at": item.get("started_at"),
            "completed_at": item.get("completed_at"),
            "output": outputs[name],
            "events": len(run_events[name]),
            "denoising_percentages": [
                d["percentage"]
                for _, e, d in run_events[name]
                if e == "invocation_progress" and d.get("message") == "Denoising"
            ],
        }
        say(f"{name}: completed, {wall:.2f} s wall, output {outputs[name]}")

    # ---- checks on the images: each feature must change the output
    px = {k: fetch_image(c, v) for k, v in outputs.items()}
    source = np.asarray(imgs["source"], dtype=np.int16)
    ch = summary["checks"]
    ch["lora_vs_txt2img_mean_abs_diff"] = float(np.abs(px["txt2img-lora"] - px["txt2img"]).mean())
    ch["controlnet_vs_txt2img_lora_mean_abs_diff"] = float(np.abs(px["controlnet"] - px["txt2img-lora"]).mean())
    ch["img2img_vs_source_mean_abs_diff"] = float(np.abs(px["img2img"] - source).mean())
    sess = items["inpaint"]["session"]
    expanded_name = sess["results"][sess["source_prepared_mapping"]["mask"][0]]["expanded_mask_area"]["image_name"]
    expanded = fetch_image(c, expanded_name, "L")
    keep = expanded == 255
    diff = np.abs(px["inpaint"] - source)
    hole = np.asarray(imgs["mask"]) == 0
    ch["inpaint_kept_fraction"] = float(keep.mean())
    # the fade (expand_mask_with_fade) reaches fade_size_px beyond the expanded area
    far = np.asarray(Image.fromarray((keep * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(17))) == 255
    ch["inpaint_far_outside_max_abs_diff"] = int(diff[far].max()) if far.any() else None
    ch["inpaint_hole_mean_abs_diff"] = float(diff[hole].mean())
    failed = [
        k
        for k, ok in (
            ("lora_vs_txt2img_mean_abs_diff", ch["lora_vs_txt2img_mean_abs_diff"] > 0.5),
            ("controlnet_vs_txt2img_lora_mean_abs_diff", ch["controlnet_vs_txt2img_lora_mean_abs_diff"] > 0.5),
            ("img2img_vs_source_mean_abs_diff", ch["img2img_vs_source_mean_abs_diff"] > 1),
            ("inpaint_far_outside_max_abs_diff", ch["inpaint_far_outside_max_abs_diff"] == 0),
            ("inpaint_hole_mean_abs_diff", ch["inpaint_hole_mean_abs_diff"] > 1),
        )
        if not ok
    ]
    if failed:
        print(json.dumps(summary, indent=2))
        raise SystemExit(f"capture: checks failed: {failed}")

    # ---- fixtures
    for name in ("txt2img-lora", "img2img", "inpaint", "controlnet"):
        write(args.out, f"graph-{name}.json", graphs[name])
    progress = progress_fixture(run_events["txt2img-lora"], "graph-txt2img-lora.json")
    progress["wire"] = wire_fixture(handshake, run_frames["txt2img-lora"])
    write(args.out, "events-progress.json", progress)
    item = c.get(f"/api/v1/queue/{QUEUE}/i/{items['controlnet']['item_id']}").json()
    write(args.out, "queue-item.json", trim(item))
    write(args.out, "models.json", c.get("/api/v2/models/").json())

    t = time.monotonic()
    wire.stop.set()
    wire.thread.join(5)
    events.sio.disconnect()
    say(f"disconnected in {time.monotonic() - t:.1f} s")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
