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
            # Operand dtype of the Dense matmuls (None: dtype); "bfloat16" keeps fp32 params,
            # accumulation, norms and attention (lm.transformer.TransformerConfig.matmul_dtype).
            matmul_dtype=ml_collections.FieldReference(None, field_type=str),
            attention_impl=ml_collections.FieldReference(None, field_type=str),
            tie_embeddings=False,
            cond_embed=False,  # True for a coarse stage with layout.coarse_semantic="aligned"
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


def soundstream(**overrides) -> ml_collections.ConfigDict:
    """A SoundStream codec config (audiolm_jax.codec), the paper's by default: 16 kHz, C = 32,
    strides (2, 4, 5, 8) = 50 frames/s, D = 128 (not stated in the paper; common), 12 levels x
    1024 codes = 6 kbps, EMA 0.99, k-means init, dead codes below 2 uses replaced, quantizer
    dropout on every example (Zeghidour et al. 2021; ../shared/PAPER.md). Discriminators: three
    waveform scales and an STFT one (window 1024, hop 256). Loss weights: see `loss`."""
    c = ml_collections.ConfigDict()
    c.model = "soundstream"
    c.codec = ml_collections.ConfigDict(
        dict(
            sample_rate=16000,
            seanet=dict(
                channels=32,
                dim=128,
                strides=(2, 4, 5, 8),
                dilations=(1, 3, 9),
                kernel_size=7,
                residual_kernel_size=7,
                last_kernel_size=3,
                dtype="float32",
            ),
            quantizer=dict(
                levels=12,
                codebook_size=1024,
                code_dim=0,
                l2_normalize=False,
                ema_decay=0.99,
                dead_code_threshold=2.0,
                dropout=1.0,
                kmeans_init=True,
                kmeans_iters=10,
            ),
        )
    )
    c.discriminator = ml_collections.ConfigDict(
        dict(
            wave_scales=3,
            wave_channels=16,
            wave_max_channels=1024,
            wave_downsamples=4,
            stft_channels=32,
            stft_window=1024,
            stft_hop=256,
            dtype="float32",
        )
    )
    # Generator loss = rec * mel loss + commitment * commitment + adv * hinge + feat * feature
    # matching; the adversarial terms (and the discriminator updates) start at adversarial_start.
    c.loss = ml_collections.ConfigDict(
        dict(
            rec=1.0,
            wave=0.0,
            adv=1.0,
            feat=2.0,
            commitment=0.25,
            adversarial_start=2000,
            mel_bins=64,
        )
    )
    c.data = ml_collections.ConfigDict(
        dict(
            # the embedded speech corpus, "folder" (data.path) or "synth" (synthesised speech,
            # audiolm_jax.data.synth_speech, built in data.path or ~/.cache/audiolm_jax)
            source="corpus",
            path="",
            synth_utterances=600,  # "synth": sentences to synthesise (~2.9 s each)
            eval_every=10,  # folder: every 10th file (sorted) is held out
            clip_seconds=1.0,
            batch_size=16,
            normalize_db=-20.0,
            speed_perturb=0.0,  # s > 0: train clips at random speeds in [1 - s, 1 + s]
        )
    )
    c.update(overrides)
    return c


def w2v_bert(**overrides) -> ml_collections.ConfigDict:
    """A w2v-BERT config (audiolm_jax.semantic.w2v_bert), the paper's XL by default: 80-bin
    log-mel, 4x conv subsampling (25 frames/s at 16 kHz), 12 contrastive + 12 MLM conformer
    layers, d_model 1024, 8 heads, conv kernel 5, one 1024 x 1024 Gumbel codebook, masking
    p = 0.065 span 10, L = L_c + 0.1 L_d + L_mlm (Chung et al. 2021; ../shared/PAPER.md).

    `semantic` names what AudioLM clusters: k-means (K = 1024) over layer N + 7 (the MLM
    module's 7th), each dimension normalised to zero mean, unit variance first."""
    c = ml_collections.ConfigDict()
    c.model = "w2v_bert"
    c.w2v_bert = ml_collections.ConfigDict(
        dict(
            sample_rate=16000,
            n_mels=80,
            n_fft=400,
            hop=160,
            conv_channels=128,
            d_model=1024,
            num_heads=8,
            d_ff=4096,
            conv_kernel=5,
            contrastive_layers=12,
            mlm_layers=12,
            codebook_size=1024,
            code_dim=1024,
            proj_dim=768,
            dropout=0.1,
            mask_prob=0.065,
            mask_span=10,
            num_negatives=100,
            negatives_from="masked",
            temperature=0.1,
            quantizer_init_scale=1.0,
            gumbel_start=2.0,
            gumbel_end=0.5,
            gumbel_decay=0.999995,
            diversity_weight=0.1,
            mlm_weight=1.0,
            rel_buckets=32,
            rel_max_distance=128,
            scan_layers=True,
            remat="none",
            dtype="float32",
            attention_impl=ml_collections.FieldReference(None, field_type=str),
            mel_mean_norm=True,  # per-utterance log-mel mean subtraction (speech; off for music)
        )
    )
    # k-means over one layer (launch.py --mode=fit_kmeans): `steps` mini-batches of
    # `batch_size` clips, the first `init_batches` of them seed k-means++; then up to
    # `refine_passes` Lloyd iterations over the first `refine_batches` (kept in device memory:
    # XL's 64 x 16 clips of 10 s are 64 x 4000 frames x 1024 floats, 1 GB over the mesh).
    # Features depend on the clip length the model sees: fit on clips about as long as the
    # audio that will be tokenized (`clip_seconds`).
    c.semantic = ml_collections.ConfigDict(
        dict(
            layer=19,
            k=1024,
            stats_batches=50,
            steps=2000,
            init_batches=4,
            batch_size=16,
            refine_batches=64,
            refine_passes=20,
            clip_seconds=0.0,  # > 0: clip length of the fit's audio (0: data.clip_seconds)
            overwrite=False,
        )
    )
    c.data = ml_collections.ConfigDict(
        dict(
            source="corpus",  # or "folder" (data.path), "synth" (as soundstream's data)
            path="",
            synth_utterances=600,
            eval_every=10,
            clip_seconds=10.0,
            batch_size=32,
            normalize_db=-20.0,
            speed_perturb=0.0,  # s > 0: train clips at random speeds in [1 - s, 1 + s]
        )
    )
    c.update(overrides)
    return c


def imported_feature_model(
    model: str, fields: dict, layer: int, k: int
) -> ml_collections.ConfigDict:
    """The project config of an imported semantic feature model (HuBERT, w2v-BERT 2.0): model
    `model`, its section `fields`, and w2v_bert()'s `semantic` (k-means over `layer`, K = `k`)
    and `data` sections, so `launch.py --mode=fit_kmeans` runs on the imported workdir.

    base's 2000 k-means steps of 16 clips suit a large corpus; the embedded one is ~2 minutes
    of speech and a full-size model runs ~100x real time on a CPU: 200 steps (6400 s of
    audio) suffice. Its files are ~2.5 s, so 2 s clips are (nearly) all speech; 10 s clips
    would be mostly zero padding, which per-utterance normalisations (HuBERT's first-conv
    GroupNorm, w2v-BERT 2.0's fbank mean/variance) would see."""
    c = get_base_config()
    w = w2v_bert()
    c.model = model
    c[model] = ml_collections.ConfigDict(fields)
    c.semantic = w.semantic
    c.semantic.update(layer=layer, k=k, stats_batches=16, steps=200, init_batches=4, batch_size=16)
    c.data = w.data
    c.data.update(clip_seconds=2.0, batch_size=8)
    c.name = model
    return c


def corpus(**overrides) -> ml_collections.ConfigDict:
    """The audio-token pipeline's sections (audiolm_jax/data): `corpus`, the local audio folder a
    tfds dataset is built from (`--mode=build_dataset`), and `tokenize`, the tokenizers that
    turn it into a sharded token cache (`--mode=tokenize`). Paths left empty default to
    `<workdir>/tfds` and `<workdir>/tokens`."""
    c = ml_collections.ConfigDict()
    c.model = "corpus"
    c.corpus = ml_collections.ConfigDict(
        dict(
            layout="folder",  # "folder", "librispeech" or "librilight"
            root="",  # or --input=DIR
            subsets="",  # comma-separated LibriSpeech / Libri-Light subsets; "" = all
            sample_rate=16000,
            max_seconds=30.0,  # longer recordings are cut at silences
            min_seconds=0.5,
            loudness_db=-20.0,  # RMS dBFS of every example; normalize=False leaves levels
            normalize=True,
            eval_speakers=0.1,  # fraction of speakers held out (whole speakers)
            eval_speaker_count=0,  # > 0: exactly this many instead
            seed=0,
            name="local_audio",
            data_dir="",
            overwrite=False,
        )
    )
    c.tokenize = ml_collections.ConfigDict(
        dict(
            codec="",  # workdir of a trained (or imported) codec
            semantic="",  # workdir of a semantic tokenizer (model + fitted k-means)
            cache_dir="",
            levels=0,  # RVQ levels to keep; 0 = all
            num_shards=16,  # per split; the same in every process and restart
            batch_size=8,
        )
    )
    c.update(overrides)
    return c


def cache_stage(
    stage: str, corpora: dict, *, batch_size: int, seq_len: int, layout: dict | None = None
) -> ml_collections.ConfigDict:
    """A stage LM's `data` section reading token caches through seqio (corpus name -> cache
    dir; several corpora make a Mixture weighted by hours). lm.vocab_size must cover the
    cache's ids for the stage; the trainer says which size when it does not."""
    from audiolm_jax.data.pipeline import cache_data_config

    return cache_data_config(
        corpora=corpora, stage=stage, batch_size=batch_size, seq_len=seq_len, layout=layout
    )


# Context (data.seq_len) per stage at paper size, a multiple of 128 at or above the layout's
# The slices the pod configs are sized for, as `--dry_run --target` names them. The *_tpu
# meshes fix fsdp/tensor and fill `data` with the chips left over, so one config runs on a
# v5e-64 (64 chips, "v5e:8x8"), a v4-32 (16 chips) or a v5p slice alike; the slow tests compile
# each *_tpu config ahead of time for POD_TARGET. The *_gpu configs are one 8 x H100 node.
POD_TARGET = "v5e:8x8"
GPU_TARGET = "h100:8"


def for_pod(c: ml_collections.ConfigDict, *, fsdp: int = 1, slices: int = 1) -> None:
    """Sizes `c` for a TPU slice: `fsdp` chips share each parameter shard, the rest of the
    slice is data parallel; `slices` > 1 joins slices over the data-centre network (multi-slice:
    the data axis spans them). Attention stays XLA's (Pallas needs lm.position=rope)."""
    c.mesh.update(data=-1, fsdp=fsdp, tensor=1, slices=slices)
    c.target = POD_TARGET


def for_gpu_node(
    c: ml_collections.ConfigDict, *, fsdp: int = 8, grad_accum: int = 1, section: str = "lm"
) -> None:
    """Sizes `c` for one node of 8 GPUs (NVLink): parameters and optimizer state sharded over
    the node, cuDNN's fused attention, and `grad_accum` micro-batches to keep the paper's global
    batch within 80 GB. More nodes: --config.mesh.slices=NODES (the data axis spans nodes)."""
    c.mesh.update(data=-1, fsdp=fsdp, tensor=1, slices=1)
    if section in c and "attention_impl" in c[section]:
        c[section].attention_impl = "cudnn"
    c.train.grad_accum = grad_accum
    c.target = GPU_TARGET
    c.name = c.name.replace("_tpu", "_gpu")


# longest training sequence less one (layouts.TokenLayout.max_length): semantic 30 s = 750 ids
# + BOS/EOS; coarse 250 ids + 500 frames x 4 levels + 3; fine 150 frames x 12 levels + 2.
PAPER_SEQ_LEN = {"semantic": 768, "coarse": 2304, "fine": 1920}


def stage_lm(
    stage: str,
    corpora: dict,
    *,
    layout_preset: str = "paper",
    batch_size: int = 256,
    seq_len: int | None = None,
) -> ml_collections.ConfigDict:
    """One AudioLM stage at paper size on token caches: 12 layers, 16 heads, d 1024, FFN 4096
    (arXiv:2209.03143 sec. 4.1), vocabulary from the layout preset, bf16 compute, activations
    recomputed except batch-free matmuls, batch 256, 1M steps."""
    from audiolm_jax.data.pipeline import LAYOUT_CONFIG_FIELDS
    from audiolm_jax.layouts import TokenLayout, round_up

    lay = TokenLayout.preset(layout_preset)
    c = get_base_config()
    c.lm = lm(vocab_size=lay.vocab_size(stage), dtype="bfloat16", remat="dots_no_batch")
    if seq_len is None:
        seq_len = PAPER_SEQ_LEN[stage] if layout_preset == "paper" else None
    seq_len = seq_len or round_up(lay.max_length(stage) - 1)
    c.data = cache_stage(
        stage,
        corpora,
        batch_size=batch_size,
        seq_len=seq_len,
        layout={k: getattr(lay, k) for k in LAYOUT_CONFIG_FIELDS},
    )
    c.optimizer.update(lr=5e-4, warmup_steps=10_000, end_lr_ratio=0.1)
    c.train.update(
        steps=1_000_000,
        log_every=100,
        eval_every=10_000,
        eval_batches=16,
        checkpoint_every=5_000,
        keep_checkpoints=3,
    )
    c.name = f"{stage}_tpu" if layout_preset == "paper" else f"{layout_preset}_{stage}_tpu"
    for_pod(c, fsdp=8)
    return c


# The quickstart's tokenizers: a 4-level codec of 64 codes at 50 Hz (soundstream_tiny) and
# K = 64 w2v-BERT ids at 25 Hz (w2v_bert_tiny); 2 coarse + 2 fine levels, 5 s semantic crops,
# 3 s coarse crops, 1 s fine chunks.
TINY_LAYOUT = dict(
    coarse_levels=2,
    has_fine_stage=True,
    semantic_crop_seconds=5.0,
    coarse_crop_seconds=3.0,
    fine_chunk_seconds=1.0,
)
TINY_VOCAB = {"semantic": 4 + 64, "coarse": 4 + 64 + 2 * 64, "fine": 4 + 4 * 64}
TINY_SEQ_LEN = {"semantic": 128, "coarse": 384, "fine": 256}


# The tiny piano variant (the paper's piano model shrunk): a 3-level codec of 256 codes, every
# level modelled by the coarse stage, no fine stage; 2 s coarse crops.
PIANO_TINY_LAYOUT = dict(
    coarse_levels=3,
    has_fine_stage=False,
    semantic_crop_seconds=5.0,
    coarse_crop_seconds=2.0,
    fine_chunk_seconds=1.0,
)
PIANO_TINY_VOCAB = {"semantic": 4 + 64, "coarse": 4 + 64 + 3 * 256}


def stage_tiny(
    stage: str, corpora: dict, *, layout: dict | None = None, vocab: int | None = None
) -> ml_collections.ConfigDict:
    """A tiny stage LM (2 layers, d 128) on a token cache, trained in a minute on a CPU; sized
    for the quickstart's tokenizers (TINY_LAYOUT) unless `layout` / `vocab` say otherwise."""
    from audiolm_jax.layouts import round_up

    c = get_base_config()
    vocab = vocab or TINY_VOCAB[stage]
    c.lm = lm(
        vocab_size=round_up(vocab), num_layers=2, num_heads=4, d_model=128, d_ff=512, dropout=0.0
    )
    c.data = cache_stage(
        stage,
        corpora,
        batch_size=8,
        seq_len=TINY_SEQ_LEN[stage],
        layout=dict(layout or TINY_LAYOUT),
    )
    c.data.shuffle_buffer = 256
    c.optimizer.update(lr=2e-3, warmup_steps=20, end_lr_ratio=0.1)
    c.train.update(steps=200, log_every=20, eval_every=100, eval_batches=2, checkpoint_every=100)
    c.name = f"{stage}_cache_tiny"
    return c


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
    # `slices`: how many TPU slices / GPU nodes the data axis spans (sharding.make_mesh).
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, slices=1))
    c.target = ""  # the slice or node this config is sized for (for_pod / for_gpu_node)
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
                # The codec's convolutions: replicated (it is small; data parallelism).
                ["conv_kernel", None],
                ["conv_width", None],
                ["conv_in", None],
                ["conv_out", None],
                # w2v-BERT's quantizer code vectors (another axis than embed on one kernel).
                ["code", None],
            ]
        )
    )
    # launch.py --mode=eval (audiolm_jax/workflows.py run_eval; audiolm_jax/eval/evaluate.py).
    c.eval = ml_collections.ConfigDict(
        dict(
            pipeline="",  # default: <workdir>/pipeline, else <workdir>
            sections="codec,continuation,abx,lexical,validation_loss",
            voices=0,  # the first N of eval.corpus.ACCENT_VOICES (0: all 9)
            per_voice=2,  # sentences per voice
            prompt_seconds=2.0,
            continuation_seconds=2.0,
            lexical_dir="",  # a ZeroSpeech-format folder; default: flite word/pseudo-word pairs
            abx_words="",  # comma-separated words; default: semantic.abx.WORDS
            detector="",  # a --mode=train_detector workdir; default <workdir>/detector
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
            # A profiler trace for TensorBoard: N steps after the first, or A:B (--profile_steps).
            profile_steps="",
            # MFU's denominator for chips audiolm_jax.train.perf does not know (0: look it up).
            peak_flops_per_device=0.0,
        )
    )
    return c
