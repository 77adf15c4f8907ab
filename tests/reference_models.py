"""Reference and stand-in models shared by tests and benchmarks (benchmarks put tests/ on
sys.path): untrained tiny tokenizers written as workdirs, and transformers' EnCodec with
codebooks that make its codes spread."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax import kmeans
from audiolm_jax.config import load_config


def tiny_tokenizer_workdirs(root: str, source: str = "test") -> tuple[str, str]:
    """Untrained tiny codec and w2v-BERT (+ random k-means) written as checkpoints, as training
    or `--mode=import` would leave them (speed and plumbing do not depend on training)."""
    from audiolm_jax.codec.model import CodecConfig, init_generator
    from audiolm_jax.importers.common import write_checkpoint
    from audiolm_jax.semantic import w2v_bert

    codec_dir, sem_dir = os.path.join(root, "codec"), os.path.join(root, "w2v")
    c = load_config("soundstream_tiny")
    cfg = CodecConfig.from_config(c.codec)
    params, qstate = init_generator(cfg, jax.random.key(0), jnp.zeros((2, 8000)))
    state = {"quantizer": qstate, "step": jnp.zeros((), jnp.int32)}
    write_checkpoint(codec_dir, c, {"generator": nn.unbox(params)}, state, source=source)
    w = load_config("w2v_bert_tiny")
    wcfg = w2v_bert.W2VBertConfig.from_config(w.w2v_bert)
    p, _ = w2v_bert.W2VBert(wcfg).init(jax.random.key(1), {"wav": jnp.zeros((1, 16000))})
    write_checkpoint(sem_dir, w, nn.unbox(p), {"step": jnp.zeros((), jnp.int32)}, source=source)
    k = int(w.semantic.k)
    centroids = np.random.default_rng(2).normal(size=(k, wcfg.d_model)).astype(np.float32)
    kmeans.save(os.path.join(sem_dir, "kmeans"), centroids, meta={"layer": int(w.semantic.layer)})
    return codec_dir, sem_dir


# A layout for the tiny tokenizers above with short crops, so that 3-5 s of output already runs
# past every stage's training context.
TINY_PIPELINE_LAYOUT = dict(
    semantic_vocab=64,
    acoustic_levels=4,
    coarse_levels=2,
    codebook_size=64,
    semantic_crop_seconds=2.0,
    coarse_crop_seconds=1.0,
    fine_chunk_seconds=0.5,
)


def tiny_stage(name: str, seed: int, layout):
    """An untrained 2-layer, d 32 stage LM sized for `layout`."""
    import flax.linen as nn

    from audiolm_jax.lm.transformer import Transformer, TransformerConfig
    from audiolm_jax.sampling.pipeline import Stage

    aligned = name == "coarse" and layout.coarse_semantic == "aligned"
    cfg = TransformerConfig(
        vocab_size=layout.vocab_size(name), num_layers=2, num_heads=2, d_model=32, d_ff=64,
        dropout=0.0, cond_embed=aligned,
    )  # fmt: skip
    ids = jnp.zeros((1, 8), jnp.int32)
    cond = ids if aligned else None
    params = nn.unbox(Transformer(cfg).init(jax.random.key(seed), ids, cond=cond)["params"])
    return Stage(name, cfg, params, layout.max_length(name))


def tiny_pipeline(root: str):
    """An untrained three-stage Pipeline over the untrained tiny tokenizers: plumbing only."""
    from audiolm_jax import codec, layouts, semantic
    from audiolm_jax.sampling.pipeline import Pipeline

    layout = layouts.TokenLayout(**TINY_PIPELINE_LAYOUT)
    codec_dir, sem_dir = tiny_tokenizer_workdirs(root)
    return Pipeline(
        codec.load(codec_dir),
        semantic.load(sem_dir),
        layout,
        *(tiny_stage(n, i, layout) for i, n in enumerate(("semantic", "coarse", "fine"))),
        semantic_runs_per_second=10.0,
    )


def fill_encodec_codebooks(model, wav: np.ndarray, seed: int) -> None:
    """Each level's codebook = mean + std * N(0, 1) of the residual it sees on `wav` (seeded,
    per dimension), so the codes spread over many values."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        emb = model.encoder(torch.from_numpy(wav)[:, None])
        r = emb.transpose(1, 2).reshape(-1, emb.shape[1])
        for layer in model.quantizer.layers:
            book = layer.codebook
            cb = r.mean(0) + torch.randn(book.embed.shape, generator=g) * r.std(0)
            book.embed.copy_(cb)
            book.embed_avg.copy_(cb)
            book.cluster_size.copy_(torch.rand(book.cluster_size.shape, generator=g) * 10)
            r = r - cb[book.quantize(r)]
