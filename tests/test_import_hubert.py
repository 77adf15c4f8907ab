"""HuBERT import: tiny transformers `HubertModel`s with random weights, saved with
`save_pretrained`, imported and compared layer by layer on speech; the semantic API's rates;
the importer's errors.

Both network variants are covered: base-like ("group" feature norm, post-LN encoder) and
large-like ("layer" feature norm, pre-LN encoder), plus the BatchNorm positional conv. HF runs
on the waveform padded with 40 zeros on each side, which is what `hubert.features` does to
give one frame per 320 samples.
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from conftest import launch_summary
from safetensors.numpy import load_file, save_file

from audiolm_jax import dsp, semantic
from audiolm_jax.data import audio
from audiolm_jax.importers.common import CheckpointImportError
from audiolm_jax.importers.hubert import import_checkpoint
from audiolm_jax.semantic import hubert

PAD = 40

TINY = dict(
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=128,
    conv_dim=(32,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
VARIANTS = {
    # HuBERT base: GroupNorm on the first conv, post-LN encoder.
    "group": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
    # HuBERT large: LayerNorm after every conv, pre-LN encoder with a final LayerNorm.
    "layer": dict(
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        feat_proj_layer_norm=False,
    ),
    # BatchNorm before the positional conv instead of weight norm.
    "batchnorm": dict(feat_extract_norm="group", conv_pos_batch_norm=True, conv_bias=True),
}


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter and norm statistic random (HF initialises norms to 1/0, biases to 0 and
    linears small, which would hide a swapped scale/bias or a wrong attention scale)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * r)
            elif name.endswith("bias"):
                p.copy_(0.1 * r)
            elif p.ndim == 2:  # linears: unit-variance outputs
                p.copy_(r / p.shape[1] ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """variant -> (folder, HubertModel in eval mode), built once per module."""
    out = {}
    for i, (variant, kw) in enumerate(VARIANTS.items()):
        torch.manual_seed(i)
        model = transformers.HubertModel(transformers.HubertConfig(**TINY, **kw)).eval()
        _randomize(model, i)
        path = str(tmp_path_factory.mktemp(f"hubert_{variant}"))
        model.save_pretrained(path)
        out[variant] = (path, model)
    return out


def _speech(seconds: float) -> np.ndarray:
    """Two clips `[2, seconds * 16000]` of speech from the embedded corpus (two voices)."""
    n = int(seconds * 16000)
    entries = audio.corpus_entries("train")
    paths = [entries[0]["path"], entries[-1]["path"]]
    return np.stack([dsp.read_audio(p, 16000)[0][:n] for p in paths]).astype(np.float32)


def _hf(model, wav: np.ndarray):
    with torch.no_grad():
        return model(torch.from_numpy(np.pad(wav, ((0, 0), (PAD, PAD)))), output_hidden_states=True)


def _layer_errors(path, model, wav) -> list[float]:
    """Max |ours - HF| / max(1, max |HF|) for layers 0..N."""
    config, params, model_state = import_checkpoint(path)
    assert model_state == {}
    cfg = hubert.HubertConfig.from_config(config.hubert)
    out = _hf(model, wav)
    n = cfg.num_layers
    assert len(out.hidden_states) == n + 1
    errs = []
    for layer in range(n + 1):
        cfg_l, params_l = hubert.truncate(cfg, params["model"], layer)
        ours = np.asarray(semantic.truncated_features(cfg_l, params_l, jnp.asarray(wav)))
        # Layer N of the pre-LN variant is after the encoder's final LayerNorm.
        ref = out.last_hidden_state if layer == n else out.hidden_states[layer]
        ref = ref.numpy()
        assert ours.shape == ref.shape == (wav.shape[0], wav.shape[1] // 320, cfg.d_model)
        errs.append(float(np.abs(ours - ref).max() / max(1.0, np.abs(ref).max())))
    return errs


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_transformers_layer_by_layer(checkpoints, variant):
    path, model = checkpoints[variant]
    errs = _layer_errors(path, model, _speech(1.5))
    print(variant, "max relative error per layer", errs)
    assert max(errs) < 1e-4, errs


def test_pre_ln_layers_follow_hidden_states(checkpoints):
    """Pre-LN: layers < N are HF's hidden_states (no final norm); layer N is last_hidden_state,
    the final LayerNorm of hidden_states[N]."""
    path, model = checkpoints["layer"]
    config, params, _ = import_checkpoint(path)
    cfg = hubert.HubertConfig.from_config(config.hubert)
    n = cfg.num_layers
    cfg_1, params_1 = hubert.truncate(cfg, params["model"], 1)
    assert "encoder_norm" not in params_1
    # Truncated layers are unrolled, one subtree each (read in place by a jitted call).
    assert not cfg_1.scan_layers and [k for k in params_1 if k.startswith("layer")] == ["layer_0"]
    assert params_1["layer_0"]["wi"]["kernel"].shape == (cfg.d_model, cfg.intermediate_size)
    cfg_n, params_n = hubert.truncate(cfg, params["model"], n)
    assert cfg_n.final_layer_norm and "encoder_norm" in params_n
    # The unrolled model computes what the imported, scanned one does; truncating it again
    # keeps its layout.
    wav = jnp.asarray(_speech(0.5)[:1])
    run = jax.jit(hubert.features, static_argnums=0)
    scanned = run(cfg, params["model"], wav)
    np.testing.assert_allclose(run(cfg_n, params_n, wav), scanned, rtol=1e-5, atol=1e-5)
    cfg_2, params_2 = hubert.truncate(cfg_n, params_n, 2)
    cfg_2s, params_2s = hubert.truncate(cfg, params["model"], 2)
    assert cfg_2 == cfg_2s and jax.tree.structure(params_2) == jax.tree.structure(params_2s)
    norm = model.encoder.layer_norm
    out = _hf(model, _speech(0.5)[:1])
    with torch.no_grad():
        np.testing.assert_allclose(
            norm(out.hidden_states[n]).numpy(), out.last_hidden_state.numpy(), atol=1e-6
        )


def test_padding_convention(checkpoints):
    """features pads 40 zeros each side: the same as the unpadded network on a padded wave."""
    path, _ = checkpoints["group"]
    config, params, _ = import_checkpoint(path)
    cfg = hubert.HubertConfig.from_config(config.hubert)
    assert (cfg.receptive_field, cfg.samples_per_frame) == (400, 320)
    wav = jnp.asarray(_speech(0.5))
    cfg0, params0 = hubert.truncate(cfg, params["model"], 0)
    run = jax.jit(hubert.features, static_argnums=0, static_argnames="pad")
    a = run(cfg0, params0, wav)
    b = run(cfg0, params0, jnp.pad(wav, ((0, 0), (PAD, PAD))), pad=False)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.shape[1] == 25
    # Without the padding the conv stack gives one frame fewer.
    assert run(cfg0, params0, wav, pad=False).shape[1] == 24


@pytest.mark.parametrize("variant", ["group", "layer"])
def test_feature_encoder_chunks_give_the_whole_clips_frames(checkpoints, variant, monkeypatch):
    """The conv stack runs in chunks of output frames; a clip that is not a whole number of
    chunks gives the frames of one pass over the whole clip (GroupNorm statistics over the
    whole clip, from the waveform), and a clip shorter than one frame is refused."""
    path, _ = checkpoints[variant]
    config, params, _ = import_checkpoint(path)
    cfg = hubert.HubertConfig.from_config(config.hubert)
    fe = {"params": params["model"]["feature_encoder"]}
    wav = jnp.asarray(_speech(1.23)[:1])  # 61 frames unpadded: 7 chunks of 9, the last short
    monkeypatch.setattr(hubert, "CHUNK_FRAMES", 9)
    chunked = hubert.FeatureEncoder(cfg).apply(fe, wav)
    monkeypatch.setattr(hubert, "CHUNK_FRAMES", 10**6)
    whole = hubert.FeatureEncoder(cfg).apply(fe, wav)
    assert chunked.shape == whole.shape == (1, 61, cfg.conv_dim[-1])
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 400 samples"):
        hubert.FeatureEncoder(cfg).apply(fe, wav[:, :399])


def test_semantic_api_rates(checkpoints):
    path, _ = checkpoints["group"]
    config, params, _ = import_checkpoint(path)
    cfg = semantic.model_config(config)  # dispatch on config.model == "hubert"
    assert isinstance(cfg, hubert.HubertConfig)
    assert (cfg.sample_rate, cfg.samples_per_frame, cfg.frame_rate) == (16000, 320, 50.0)
    assert (cfg.d_model, cfg.num_layers, cfg.name) == (64, 3, "HuBERT")
    assert config.semantic.layer == 3 and config.semantic.k == 500  # layer 9, clamped to N
    centroids = np.random.RandomState(0).randn(8, cfg.d_model).astype(np.float32)
    tok = semantic.from_parts(cfg, params["model"], 2, centroids)
    wav = _speech(1.0)[:1]
    ids = semantic.encode(tok, wav)
    assert ids.shape == (1, 50) and ids.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(jax.jit(semantic.encode)(tok, jnp.asarray(wav))), ids)
    assert semantic.encode(tok, wav[0, :320]).shape == (1, 1)
    assert semantic.encode(tok, wav[0, :100]).shape == (1, 1)  # right-padded to one frame
    assert semantic.encode(tok, wav[0, :16001]).shape == (1, 50)
    assert "HuBERT layer 2" in semantic.describe(tok)


def test_import_fit_kmeans_load_encode_through_launch(checkpoints, tmp_path):
    """The reference implementation's HuBERT + k-means tokenizer, end to end from the command
    line: import, fit k-means on the written config, `semantic.load`, 50 ids a second."""
    path, _ = checkpoints["group"]
    workdir = tmp_path / "hubert"

    def launch(*args):
        return launch_summary(*args, f"--workdir={workdir}")

    summary = launch("--mode=import", "--from=hubert", f"--checkpoint={path}")
    assert summary["model"] == "hubert"
    cfg, loaded, config = semantic.load_model(str(workdir))
    assert isinstance(cfg, hubert.HubertConfig) and config.data.source == "corpus"
    jax.tree.map(np.testing.assert_array_equal, loaded, import_checkpoint(path)[1]["model"])
    small = dict(layer=2, k=16, steps=10, stats_batches=2, init_batches=1, batch_size=4)
    launch(
        f"--config={workdir / 'config.py'}",
        "--mode=fit_kmeans",
        *(f"--config.semantic.{k}={v}" for k, v in small.items()),
    )
    tok = semantic.load(str(workdir))
    assert (tok.layer, tok.vocab_size, tok.frame_rate) == (2, 16, 50.0)
    ids = np.asarray(semantic.encode(tok, _speech(1.0)))
    assert ids.shape == (2, 50) and len(np.unique(ids)) > 4


def test_wrapped_model_and_old_weight_norm_spelling(checkpoints, tmp_path):
    """A HubertForCTC checkpoint (tensors under `hubert.`) and fairseq-era `weight_g/weight_v`
    weight norm import to the same params."""
    path, model = checkpoints["group"]
    _, params, _ = import_checkpoint(path)
    ctc = transformers.HubertForCTC(model.config)
    ctc.hubert.load_state_dict(model.state_dict())
    ctc.save_pretrained(tmp_path / "ctc")
    _, params_ctc, _ = import_checkpoint(str(tmp_path / "ctc"))
    jax.tree.map(np.testing.assert_array_equal, params_ctc, params)

    state = load_file(os.path.join(path, "model.safetensors"))
    pw = "encoder.pos_conv_embed.conv.parametrizations.weight"
    state["encoder.pos_conv_embed.conv.weight_g"] = state.pop(f"{pw}.original0")
    state["encoder.pos_conv_embed.conv.weight_v"] = state.pop(f"{pw}.original1")
    old = _copy(path, tmp_path / "old", state)
    _, params_old, _ = import_checkpoint(old)
    jax.tree.map(np.testing.assert_array_equal, params_old, params)


def _copy(path, dest, state=None, **config_changes) -> str:
    os.makedirs(dest)
    with open(os.path.join(path, "config.json")) as f:
        hf = json.load(f)
    hf.update(config_changes)
    with open(os.path.join(dest, "config.json"), "w") as f:
        json.dump(hf, f)
    if state is None:
        shutil.copy(os.path.join(path, "model.safetensors"), dest)
    else:
        save_file(state, os.path.join(dest, "model.safetensors"))
    return str(dest)


def test_errors_name_the_model_type_or_tensor(checkpoints, tmp_path):
    path, _ = checkpoints["group"]
    with pytest.raises(CheckpointImportError, match="'wav2vec2'"):
        import_checkpoint(_copy(path, tmp_path / "w2v", model_type="wav2vec2"))

    state = load_file(os.path.join(path, "model.safetensors"))
    gone = "encoder.layers.1.attention.k_proj.weight"
    del state[gone]
    with pytest.raises(CheckpointImportError, match=f"'{gone}' is missing"):
        import_checkpoint(_copy(path, tmp_path / "missing", state))

    with pytest.raises(
        CheckpointImportError,
        match=r"'encoder\.layers\.0\.feed_forward\.intermediate_dense\.weight' has shape",
    ):
        import_checkpoint(_copy(path, tmp_path / "shape", intermediate_size=96))

    state = load_file(os.path.join(path, "model.safetensors"))
    pw = "encoder.pos_conv_embed.conv.parametrizations.weight.original1"
    state[pw] = state[pw][:, :, :-1]
    with pytest.raises(CheckpointImportError, match=f"'{pw}' has shape"):
        import_checkpoint(_copy(path, tmp_path / "tensor", state))
