#!/usr/bin/env python3
"""Builds the rig's three tiny Stable Diffusion 1 models, with random weights.

Run with the InvokeAI venv's python (it has torch, diffusers, transformers and
safetensors). Nothing is downloaded: every module is made from a config, from
one fixed seed, on the CPU with one thread, so two builds give the same bytes.

    make_models.py --out target/invokeai/models

writes (a few MB in all):

    sd1/                  diffusers StableDiffusionPipeline folder   -> InvokeAI: sd-1 main
    sd1-lora.safetensors  kohya LoRA (lora_unet_* / lora_te_* keys)  -> InvokeAI: sd-1 lora
    sd1-controlnet/       diffusers ControlNetModel folder           -> InvokeAI: sd-1 controlnet
    manifest.json         file sizes and sha256, written last (the "built" mark)

How InvokeAI 6.x decides the base: a diffusers main model or ControlNet is
sd-1 when its `cross_attention_dim` is 768, a kohya LoRA when its
`..._attn2_to_k.lora_down.weight` has 768 columns. 768 is therefore the only
wide dimension here; every other one is as small as the layers allow.

The images such models make are noise, which is all the rig needs: every node,
field and model reference still goes through InvokeAI's own code.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

from diffusers import (  # noqa: E402  (after set_num_threads)
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

SEED = 20240601
TOKEN_DIM = 768  # SD-1's text embedding width; what InvokeAI reads the base from
LORA_RANK = 4
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# Words the BPE merges into single tokens; anything else falls back to bytes.
WORDS = ("a", "an", "photo", "of", "red", "blue", "cat", "dog", "house", "tree", "test", "rig")


def byte_alphabet() -> list[str]:
    """CLIP's reversible byte -> printable character table (256 entries)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = 256 + extra
            extra += 1
    return [chr(table[b]) for b in range(256)]


def write_tokenizer(folder: Path) -> None:
    """A small but real CLIP BPE tokenizer: vocab.json + merges.txt + configs."""
    folder.mkdir(parents=True)
    alphabet = byte_alphabet()
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in merges:
                merges.append(pair)
            joined = parts[0] + parts[1]
            if joined not in vocab:
                vocab.append(joined)
            parts = [joined, *parts[2:]]
    vocab += [BOS, EOS]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **specials}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def randomise_(module: torch.nn.Module, gen: torch.Generator, scale: float) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def lora_pairs(prefix: str, model: torch.nn.Module, keep) -> list[tuple[str, torch.nn.Linear]]:
    """kohya names: prefix + the module path with dots as underscores."""
    return [
        (prefix + name.replace(".", "_"), m)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and keep(name)
    ]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out: Path) -> dict:
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)

    # Tokenizer: written by hand, then loaded from its folder. (transformers 5
    # builds a CLIPTokenizer correctly only through from_pretrained.)
    tok_dir = out / "_tokenizer"
    write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)

    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TOKEN_DIM,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=12,
            max_position_embeddings=77,
            projection_dim=TOKEN_DIM,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        )
    ).eval()

    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=8,
        cross_attention_dim=TOKEN_DIM,
    ).eval()

    # Four encoder blocks: /8 spatially and 4 latent channels, as SD-1's VAE.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        sample_size=64,
        scaling_factor=0.18215,
    ).eval()

    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        prediction_type="epsilon",
    )

    main_dir = out / "sd1"
    StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(str(main_dir), safe_serialization=True)
    # The classic SD-1 tokenizer layout (vocab.json + merges.txt), not what
    # save_pretrained writes: the hand-written files replace it.
    shutil.rmtree(main_dir / "tokenizer")
    tok_dir.rename(main_dir / "tokenizer")

    # kohya LoRA over the UNet's attention projections and the text encoder's layers.
    tensors: dict[str, torch.Tensor] = {}
    targets = lora_pairs("lora_unet_", unet, lambda n: ".attn1." in n or ".attn2." in n)
    targets += lora_pairs("lora_te_", text_encoder, lambda n: ".layers." in n)
    for key, lin in targets:
        tensors[f"{key}.lora_down.weight"] = torch.randn((LORA_RANK, lin.in_features), generator=gen) * 0.1
        tensors[f"{key}.lora_up.weight"] = torch.randn((lin.out_features, LORA_RANK), generator=gen) * 0.1
        tensors[f"{key}.alpha"] = torch.tensor(float(LORA_RANK))
    lora_file = out / "sd1-lora.safetensors"
    save_file(tensors, str(lora_file), metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(LORA_RANK)})

    # ControlNet copied from the UNet. diffusers zero-initialises its output
    # convolutions; small random ones make the control image change the result.
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 4, 8, 8)).eval()
    for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        randomise_(conv, gen, 0.05)
    cn_dir = out / "sd1-controlnet"
    controlnet.save_pretrained(str(cn_dir), safe_serialization=True)

    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {
        "seed": SEED,
        "files": {str(p.relative_to(out)): {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in files},
        "total_bytes": sum(p.stat().st_size for p in files),
        "models": {
            "main": {"path": "sd1", "name": "rig-sd1"},
            "lora": {"path": "sd1-lora.safetensors", "name": "rig-sd1-lora"},
            "controlnet": {"path": "sd1-controlnet", "name": "rig-sd1-controlnet"},
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder to create (replaced if it exists)")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    # Built beside the target and renamed at the end: an interrupted build
    # leaves no half-built folder where a finished one is expected.
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    manifest = build(partial)
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)
    print(f"built {len(manifest['files'])} files, {manifest['total_bytes'] / 1e6:.1f} MB, in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
