"""EnCodec import: transformers `EncodecModel`s with random weights (codebooks filled with
seeded random values: transformers initialises them to zeros, which would make every code 0),
saved with `save_pretrained`, imported into our codec and compared on speech: codes exactly,
decoded audio within float32 tolerance. Also streaming, `launch.py --mode=import`, and the
importer's errors."""

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from conftest import launch_summary, run_launch
from reference_models import fill_encodec_codebooks
from safetensors.numpy import load_file, save_file

from audiolm_jax import codec, dsp
from audiolm_jax.codec.model import CodecConfig
from audiolm_jax.data import audio
from audiolm_jax.importers.common import CheckpointImportError
from audiolm_jax.importers.encodec import import_checkpoint

# 8 filters, 32-dim latents, 256 codes; 4.8 kbps at 75 frames/s x 8 bits = 8 levels.
TINY = dict(num_filters=8, hidden_size=32, codebook_size=256, target_bandwidths=[1.2, 4.8])


def _speech(seconds: float) -> np.ndarray:
    """`[2, n]` speech from the embedded corpus (two voices) at 24 kHz, n a multiple of 320."""
    entries = audio.corpus_entries("train")
    n = int(seconds * 24000) // 320 * 320
    clips = [dsp.read_audio(e["path"], 24000)[0][:n] for e in (entries[0], entries[-1])]
    return np.stack(clips).astype(np.float32)


def _reference(config: dict, path, wav: np.ndarray, seed: int = 0):
    """Builds, fills, saves an EncodecModel; returns (codes [b, frames, Q], audio [b, n])."""
    torch.manual_seed(seed)
    model = transformers.EncodecModel(transformers.EncodecConfig(**config)).eval()
    fill_encodec_codebooks(model, wav, seed + 1)
    model.save_pretrained(path)
    with torch.no_grad():
        out = model.encode(
            torch.from_numpy(wav)[:, None], bandwidth=config["target_bandwidths"][-1]
        )
        audio_hf = model.decode(out.audio_codes, out.audio_scales)[0][:, 0].numpy()
    return np.transpose(out.audio_codes[0].numpy(), (0, 2, 1)), audio_hf


def _load(path) -> codec.Codec:
    config, params, state = import_checkpoint(str(path))
    return codec.from_state(CodecConfig.from_config(config.codec), params, state)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("encodec_tiny")
    wav = _speech(1.5)
    codes, audio_hf = _reference(TINY, path, wav)
    return path, wav, codes, audio_hf


def _decidable(c: codec.Codec, wav, codes_hf) -> np.ndarray:
    """`[b, frames]` True where every level's nearest code wins by more than float32 can resolve
    (relative gap > 3e-7 of ||x||^2, about 5 float32 ulps, in float64 along transformers'
    residual chain). On the rest
    (near-ties) transformers' own float32 argmax can pick the second-nearest code, and does:
    there our encoder returns the float64-nearest code instead."""
    from audiolm_jax.codec.model import encode_latents

    r = np.asarray(encode_latents(c.cfg, c.params, jnp.asarray(wav)), np.float64)
    ok = np.ones(r.shape[:2], bool)
    for lvl in range(codes_hf.shape[-1]):
        book = np.asarray(c.codebooks["codebook"][lvl], np.float64)
        d = np.sum((r[:, :, None] - book) ** 2, -1)
        two = np.sort(d, -1)[..., :2]
        ok &= (two[..., 1] - two[..., 0]) > 3e-7 * np.sum(r**2, -1)
        r = r - book[codes_hf[..., lvl]]
    return ok


def _check(c: codec.Codec, wav, codes_hf, audio_hf) -> None:
    codes = np.asarray(codec.encode(c, wav))
    assert codes.shape == codes_hf.shape
    ok = _decidable(c, wav, codes_hf)
    assert ok.mean() > 0.9, ok.mean()
    np.testing.assert_array_equal(codes[ok], codes_hf[ok])
    distinct = [len(np.unique(codes_hf[..., lvl])) for lvl in range(codes_hf.shape[-1])]
    assert min(distinct) >= 10, distinct  # the comparison is not empty
    decoded = np.asarray(codec.decode(c, jnp.asarray(codes_hf)))
    scale = np.abs(audio_hf).max()
    assert np.abs(decoded - audio_hf).max() < 1e-4 * max(scale, 1.0), (
        np.abs(decoded - audio_hf).max(),
        scale,
    )


def test_tiny_encodec_codes_and_audio_match_transformers(tiny):
    path, wav, codes_hf, audio_hf = tiny
    c = _load(path)
    assert (c.sample_rate, c.hop, c.levels, c.cfg.codebook_size) == (24000, 320, 8, 256)
    _check(c, wav, codes_hf, audio_hf)


@pytest.mark.slow
def test_encodec_24khz_architecture_matches_transformers(tmp_path):
    """The released 24 kHz EnCodec's shapes (transformers' default EncodecConfig): 32 levels
    x 1024 codes, 14.9M params, at all 32 levels."""
    wav = _speech(1.0)
    full = dict(target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0])
    codes_hf, audio_hf = _reference(full, tmp_path, wav)
    c = _load(tmp_path)
    assert (c.levels, c.cfg.codebook_size, c.cfg.frame_rate) == (32, 1024, 75)
    _check(c, wav, codes_hf, audio_hf)
    # Bandwidths as EnCodec counts them: 6 kbps = 8 levels, which are the first 8 of all 32.
    assert codec.levels_for_bitrate(c, 6.0) == 8 and codec.levels_for_bitrate(c, 1.5) == 2
    ok = _decidable(c, wav, codes_hf)
    first8 = np.asarray(codec.encode(c, wav, levels=8))
    np.testing.assert_array_equal(first8[ok], codes_hf[..., :8][ok])


def test_streaming_an_imported_codec_equals_whole_signal(tiny):
    """Reflect padding streams: the first chunk mirrors like the whole signal (it must be longer
    than the deepest padding: here 8 frames), later chunks continue the carried samples."""
    path, wav, _, _ = tiny
    c = _load(path)
    whole = np.asarray(codec.encode(c, wav))
    bounds = [0, 8 * 320, 11 * 320, 12 * 320, wav.shape[1]]
    state, parts = None, []
    for a, b in zip(bounds[:-1], bounds[1:]):
        codes, state = codec.encode_stream(c, wav[:, a:b], state)
        parts.append(np.asarray(codes))
    np.testing.assert_array_equal(np.concatenate(parts, 1), whole)
    dstate, audio_parts = None, []
    for a, b in ((0, 8), (8, 20), (20, whole.shape[1])):
        y, dstate = codec.decode_stream(c, whole[:, a:b], dstate)
        audio_parts.append(np.asarray(y))
    np.testing.assert_allclose(
        np.concatenate(audio_parts, 1), np.asarray(codec.decode(c, whole)), atol=2e-5
    )


def test_launch_import_writes_a_checkpoint_codec_load_reads(tiny, tmp_path):
    path, wav, codes_hf, audio_hf = tiny
    workdir = tmp_path / "run"
    args = ["--mode=import", "--from=encodec", f"--checkpoint={path}", f"--workdir={workdir}"]
    summary = launch_summary(*args, timeout=300)
    assert summary["model"] == "soundstream" and summary["params"] > 0
    _check(codec.load(str(workdir)), wav, codes_hf, audio_hf)
    # The written config rebuilds the model for later workflows (--config=<workdir>/config.py).
    from audiolm_jax import config as config_lib

    config = config_lib.load_config(str(workdir / "config.py"))
    assert CodecConfig.from_config(config.codec) == codec.load(str(workdir)).cfg
    # A second import into the same workdir refuses and leaves the first in place.
    again = run_launch(*args)
    assert again.returncode == 2 and "already holds checkpoints" in again.stderr
    assert (workdir / "checkpoints" / "0").is_dir()


def _copy(src, dest, drop=None, **config_changes) -> str:
    shutil.copytree(src, dest)
    if drop:
        f = os.path.join(dest, "model.safetensors")
        state = load_file(f)
        del state[drop]
        save_file(state, f)
    if config_changes:
        f = os.path.join(dest, "config.json")
        with open(f) as fh:
            cfg = json.load(fh)
        cfg.update(config_changes)
        with open(f, "w") as fh:
            json.dump(cfg, fh)
    return str(dest)


def test_errors_name_the_model_type_or_tensor(tiny, tmp_path):
    path = tiny[0]
    with pytest.raises(CheckpointImportError, match="'hubert' model"):
        import_checkpoint(_copy(path, tmp_path / "a", model_type="hubert"))
    missing = "encoder.layers.3.conv.bias"
    with pytest.raises(CheckpointImportError, match=f"tensor '{missing}' is missing"):
        import_checkpoint(_copy(path, tmp_path / "b", drop=missing))
    with pytest.raises(CheckpointImportError, match=r"'encoder\.layers\.0\.conv\..*' has shape"):
        import_checkpoint(_copy(path, tmp_path / "c", num_filters=16))
    with pytest.raises(CheckpointImportError, match="normalize=True is not supported"):
        import_checkpoint(_copy(path, tmp_path / "d", normalize=True))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        import_checkpoint(str(tmp_path / "nowhere"))
