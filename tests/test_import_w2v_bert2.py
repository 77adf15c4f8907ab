"""Importing transformers' Wav2Vec2BertModel (w2v-BERT 2.0) onto our conformer: a tiny model
with random weights (no download) against transformers itself, layer by layer, on real speech
from the embedded corpus; the fbank front end against SeamlessM4TFeatureExtractor; semantic
tokens at 50 per second; clear errors for checkpoints the importer cannot read."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
import torch
import transformers
from safetensors.numpy import load_file, save_file

from audiolm_jax import semantic
from audiolm_jax.importers import w2v_bert2 as imp
from audiolm_jax.importers.common import CheckpointImportError
from audiolm_jax.semantic import w2v_bert2 as w2

CORPUS = Path(__file__).resolve().parents[1] / "audiolm_jax" / "data" / "corpus"
LAYERS = 3


def _speech(name: str) -> np.ndarray:
    """A corpus recording (16 kHz) cut to whole 320-sample frames."""
    (path,) = glob.glob(str(CORPUS / name))
    wav, rate = sf.read(path, dtype="float32")
    assert rate == 16000 and wav.ndim == 1
    return wav[: len(wav) // 320 * 320]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    wav = _speech("espeak-ng_en-029-f2_01.flac")
    # > 64 + 8 + 1 frames: every query sees keys beyond both clipping distances.
    assert len(wav) // 320 > 100
    return wav


@pytest.fixture(scope="module")
def extractor():
    return transformers.SeamlessM4TFeatureExtractor()


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = transformers.Wav2Vec2BertConfig(
        hidden_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        intermediate_size=128,
        conv_depthwise_kernel_size=7,
    )
    model = transformers.Wav2Vec2BertModel(config).eval()
    with torch.no_grad():  # HF initialises these to 0 / 1: make every tensor matter
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "distance_embedding" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def ckpt(hf_model, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("w2v_bert2"))
    hf_model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def imported(ckpt):
    config, params, model_state = imp.import_checkpoint(ckpt)
    assert model_state == {}
    return w2.W2VBert2Config.from_config(config.w2v_bert2), params["model"], config


def _hidden_states(model, input_features: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(torch.from_numpy(input_features), output_hidden_states=True)
    assert len(out.hidden_states) == LAYERS + 1
    return [h.numpy() for h in out.hidden_states]


_from_fbank = jax.jit(w2.features_from_fbank, static_argnums=0)
_features = jax.jit(w2.features, static_argnums=0)


def test_fbank_matches_seamless_extractor(extractor):
    """`fbank_features(wav)` is the extractor's input_features for wav + 240 zeros: T frames
    for 320 T samples, where the extractor on the unpadded wav gives T - 1 (Kaldi frames only
    whole 25 ms windows)."""
    for name in ("espeak-ng_en-029-f2_01.flac", "flite_slt_00.flac"):
        wav = _speech(name)
        t = len(wav) // 320
        ours = np.asarray(jax.jit(w2.fbank_features)(jnp.asarray(wav[None])))
        assert ours.shape == (1, t, 160)
        ref = extractor(np.pad(wav, (0, w2.FBANK_PAD)), sampling_rate=16000, return_tensors="np")
        assert ref["input_features"].shape == (1, t, 160)
        assert ref["attention_mask"].all()
        # Measured max 3.4e-4 (the lowest mel bins; HF's FFT is float64), mean 5e-7.
        np.testing.assert_allclose(ours, ref["input_features"], atol=2e-3)
        assert np.abs(ours - ref["input_features"]).mean() < 1e-5
        unpadded = extractor(wav, sampling_rate=16000, return_tensors="np")["input_features"]
        assert unpadded.shape == (1, t - 1, 160)


def test_mel_filters_match_transformers(extractor):
    np.testing.assert_allclose(w2.kaldi_mel_filters(), extractor.mel_filters, atol=1e-6)


def test_hidden_states_match_from_hf_input_features(hf_model, imported, extractor, speech):
    """Each layer i = HF's hidden_states[i] (0: the feature projection), on HF's own
    input_features of real speech (the conformer alone): measured max error 6e-6, where
    LayerNorm eps 1e-6 instead of HF's 1e-5 gives 6e-5."""
    cfg, params, _ = imported
    feats = extractor(speech, sampling_rate=16000, return_tensors="np")["input_features"]
    ref = _hidden_states(hf_model, feats)
    for layer in range(LAYERS + 1):
        cfg_l, params_l = w2.truncate(cfg, params, layer)
        ours = np.asarray(_from_fbank(cfg_l, params_l, jnp.asarray(feats)))
        np.testing.assert_allclose(ours, ref[layer], atol=3e-5, err_msg=f"layer {layer}")


def test_xla_attention_path_matches(imported, extractor, speech):
    """jax.nn.dot_product_attention (the accelerators' default) takes the same relative-key
    bias as the CPU's einsum attention."""
    cfg, params, _ = imported
    feats = jnp.asarray(
        extractor(speech, sampling_rate=16000, return_tensors="np")["input_features"]
    )
    einsum = _from_fbank(dataclasses.replace(cfg, attention_impl="einsum"), params, feats)
    xla = _from_fbank(dataclasses.replace(cfg, attention_impl="xla"), params, feats)
    np.testing.assert_allclose(np.asarray(xla), np.asarray(einsum), atol=1e-5)


def test_end_to_end_from_waveform(hf_model, imported, extractor, speech):
    """`features(wav)` = HF's model on the extractor's features of wav + 240 zeros (measured
    max error 1e-4, from the fbank's float32 FFT)."""
    cfg, params, _ = imported
    feats = extractor(np.pad(speech, (0, w2.FBANK_PAD)), sampling_rate=16000, return_tensors="np")
    ref = _hidden_states(hf_model, feats["input_features"])
    for layer in (0, LAYERS):
        cfg_l, params_l = w2.truncate(cfg, params, layer)
        ours = np.asarray(_features(cfg_l, params_l, jnp.asarray(speech[None])))
        assert ours.shape == (1, len(speech) // 320, cfg.hidden_size)
        np.testing.assert_allclose(ours, ref[layer], atol=2e-3, err_msg=f"layer {layer}")


def test_semantic_tokens_50_per_second(imported):
    cfg, params, config = imported
    assert (cfg.sample_rate, cfg.samples_per_frame, cfg.frame_rate) == (16000, 320, 50.0)
    assert (cfg.d_model, cfg.num_layers, cfg.name) == (64, LAYERS, "w2v-BERT 2.0")
    layer = int(config.semantic.layer)
    centroids = jax.random.normal(jax.random.key(0), (16, cfg.d_model))
    tok = semantic.from_parts(cfg, params, layer, centroids)
    assert tok.cfg.num_hidden_layers == layer
    blocks = sorted(k for k in tok.params["encoder"] if k.startswith("layer"))
    assert blocks == [f"layer_{i}" for i in range(layer)] and not tok.cfg.scan_layers
    assert tok.params["encoder"]["layer_0"]["final_norm"]["scale"].shape == (64,)
    long = _speech("flite_slt_00.flac")
    wav = long[:16000]
    ids = semantic.encode(tok, wav)
    assert ids.shape == (1, 50) and ids.dtype == jnp.int32
    assert 0 <= int(ids.min()) and int(ids.max()) < 16
    np.testing.assert_array_equal(np.asarray(jax.jit(semantic.encode)(tok, wav)), np.asarray(ids))
    assert semantic.encode(tok, long[:16001]).shape == (1, 51)  # ceil(samples / 320)
    assert "w2v-BERT 2.0 layer" in semantic.describe(tok)


def test_project_config(imported):
    cfg, _, config = imported
    assert config.model == "w2v_bert2"
    assert semantic.model_config(config) == cfg
    assert cfg == w2.W2VBert2Config.from_hf(
        transformers.Wav2Vec2BertConfig(
            hidden_size=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            intermediate_size=128,
            conv_depthwise_kernel_size=7,
        ).to_dict()
    )
    assert config.semantic.k == 1024 and config.semantic.layer == 2
    assert imp.default_layer(24) == 17
    assert config.data.source == "corpus"
    for key in ("stats_batches", "steps", "init_batches", "batch_size", "overwrite"):
        assert key in config.semantic
    with pytest.raises(ValueError, match="layer 4 out of range"):
        w2.truncate(cfg, {}, LAYERS + 1)


def _variant(src: str, dst: Path, config_edit=None, state_edit=None) -> str:
    dst.mkdir()
    with open(os.path.join(src, "config.json")) as f:
        hf = json.load(f)
    if config_edit:
        config_edit(hf)
    with open(dst / "config.json", "w") as f:
        json.dump(hf, f)
    if state_edit:
        state = load_file(os.path.join(src, "model.safetensors"))
        save_file(state_edit(state), str(dst / "model.safetensors"))
    else:
        shutil.copy(os.path.join(src, "model.safetensors"), dst / "model.safetensors")
    return str(dst)


def test_task_model_prefix(ckpt, imported, tmp_path):
    """A task model's weights (Wav2Vec2BertFor*: under `wav2vec2_bert.`, plus a head)."""

    def prefixed(state):
        out = {f"wav2vec2_bert.{k}": v for k, v in state.items()}
        out["lm_head.weight"] = np.zeros((8, 64), np.float32)
        return out

    path = _variant(ckpt, tmp_path / "ctc", state_edit=prefixed)
    _, params, _ = imp.import_checkpoint(path)
    jax.tree.map(np.testing.assert_array_equal, params["model"], imported[1])


def test_wrong_model_type(ckpt, tmp_path):
    path = _variant(ckpt, tmp_path / "hub", config_edit=lambda c: c.update(model_type="hubert"))
    with pytest.raises(CheckpointImportError, match="'hubert' model.*'wav2vec2-bert'"):
        imp.import_checkpoint(path)


def test_missing_tensor(ckpt, tmp_path):
    name = "encoder.layers.1.self_attn.distance_embedding.weight"

    def drop(state):
        del state[name]
        return state

    path = _variant(ckpt, tmp_path / "missing", state_edit=drop)
    with pytest.raises(CheckpointImportError, match=f"tensor '{name}' is missing"):
        imp.import_checkpoint(path)


def test_shape_mismatch(ckpt, tmp_path):
    path = _variant(ckpt, tmp_path / "shape", config_edit=lambda c: c.update(intermediate_size=96))
    with pytest.raises(
        CheckpointImportError, match=r"'encoder.layers.0.ffn1.intermediate_dense.weight' has shape"
    ):
        imp.import_checkpoint(path)


@pytest.mark.parametrize(
    "edit, match",
    [
        ({"add_adapter": True}, "add_adapter"),
        ({"use_intermediate_ffn_before_adapter": True}, "intermediate FFN"),
        ({"position_embeddings_type": "rotary"}, "position_embeddings_type='rotary'"),
        ({"hidden_act": "tanh"}, "hidden_act='tanh'"),
    ],
)
def test_unsupported_configs(ckpt, tmp_path, edit, match):
    path = _variant(ckpt, tmp_path / "unsupported", config_edit=lambda c: c.update(edit))
    with pytest.raises(CheckpointImportError, match=match):
        imp.import_checkpoint(path)
