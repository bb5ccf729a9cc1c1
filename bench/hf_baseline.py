#!/usr/bin/env python3
"""Hugging Face transformers baseline at kvc's benchmark shapes.

A LlamaForCausalLM built in code from a LlamaConfig (no files, no network), random
weights (normal(0, 0.02) matrices, unit norms) in float16 on the GPU, greedy
generation of a fixed number of tokens (min_new_tokens = max_new_tokens, so EOS never
ends it early). Modes: "eager" (PyTorch eager, dynamic cache) and "static_compile"
(static cache + torch.compile, skipped when the deadline is near). Prints one JSON
object per line in kvc bench's record format (suite "hf"), each as soon as it exists.

  python3 bench/hf_baseline.py --shapes 1b,8b --batches 1,32 --prompt-len 128 --new-tokens 128
"""
import argparse
import json
import os
import sys
import time
import traceback

SHAPES = {
    "llama-3.2-1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=64, intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True),
    "llama-3.1-8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=128, intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=16, intermediate_size=128, vocab_size=512, tie_word_embeddings=False),
}
ALIASES = {"1b": "llama-3.2-1b", "8b": "llama-3.1-8b"}
T0 = time.time()


def emit(rec):
    base = {"runtime": "pytorch", "commit": os.environ.get("KVC_COMMIT", "unknown"), "gpu": GPU_NAME}
    base.update(rec)
    base["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(json.dumps(base), flush=True)


def log(msg):
    print(f"[hf] {msg}", file=sys.stderr, flush=True)


def build(torch, transformers, shape, max_len, device):
    cfg = transformers.LlamaConfig(**SHAPES[shape], max_position_embeddings=max_len, rms_norm_eps=1e-5,
                                   hidden_act="silu", bos_token_id=1, eos_token_id=2, pad_token_id=0)
    prev = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float16)  # built in f16 where torch allows it, else cast below
    except (TypeError, RuntimeError):
        pass
    try:
        with torch.device(device):
            model = transformers.LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(prev)
    model = model.to(device=device, dtype=torch.float16).eval()
    gen = torch.Generator(device=device).manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02, generator=gen)
            else:
                p.fill_(1.0)
    return model


def sync(torch, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def generate(torch, model, ids, n, device, **kw):
    sync(torch, device)
    t = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=0, **kw)
    sync(torch, device)
    dt = time.perf_counter() - t
    got = out.shape[1] - ids.shape[1]
    if got != n:
        raise RuntimeError(f"generated {got} tokens, wanted {n}")
    return dt


def measure(torch, model, shape, batch, prompt_len, new_tokens, mode, device, warm=1, **kw):
    vocab = SHAPES[shape]["vocab_size"]
    g = torch.Generator(device="cpu").manual_seed(batch * 1000 + prompt_len)
    ids = torch.randint(1000 % vocab, vocab, (batch, prompt_len), generator=g).to(device)
    # A static cache is as long as prompt + new tokens, and torch.compile specializes on
    # its shape: every length timed below is warmed first, so no timed run recompiles.
    lens = [1, new_tokens] if mode == "static_compile" else [min(8, new_tokens)]
    t0 = time.perf_counter()
    for _ in range(warm):
        for n in lens:
            generate(torch, model, ids, n, device, **kw)
    warm_s = time.perf_counter() - t0
    first = min(generate(torch, model, ids, 1, device, **kw) for _ in range(2))
    full = generate(torch, model, ids, new_tokens, device, **kw)
    decode_s = max(full - first, 1e-9)
    tok_s = batch * (new_tokens - 1) / decode_s
    emit({"suite": "hf", "test": "generate", "shape": shape, "mode": mode, "batch": batch, "prompt_len": prompt_len,
          "new_tokens": new_tokens, "prefill_ms": round(first * 1000, 2), "total_s": round(full, 3),
          "decode_tok_s": round(tok_s, 2), "per_seq_tok_s": round(tok_s / batch, 2), "warm_s": round(warm_s, 1),
          "attn_implementation": getattr(model.config, "_attn_implementation", None)})


def main():
    global GPU_NAME
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="1b,8b")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--modes", default="eager,static_compile")
    ap.add_argument("--deadline-s", type=float, default=None, help="start nothing that cannot end within this many seconds")
    ap.add_argument("--compile-budget-s", type=float, default=100, help="static_compile runs only with this much time left")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    GPU_NAME = "unknown"
    try:
        import torch
        import transformers
    except Exception as e:  # noqa: BLE001
        emit({"suite": "hf", "test": "error", "message": f"import failed: {e}"})
        return 1
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        emit({"suite": "hf", "test": "error", "message": "CUDA is not available"})
        return 1
    GPU_NAME = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    emit({"suite": "hf", "test": "env", "torch": torch.__version__, "transformers": transformers.__version__,
          "python": sys.version.split()[0]})
    left = lambda: float("inf") if a.deadline_s is None else a.deadline_s - (time.time() - T0)  # noqa: E731
    shapes = [ALIASES.get(s, s) for s in a.shapes.split(",") if s]
    batches = [int(b) for b in a.batches.split(",") if b]
    modes = [m for m in a.modes.split(",") if m]
    failed = 0
    # every shape in eager first, then the compiled runs: a deadline that stops the slow
    # compiles still leaves the eager figure of each shape
    for mode in modes:
        for shape in shapes:
            need = a.compile_budget_s if mode == "static_compile" else 20  # seconds a run must have left
            build_s = 0 if mode == "static_compile" else 10  # eager: and the model's build before it
            if left() < need + build_s:
                for batch in batches:
                    emit({"suite": "hf", "test": "generate", "shape": shape, "mode": mode, "batch": batch, "skipped": "deadline"})
                continue
            t = time.time()
            model = build(torch, transformers, shape, a.prompt_len + a.new_tokens + 16, a.device)
            log(f"{shape}: built in {time.time() - t:.1f} s")
            for batch in batches:
                if left() < need:
                    emit({"suite": "hf", "test": "generate", "shape": shape, "mode": mode, "batch": batch, "skipped": "deadline"})
                    continue
                try:
                    kw = {"cache_implementation": "static"} if mode == "static_compile" else {}
                    if mode == "static_compile" and not hasattr(model.generation_config, "compile_config"):
                        # older transformers do not compile the static-cache decode by themselves
                        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
                    measure(torch, model, shape, batch, a.prompt_len, a.new_tokens, mode, a.device,
                            warm=2 if mode == "static_compile" else 1, **kw)
                except Exception as e:  # noqa: BLE001
                    failed += 1
                    log(traceback.format_exc())
                    emit({"suite": "hf", "test": "generate", "shape": shape, "mode": mode, "batch": batch,
                          "error": f"{type(e).__name__}: {e}"[:500]})
            del model
            if a.device.startswith("cuda"):
                torch.cuda.empty_cache()
    return 1 if failed else 0


GPU_NAME = "unknown"
if __name__ == "__main__":
    sys.exit(main())
