"""Audio signal processing shared by the codec's losses, its metrics and evaluation.

Pure JAX on device (STFT, mel filterbank, multi-scale mel losses, SI-SDR) plus host-side
reading and resampling. No TensorFlow here: `sample()` and the codec import this module.

Shapes: waveforms are `[batch, samples]` float32 in [-1, 1] unless a docstring says otherwise.
"""

from __future__ import annotations

import functools
import logging
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger("audiolm_jax")

# SoundStream's multi-scale reconstruction loss: windows 2^6 .. 2^11, hop s/4, 64 mel bins
# (Zeghidour et al. 2021, sec. 3.4; ../shared/PAPER.md).
MEL_SCALES = (64, 128, 256, 512, 1024, 2048)
MEL_BINS = 64


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Slaney's scale (librosa's default): linear below 1 kHz, logarithmic above.
    f = np.asarray(f, np.float64)
    lin = f / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    lin = m * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log_part, lin)


@functools.lru_cache(maxsize=64)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int = MEL_BINS, fmax: float | None = None
) -> np.ndarray:
    """Triangular mel filters `[n_fft // 2 + 1, n_mels]` from 0 Hz to `fmax` (default the
    Nyquist frequency), Slaney scale and area normalisation (the same matrix as
    `librosa.filters.mel(sr, n_fft, n_mels=n_mels, fmax=fmax)`, transposed)."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    top = _hz_to_mel(sample_rate / 2 if fmax is None else float(fmax))
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), top, n_mels + 2))
    lower = (freqs[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])[None]
    upper = (edges[None, 2:] - freqs[:, None]) / (edges[2:] - edges[1:-1])[None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[None]
    return weights.astype(np.float32)


def stft(wav: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """Complex STFT `[batch, frames, n_fft // 2 + 1]` with a periodic Hann window, centred frames
    (reflect padding of n_fft // 2 on both sides, as librosa's default)."""
    if wav.ndim != 2:
        raise ValueError(f"stft expects wav [batch, samples], got shape {wav.shape}")
    pad = n_fft // 2
    x = jnp.pad(wav, ((0, 0), (pad, pad)), mode="reflect")
    n_frames = 1 + (x.shape[1] - n_fft) // hop
    idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]
    window = jnp.asarray(np.hanning(n_fft + 1)[:-1], jnp.float32)
    return jnp.fft.rfft(x[:, idx] * window, axis=-1)


def stft_magnitude(wav: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """|STFT| `[batch, frames, n_fft // 2 + 1]` (see `stft`)."""
    spec = stft(wav, n_fft, hop)
    # sqrt(re^2 + im^2 + tiny): |z| has an infinite gradient at 0 (digital silence).
    return jnp.sqrt(jnp.real(spec) ** 2 + jnp.imag(spec) ** 2 + 1e-12)


def normalize_loudness(wav: np.ndarray, db: float = -20.0) -> np.ndarray:
    """Scales a (not silent) waveform to an RMS of `db` dBFS, clipped to [-1, 1]."""
    rms = float(np.sqrt(np.mean(wav**2)))
    return np.clip(wav * (10 ** (db / 20) / rms), -1.0, 1.0).astype(np.float32)


def mel_spectrogram(
    wav: jax.Array, sample_rate: int, n_fft: int, hop: int | None = None, n_mels: int = MEL_BINS
) -> jax.Array:
    """Magnitude mel spectrogram `[batch, frames, n_mels]` (hop defaults to n_fft // 4)."""
    mag = stft_magnitude(wav, n_fft, hop or n_fft // 4)
    return mag @ jnp.asarray(mel_filterbank(sample_rate, n_fft, n_mels))


def multiscale_mel_loss(
    wav: jax.Array, recon: jax.Array, sample_rate: int, scales=MEL_SCALES, n_mels: int = MEL_BINS
) -> jax.Array:
    """SoundStream's reconstruction loss, averaged over scales.

    Per scale s: mean |S_s(x) - S_s(y)| + sqrt(s / 2) * mean_t ||log S_s(x) - log S_s(y)||_2
    (L1 on the mel magnitudes, L2 over mel bins of the log-mel, Zeghidour et al. 2021, eq. 3).
    """
    total = 0.0
    for s in scales:
        a = mel_spectrogram(wav, sample_rate, s, n_mels=n_mels)
        b = mel_spectrogram(recon, sample_rate, s, n_mels=n_mels)
        l1 = jnp.mean(jnp.abs(a - b))
        dlog = jnp.log(a + 1e-5) - jnp.log(b + 1e-5)
        l2 = jnp.mean(jnp.sqrt(jnp.sum(dlog**2, axis=-1) + 1e-8))
        total = total + l1 + math.sqrt(s / 2) * l2
    return total / len(scales)


@functools.partial(jax.jit, static_argnames=("sample_rate", "scales", "n_mels"))
def mel_distance(
    wav: jax.Array, recon: jax.Array, sample_rate: int, scales=MEL_SCALES, n_mels: int = MEL_BINS
) -> jax.Array:
    """Multi-scale mel distance per example `[batch]`: mean over scales and cells of
    |log10 mel(x) - log10 mel(y)|, mel magnitudes clamped at 1e-5 (the form DAC reports,
    Kumar et al. 2023). 0 for identical signals; lower is better."""
    out = 0.0
    for s in scales:
        a = jnp.log10(jnp.maximum(mel_spectrogram(wav, sample_rate, s, n_mels=n_mels), 1e-5))
        b = jnp.log10(jnp.maximum(mel_spectrogram(recon, sample_rate, s, n_mels=n_mels), 1e-5))
        out = out + jnp.mean(jnp.abs(a - b), axis=(1, 2))
    return out / len(scales)


@jax.jit
def si_sdr(reference: jax.Array, estimate: jax.Array) -> jax.Array:
    """Scale-invariant signal-to-distortion ratio in dB per example `[batch]` (Le Roux et al.
    2019): the estimate projected on the zero-mean reference vs. what is left."""
    if reference.shape != estimate.shape:
        raise ValueError(
            f"si_sdr: reference {reference.shape} and estimate {estimate.shape} differ in shape"
        )
    ref = reference - reference.mean(-1, keepdims=True)
    est = estimate - estimate.mean(-1, keepdims=True)
    # Both products through one contraction: for est == ref they round alike and the scale is
    # exactly 1 (two fused sums reduced in different orders left 1.6e-5 of it on an AVX2 CPU,
    # capping identical signals at 96 dB).
    dot = functools.partial(jnp.einsum, "...t,...t->...")
    scale = (dot(ref, est) / (dot(ref, ref) + 1e-12))[..., None]
    target = scale * ref
    noise = est - target
    return 10 * jnp.log10((jnp.sum(target**2, -1) + 1e-12) / (jnp.sum(noise**2, -1) + 1e-12))


# --- host side: reading and resampling -----------------------------------------------------------

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def prepare_audio(
    wav, model_rate: int, multiple: int, sample_rate: int | None = None, what: str = "audio"
) -> jax.Array:
    """Checks and shapes audio for a model's `encode`: `[samples]` or `[batch, samples]` float
    -> `[batch, samples']` float32 at `model_rate`, right-padded with zeros to a multiple of
    `multiple` samples. Audio at another `sample_rate` is resampled on the host with a warning.
    Raises ValueError naming `what` for a wrong rank, empty or non-finite audio, or a rate
    change under jit (traced audio is checked for shape only)."""
    traced = isinstance(wav, jax.core.Tracer)
    ndim = np.ndim(wav)
    if ndim not in (1, 2):
        raise ValueError(f"{what} must be [samples] or [batch, samples], got shape {np.shape(wav)}")
    if np.shape(wav)[-1] == 0:
        raise ValueError(f"{what} is empty: shape {np.shape(wav)}")
    if sample_rate is not None and sample_rate != model_rate:
        if traced:
            raise ValueError(
                f"{what} at {sample_rate} Hz for a {model_rate} Hz model: resample before jit "
                "(resampling runs on the host)"
            )
        log.warning("Audio at %d Hz resampled to the model's %d Hz.", sample_rate, model_rate)
        wav = resample(np.asarray(wav), sample_rate, model_rate)
    if not traced and not np.all(np.isfinite(np.asarray(wav))):
        raise ValueError(f"{what} holds NaN or infinite samples")
    wav = jnp.asarray(wav, jnp.float32)
    if ndim == 1:
        wav = wav[None]
    pad = -wav.shape[-1] % multiple
    return jnp.pad(wav, ((0, 0), (0, pad))) if pad else wav


def resample(wav: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling on the host (soxr, high quality) along the last axis."""
    if orig_rate == target_rate:
        return np.asarray(wav, np.float32)
    import soxr

    x = np.asarray(wav, np.float32)
    if x.ndim == 1:
        return soxr.resample(x, orig_rate, target_rate).astype(np.float32)
    flat = x.reshape(-1, x.shape[-1])
    out = np.stack([soxr.resample(r, orig_rate, target_rate) for r in flat])
    return out.reshape(*x.shape[:-1], -1).astype(np.float32)


def read_audio(path: str, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(mono float32 samples, rate) of an audio file; channels mixed down, resampled to
    `sample_rate` if given. Raises ValueError naming the file if it is unreadable or empty."""
    import soundfile

    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for corrupt or foreign files
        raise ValueError(f"cannot read audio file {path}: {e}") from e
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} holds no samples")
    wav = data.mean(axis=1)
    if not np.all(np.isfinite(wav)):
        raise ValueError(f"audio file {path} holds NaN or infinite samples")
    if sample_rate is not None and rate != sample_rate:
        wav, rate = resample(wav, rate, sample_rate), sample_rate
    return wav.astype(np.float32), rate


def write_audio(path: str, wav: np.ndarray, sample_rate: int) -> None:
    """Writes mono float samples as 16-bit PCM (wav/flac by extension), clipping to [-1, 1]."""
    import soundfile

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    soundfile.write(path, np.clip(np.asarray(wav, np.float32), -1, 1), sample_rate, "PCM_16")


def list_audio(directory: str) -> list[str]:
    """Audio files (wav, flac, ogg) under `directory`, recursively, sorted."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"audio folder {directory} does not exist")
    found = []
    for root, _, files in os.walk(directory):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(AUDIO_EXTENSIONS)]
    return sorted(found)


def _png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB image [height, width, 3] as PNG file bytes (zlib; no imaging library)."""
    import struct
    import zlib

    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


# A dark-blue -> teal -> yellow ramp (perceptually ordered, like viridis), 5 control points.
_RAMP = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32
)


def write_spectrogram_png(
    path: str,
    wav: np.ndarray,
    sample_rate: int,
    *,
    marks_s: tuple[float, ...] = (),
    n_fft: int = 1024,
    n_mels: int = 128,
    db_range: float = 80.0,
) -> None:
    """A log-mel spectrogram of mono `wav` as a PNG (time left to right, low pitch at the
    bottom, `db_range` dB below the peak shown), with white vertical lines at `marks_s`
    seconds (e.g. where a prompt ends and its continuation starts)."""
    wav = np.asarray(wav, np.float32).reshape(-1)
    hop = n_fft // 4
    mel = np.asarray(mel_spectrogram(jnp.asarray(wav)[None], sample_rate, n_fft, hop, n_mels))[0]
    db = 20 * np.log10(np.maximum(mel, 1e-10))
    level = np.clip((db - (db.max() - db_range)) / db_range, 0.0, 1.0).T[::-1]  # [mels, frames]
    pos = level * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    rgb = (_RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac).astype(np.uint8)
    rgb = np.repeat(rgb, 2, axis=0)  # 2 pixel rows per mel band
    for t in marks_s:
        x = int(round(t * sample_rate / hop))
        if 0 <= x < rgb.shape[1]:
            rgb[:, x] = 255
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(_png_bytes(rgb))
