"""Defaults shared by every named config; a named config overrides only what differs."""

import ml_collections


def lm(**overrides) -> ml_collections.ConfigDict:
    """Transformer fields (audiolm_jax.lm.transformer.TransformerConfig); paper sizes by default.

    AudioLM stages: 12 layers, 16 heads, d_model 1024, FFN 4096, dropout 0.1, T5 relative
    position bias (arXiv:2209.03143, sec. 4.1).
    """
    cfg = ml_collections.ConfigDict(
        dict(
            vocab_size=1028,
            num_layers=12,
            num_heads=16,
            d_model=1024,
            d_ff=4096,
            head_dim=ml_collections.FieldReference(None, field_type=int),
            dropout=0.1,
            position="t5",
            rel_buckets=32,
            rel_max_distance=128,
            norm="rms",
            scan_layers=True,
            remat="none",
            dtype="float32",
            attention_impl=ml_collections.FieldReference(None, field_type=str),
            tie_embeddings=False,
        )
    )
    cfg.update(overrides)
    return cfg


def markov_semantic_data(batch_size: int, seq_len: int) -> ml_collections.ConfigDict:
    """A synthetic semantic-token source (audiolm_jax.data.synthetic.MarkovSource) with the
    paper layout's ids: K_s = 1024 ids after the 4 special ids of audiolm_jax.layouts, each with
    4 successors (entropy log 4 = 1.39 nats). LM configs train on it until the audio pipeline
    lands."""
    from audiolm_jax import layouts

    return ml_collections.ConfigDict(
        dict(
            source="markov",
            vocab=layouts.TokenLayout.preset("paper").semantic_vocab,
            successors=4,
            lag=1,
            token_offset=layouts.NUM_SPECIALS,
            bos_id=layouts.BOS,
            batch_size=batch_size,
            seq_len=seq_len,
        )
    )


def get_base_config() -> ml_collections.ConfigDict:
    """The shared skeleton: seed, model kind, optimizer, train loop."""
    c = ml_collections.ConfigDict()
    c.name = ""
    c.seed = 0
    c.model = "lm"  # which task builder (audiolm_jax.tasks) assembles model + data
    c.z_loss = 1e-4

    c.optimizer = ml_collections.ConfigDict(
        dict(
            lr=3e-4,
            warmup_steps=1000,
            decay_steps=0,
            end_lr_ratio=0.1,
            b1=0.9,
            b2=0.98,
            eps=1e-9,
            weight_decay=0.01,
            clip_norm=1.0,
        )
    )
    # Parallelism (audiolm_jax/train/sharding.py): mesh axis sizes, -1 = the devices left over,
    # and the logical-axis -> mesh-axis rules. Changing parallelism is an edit here.
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding = ml_collections.ConfigDict(
        dict(
            rules=[
                ["batch", ["data", "fsdp"]],
                ["embed", "fsdp"],
                ["mlp", "tensor"],
                ["heads", "tensor"],
                ["vocab", "tensor"],
                ["kv", None],
                ["length", None],
                ["layers", None],
                ["relpos_buckets", None],
            ]
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            steps=1000,
            log_every=50,
            eval_every=500,
            eval_batches=4,
            checkpoint_every=500,
            keep_checkpoints=3,
            async_checkpoints=True,
            grad_accum=1,
            log_batch_hashes=False,
        )
    )
    return c
