"""Peer benchmark: HuBERT + k-means semantic tokenization speed in PyTorch / transformers.

Runs INSIDE the peer virtual environment (``benchmarks/peer_env.py``: torch CPU, transformers,
scikit-learn), never in the project's own environment, and prints exactly one JSON line on
stdout (logs go to stderr). It times the tokenizer AudioLM-style systems put in front of the
semantic stage: ``transformers.HubertModel(HubertConfig())`` (HuBERT base: 7 conv layers, 12
transformer layers of width 768, 50 frames per second; *random* weights, nothing downloaded)
run up to layer ``--layer``, then ``sklearn.cluster.MiniBatchKMeans.predict`` with ``--k``
clusters fitted on the features of a warm-up portion of the audio (the first
``--fit-seconds``). Timing: batch 1 per file, ``torch.inference_mode``, 2 threads; the
forward pass plus ``predict`` of every file, summed, median over ``--repeats`` after
``--warmup`` untimed passes (the first pass over new input lengths is several times slower).

Audio (16 kHz mono) comes from one path:

* ``.npz``: every array is one file (1-D float samples);
* ``.npy``: a 1-D array (one file) or 2-D ``[files, samples]``;
* ``.wav``: one file; ``.txt``: one WAV path per line (read with scipy, must be 16 kHz).

With the project's own environment, e.g. on ~60 s of the embedded corpus::

    import glob, numpy as np
    from audiolm_jax import dsp
    from benchmarks.peer_env import run_peer
    files = sorted(glob.glob("audiolm_jax/data/corpus/*.flac"))
    np.savez("/tmp/corpus16k.npz", *[dsp.read_audio(f, 16000)[0] for f in files])
    print(run_peer("peer_hubert_tokens.py", "/tmp/corpus16k.npz", "--seconds", "60"))

``median_wall_s`` is the median over repeats of the time to tokenize ``audio_seconds`` of
audio (``kmeans_predict_s``: the part of each repeat spent in ``predict``); ``audio_s_per_s``
is ``audio_seconds / median_wall_s`` (seconds of audio tokenized per second of wall time);
``frames_per_second_of_audio`` is the token rate (50 Hz).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

import numpy as np

RATE = 16000


def _log(msg: str) -> None:
    print(f"[peer_hubert_tokens] {msg}", file=sys.stderr, flush=True)


def _read_wav(path: str) -> np.ndarray:
    from scipy.io import wavfile

    rate, data = wavfile.read(path)
    if rate != RATE:
        raise ValueError(f"{path}: {rate} Hz, expected {RATE} Hz (resample it first)")
    if data.dtype.kind == "i":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
    data = np.asarray(data, np.float32)
    return data.mean(axis=1) if data.ndim == 2 else data


def load_audio(path: str) -> list[np.ndarray]:
    """The 16 kHz files held in `path` (.npz, .npy, .wav or a .txt list of WAVs), float32."""
    if path.endswith(".npz"):
        with np.load(path) as z:
            files = [np.asarray(z[k], np.float32).reshape(-1) for k in z.files]
    elif path.endswith(".npy"):
        arr = np.load(path)
        files = [np.asarray(a, np.float32) for a in (arr[None] if arr.ndim == 1 else arr)]
    elif path.endswith(".wav"):
        files = [_read_wav(path)]
    elif path.endswith(".txt"):
        with open(path) as f:
            files = [_read_wav(line.strip()) for line in f if line.strip()]
    else:
        raise ValueError(f"{path}: expected .npz, .npy, .wav or .txt (a list of WAV paths)")
    files = [f for f in files if len(f)]
    if not files:
        raise ValueError(f"{path} holds no audio")
    return files


def take_seconds(files: list[np.ndarray], seconds: float) -> list[np.ndarray]:
    """The first `seconds` of audio from `files` in order (the last file cut), cycling through
    the list again where it holds less than that."""
    want, out, n = int(round(seconds * RATE)), [], 0
    while want > 0:
        f = files[n % len(files)][:want]
        out.append(f)
        want -= len(f)
        n += 1
    return out


def main(argv=None) -> int:
    """Parse the arguments, run the benchmark, print its JSON line; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("audio", help=".npz / .npy / .wav / .txt of 16 kHz audio")
    p.add_argument("--seconds", type=float, default=60.0, help="audio to tokenize per repeat")
    p.add_argument("--layer", type=int, default=6, help="transformer layer whose output is used")
    p.add_argument("--k", type=int, default=1024, help="k-means clusters (HuBERT used 500)")
    p.add_argument("--fit-seconds", type=float, default=30.0, help="audio to fit k-means on")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed passes over the audio first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON line
        result = run(args)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def run(args) -> dict:
    """Build HuBERT base (random weights) cut at `args.layer`, fit k-means, time tokenization."""
    import sklearn
    import torch
    import transformers
    from sklearn.cluster import MiniBatchKMeans
    from transformers import HubertConfig, HubertModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = HubertConfig()
    if not 1 <= args.layer <= config.num_hidden_layers:
        raise ValueError(f"--layer must be in 1..{config.num_hidden_layers}")
    model = HubertModel(config).eval()
    # Run the encoder only up to --layer: with post-layer-norm HuBERT (base), the last hidden
    # state of the cut model is the output of transformer layer `layer` (hidden_states[layer]).
    model.encoder.layers = model.encoder.layers[: args.layer]
    n_params = sum(p.numel() for p in model.parameters())

    files = load_audio(args.audio)
    fit_audio = take_seconds(files, args.fit_seconds)
    audio = take_seconds(files, args.seconds)
    audio_seconds = sum(len(a) for a in audio) / RATE

    def features(wav: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(wav, np.float32))[None]
        return model(x).last_hidden_state[0]

    with torch.inference_mode():
        t0 = time.perf_counter()
        fit_feats = np.concatenate([features(w).numpy() for w in fit_audio])
        t_fit_feats = time.perf_counter() - t0
    if len(fit_feats) < args.k:
        raise ValueError(
            f"{len(fit_feats)} frames from --fit-seconds {args.fit_seconds} are fewer than "
            f"--k {args.k} clusters; give more fit audio"
        )
    t0 = time.perf_counter()
    kmeans = MiniBatchKMeans(
        n_clusters=args.k, batch_size=4096, n_init=1, max_iter=30, random_state=args.seed
    ).fit(fit_feats)
    t_kmeans_fit = time.perf_counter() - t0
    _log(f"fit {args.k}-means on {len(fit_feats)} frames in {t_kmeans_fit:.1f} s")

    walls, predict_s, frames = [], [], 0
    with torch.inference_mode():
        for r in range(-args.warmup, args.repeats):
            t0 = time.perf_counter()
            frames, in_predict = 0, 0.0
            for wav in audio:
                feats = features(wav).numpy()
                t1 = time.perf_counter()
                tokens = kmeans.predict(feats)
                in_predict += time.perf_counter() - t1
                frames += len(tokens)
            wall = time.perf_counter() - t0
            _log(f"{'warmup' if r < 0 else 'repeat'} {r}: {audio_seconds:.1f} s in {wall:.2f} s")
            if r >= 0:
                walls.append(wall)
                predict_s.append(in_predict)
    median = statistics.median(walls)
    return {
        "impl": "transformers HubertModel (base, random weights) + sklearn MiniBatchKMeans",
        "audio_seconds": audio_seconds,
        "files": len(audio),
        "layer": args.layer,
        "k": args.k,
        "params_to_layer": n_params,
        "median_wall_s": median,
        "min_wall_s": min(walls),
        "walls_s": walls,
        "kmeans_predict_s": predict_s,
        "audio_s_per_s": audio_seconds / median,
        "frames_per_second_of_audio": frames / audio_seconds,
        "fit_features_s": t_fit_feats,
        "kmeans_fit_s": t_kmeans_fit,
        "threads": args.threads,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "sklearn_version": sklearn.__version__,
    }


if __name__ == "__main__":
    sys.exit(main())
