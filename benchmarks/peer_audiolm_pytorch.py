"""Benchmark harness for the reference PyTorch AudioLM (``audiolm-pytorch``).

Runs INSIDE the peer virtual environment made by ``benchmarks/peer_env.py`` (torch CPU,
``audiolm-pytorch==2.4.0``), never in the project's own environment. Each subcommand prints
exactly one JSON line on stdout (everything else goes to stderr):

    python peer_audiolm_pytorch.py check
    python peer_audiolm_pytorch.py train --depth 6 --dim 512 --heads 8 --vocab 1024 \
        --batch 8 --seq 256 --steps 10 --warmup 2
    python peer_audiolm_pytorch.py sample --length 256 --batch 1

What is stubbed, and why (every run lists these in its ``notes``):

* ``fairseq`` does not install on Python 3.11; ``audiolm_pytorch`` imports it at import time
  (vq_wav2vec / hubert_kmeans) but only uses it to load wav2vec/HuBERT checkpoints.
* ``torchaudio`` is not installed (a build matching this torch needs a multi-GB CUDA torch); it
  is imported at import time by audiolm_pytorch and encodec but only used for resampling, audio
  file I/O and the SoundStream/EnCodec discriminator spectrograms, none of which the transformer
  code path touches. Calling anything in the stub raises.
* ``wandb`` is imported unconditionally by ``audiolm_pytorch.trainer`` (pulled in by the
  package ``__init__``) and is not installed; never used here.
* ``audiolm_pytorch.audiolm_pytorch.get_encoded_dim`` looks up the T5 config on the model hub
  in every transformer's constructor (even without text conditioning). It is replaced with a
  function returning 768, the d_model of the default ``google/t5-v1_1-base``, so the (unused)
  text projection layer has the same shape as with the real lookup.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import json
import os
import statistics
import sys
import time
import types

os.environ.setdefault("TQDM_DISABLE", "1")  # generate() wraps its token loop in tqdm

T5_BASE_DIM = 768  # google/t5-v1_1-base d_model (DEFAULT_T5_NAME in audiolm_pytorch.t5)

NOTES: list[str] = []


def _note(msg: str) -> None:
    NOTES.append(msg)
    print(f"[peer_audiolm_pytorch] {msg}", file=sys.stderr, flush=True)


def _unavailable(qualname: str):
    def fn(*args, **kwargs):
        raise RuntimeError(f"{qualname} is a stub in this benchmark harness (not installed)")

    fn.__name__ = qualname.rsplit(".", 1)[-1]
    fn.__qualname__ = qualname
    return fn


class _StubAttrs(types.ModuleType):
    """A module whose every unknown attribute is a function that raises when called."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _unavailable(f"{self.__name__}.{name}")


def _make_stub(name: str) -> types.ModuleType:
    mod = _StubAttrs(name)
    # A real spec, so importlib.util.find_spec(name) (used by transformers' availability
    # checks) does not raise "name.__spec__ is None".
    mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    mod.__file__ = f"<stub {name}>"
    return mod


def install_stubs() -> None:
    """Put stub modules in sys.modules for packages that are only imported, never used."""
    stubs = {
        "fairseq": "fairseq: empty stub module (imported by audiolm_pytorch.vq_wav2vec/"
        "hubert_kmeans at import time; only used to load wav2vec/HuBERT checkpoints)",
        "torchaudio": "torchaudio (+ .functional, .transforms): stub modules whose functions "
        "raise (imported by audiolm_pytorch and encodec; used only for resampling, audio I/O "
        "and SoundStream/EnCodec spectrograms, not by the transformers)",
        "wandb": "wandb: empty stub module (imported by audiolm_pytorch.trainer; not used)",
    }
    for name, note in stubs.items():
        if name in sys.modules and not isinstance(sys.modules[name], _StubAttrs):
            continue  # really importable and already imported: leave it
        parent = _make_stub(name)
        sys.modules[name] = parent
        if name == "torchaudio":
            parent.__path__ = []  # make it a package so submodule imports resolve
            for sub in ("functional", "transforms"):
                child = _make_stub(f"torchaudio.{sub}")
                sys.modules[f"torchaudio.{sub}"] = child
                setattr(parent, sub, child)
        _note(f"stubbed {note}")


def import_audiolm_pytorch():
    install_stubs()
    import audiolm_pytorch  # noqa: F401  (runs the package __init__, as a user's import does)
    import audiolm_pytorch.audiolm_pytorch as alm

    alm.get_encoded_dim = lambda name: T5_BASE_DIM
    _note(
        f"replaced audiolm_pytorch.audiolm_pytorch.get_encoded_dim with a constant "
        f"{T5_BASE_DIM} (the real one fetches the T5 config from the model hub)"
    )
    return alm


def _setup_torch(threads: int):
    import torch

    torch.set_num_threads(threads)
    return torch


def _build(alm, args):
    import torch

    torch.manual_seed(args.seed)
    t = alm.SemanticTransformer(
        num_semantic_tokens=args.vocab,
        dim=args.dim,
        depth=args.depth,
        heads=args.heads,
        flash_attn=False,  # the default; stated explicitly (CPU)
        attn_dropout=args.dropout,
        ff_dropout=args.dropout,
    )
    return t


def _param_counts(t) -> dict:
    total = sum(p.numel() for p in t.parameters())
    unused = sum(p.numel() for p in t.proj_text_embed.parameters())
    return {"params": total, "params_without_unused_text_proj": total - unused}


def _config(args) -> dict:
    return {
        "model": "audiolm_pytorch.SemanticTransformer",
        "depth": args.depth,
        "dim": args.dim,
        "heads": args.heads,
        "vocab": args.vocab,
        "attn_ff_dropout": args.dropout,
        "defaults": "flash_attn=False, rel_pos_bias=True, num_residual_streams=4, "
        "grad_shrink_alpha=0.1",
    }


def cmd_check(args) -> dict:
    torch = _setup_torch(args.threads)
    alm = import_audiolm_pytorch()
    from importlib.metadata import version

    import audiolm_pytorch

    return {
        "ok": True,
        "audiolm_pytorch": version("audiolm-pytorch"),
        "torch": torch.__version__,
        "has_SemanticTransformer": hasattr(alm, "SemanticTransformer"),
        "package_file": audiolm_pytorch.__file__,
        "notes": NOTES,
    }


def cmd_train(args) -> dict:
    torch = _setup_torch(args.threads)
    import torch.nn.functional as F

    alm = import_audiolm_pytorch()
    t = _build(alm, args)
    t.train()
    opt = torch.optim.AdamW(t.parameters(), lr=3e-4, weight_decay=0.01)

    g = torch.Generator().manual_seed(args.seed)
    # One fixed batch (as a data loader would hand over). The model prepends its start token,
    # so feeding ids[:, :-1] makes it see exactly `seq` positions, and its logits at position i
    # predict ids[:, i]: next-token cross-entropy over all `seq` targets.
    # This is what SemanticTransformerWrapper(return_loss=True) feeds it, minus eos/masking.
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = t(ids=ids[:, :-1])  # (b, seq, vocab + 1)
        loss = F.cross_entropy(logits.transpose(1, 2), ids)
        loss.backward()
        opt.step()
        return float(loss.detach())

    for _ in range(args.warmup):
        step()
    times, losses = [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "subcommand": "train",
        **_config(args),
        **_param_counts(t),
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "warmup": args.warmup,
        "optimizer": "torch.optim.AdamW(lr=3e-4, weight_decay=0.01)",
        "step_times_s": times,
        "median_step_s": med,
        "tokens_per_s": args.batch * args.seq / med,
        "losses": losses,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min_at_end": os.getloadavg()[0],  # >threads means something else was running
        "notes": NOTES,
    }


def cmd_sample(args) -> dict:
    torch = _setup_torch(args.threads)
    alm = import_audiolm_pytorch()
    t = _build(alm, args)
    wrapper = alm.SemanticTransformerWrapper(transformer=t)
    # generate() stops as soon as every row has sampled the eos id (= vocab); with random
    # weights that can happen at any step. Push the eos logit down so every run produces
    # exactly `length` tokens (top-k then never keeps it); compute is unchanged.
    with torch.no_grad():
        t.to_logits.bias[t.eos_id] = -1e4
    _note("set the eos logit bias to -1e4 so generate() always runs to max_length")
    bf16 = args.dtype == "bfloat16"
    if bf16:
        # model.to(torch.bfloat16) fails inside generate() (fp32 tensors it makes meet bf16
        # weights); autocast casts each weight once per call (its cache) and runs the
        # linear layers in bf16.
        _note("generate() under torch.autocast('cpu', dtype=torch.bfloat16)")

    def run(length):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = wrapper.generate(
                max_length=length,
                batch_size=args.batch,
                temperature=args.temperature,
                use_kv_cache=True,
            )
        return time.perf_counter() - t0, out

    for _ in range(args.warmup):
        run(min(args.length, 16))
    times = []
    for _ in range(args.repeats):
        dt, out = run(args.length)
        times.append(dt)
    generated = int(out.shape[-1])
    med = statistics.median(times)
    return {
        "subcommand": "sample",
        **_config(args),
        **_param_counts(t),
        "batch": args.batch,
        "length": args.length,
        "generated_length": generated,
        "temperature": args.temperature,
        "use_kv_cache": True,
        "dtype": args.dtype,
        "filter_thres": 0.9,
        "run_times_s": times,
        "median_run_s": med,
        "tokens_per_s": args.batch * generated / med,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min_at_end": os.getloadavg()[0],  # >threads means something else was running
        "notes": NOTES,
    }


def cmd_codec(args) -> dict:
    """Encode (tokenize) and decode times of audiolm-pytorch's SoundStream at the paper's size:
    C = 32, strides (2, 4, 5, 8), D = 128, 12 x 1024 RVQ, without its optional local-attention
    layers (SoundStream has none)."""
    torch = _setup_torch(args.threads)
    install_stubs()
    import_audiolm_pytorch()
    import torch.nn as tnn
    from audiolm_pytorch import SoundStream

    class _LossOnlyMel(tnn.Module):  # built by SoundStream for its training loss only
        def __init__(self, *a, **k):
            super().__init__()

        def forward(self, x):
            raise RuntimeError("torchaudio MelSpectrogram is a stub (training loss only)")

    sys.modules["torchaudio.transforms"].MelSpectrogram = _LossOnlyMel
    _note(
        "torchaudio.transforms.MelSpectrogram: an empty module class (SoundStream builds it for "
        "its multi-spectral training loss; encode/decode never call it)"
    )
    torch.manual_seed(args.seed)
    ss = SoundStream(
        channels=32,
        strides=(2, 4, 5, 8),
        codebook_dim=128,
        codebook_size=1024,
        rq_num_quantizers=12,
        use_local_attn=False,
        target_sample_hz=16000,
    ).eval()
    n_params = sum(p.numel() for n, p in ss.named_parameters() if "discr" not in n)
    wav = torch.randn(args.batch, int(args.seconds * 16000)) * 0.1
    times = {"encode": [], "decode": []}
    with torch.inference_mode():
        codes = ss.tokenize(wav)
        for i in range(args.warmup + args.repeats):
            t0 = time.perf_counter()
            codes = ss.tokenize(wav)
            t1 = time.perf_counter()
            out = ss.decode_from_codebook_indices(codes)
            t2 = time.perf_counter()
            if i >= args.warmup:
                times["encode"].append(t1 - t0)
                times["decode"].append(t2 - t1)
    enc, dec = statistics.median(times["encode"]), statistics.median(times["decode"])
    return {
        "impl": "audiolm-pytorch SoundStream",
        "generator_params": n_params,
        "batch": args.batch,
        "seconds": args.seconds,
        "codes_shape": list(codes.shape),
        "out_shape": list(out.shape),
        "encode_s": enc,
        "decode_s": dec,
        "encode_rtf": args.batch * args.seconds / enc,
        "decode_rtf": args.batch * args.seconds / dec,
        "times": times,
        "threads": args.threads,
        "notes": NOTES,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--threads", type=int, default=2)
        sp.add_argument("--seed", type=int, default=0)

    def model(sp):
        sp.add_argument("--depth", type=int, default=6)
        sp.add_argument("--dim", type=int, default=512)
        sp.add_argument("--heads", type=int, default=8)
        sp.add_argument("--vocab", type=int, default=1024)
        sp.add_argument(
            "--dropout", type=float, default=0.0, help="attn_dropout and ff_dropout (theirs: 0)"
        )

    sp = sub.add_parser("check", help="import audiolm_pytorch with the stubs")
    common(sp)

    sp = sub.add_parser("train", help="time SemanticTransformer AdamW train steps")
    common(sp)
    model(sp)
    sp.add_argument("--batch", type=int, default=8)
    sp.add_argument("--seq", type=int, default=256)
    sp.add_argument("--steps", type=int, default=10)
    sp.add_argument("--warmup", type=int, default=2)

    sp = sub.add_parser("sample", help="time SemanticTransformerWrapper.generate (KV cache)")
    common(sp)
    model(sp)
    sp.add_argument("--length", type=int, default=256)
    sp.add_argument("--batch", type=int, default=1)
    sp.add_argument("--temperature", type=float, default=1.0)
    sp.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    sp.add_argument("--repeats", type=int, default=1)
    sp.add_argument("--warmup", type=int, default=1, help="short (16-token) warmup runs")

    sp = sub.add_parser("codec", help="time SoundStream tokenize / decode_from_codebook_indices")
    common(sp)
    sp.add_argument("--seconds", type=float, default=10.0)
    sp.add_argument("--batch", type=int, default=1)
    sp.add_argument("--repeats", type=int, default=3)
    sp.add_argument("--warmup", type=int, default=1)

    args = p.parse_args(argv)
    fn = {"check": cmd_check, "train": cmd_train, "sample": cmd_sample, "codec": cmd_codec}[
        args.cmd
    ]
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON line
        result = fn(args)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
