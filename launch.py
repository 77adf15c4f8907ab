"""The one launcher: `python launch.py --config=NAME [--config.a.b=v ...] [--workdir=DIR]`.

    python launch.py --config=quickstart                       # every part tiny, on a CPU
    python launch.py --config=semantic_tiny --workdir=runs/s   # train one stage
    python launch.py --config=semantic_tpu --config.train.steps=10
    python launch.py --config=soundstream_tiny --mode=reconstruct --input=DIR --levels=2
    python launch.py --config=w2v_bert_tiny --mode=fit_kmeans   # semantic tokenizer's k-means
    python launch.py --mode=import --from=encodec --checkpoint=DIR --workdir=runs/encodec
    python launch.py --mode=generate --prompt=in.wav --seconds=10 --out=out.wav
    python launch.py --config=corpus --mode=build_dataset --input=DIR --workdir=runs/corpus
    python launch.py --config=corpus --mode=tokenize --workdir=runs/corpus \
        --config.tokenize.codec=runs/soundstream_tiny --config.tokenize.semantic=runs/w2v

`--config` is a name from configs/ (see `--list_configs`) or a path to a config .py file;
`--config.a.b=v` overrides any field. Training resumes from the newest checkpoint in --workdir.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from absl import app, flags

from audiolm_jax import config as config_lib
from audiolm_jax.workflows import MODE_FLAGS, MODES

flags.DEFINE_string("config", None, "config name in configs/ or path to a config .py file")
flags.DEFINE_string("workdir", None, "checkpoints, logs and outputs (default runs/<config>)")
flags.DEFINE_string(
    "mode",
    None,
    f"workflow: {', '.join(MODES)}, import, generate "
    "(default: the config's `workflow` field, else train)",
)
flags.DEFINE_bool("list_configs", False, "print the known config names and exit")
flags.DEFINE_bool(
    "dry_run", False, "print per-device memory and FLOPs of the train step; no training"
)
flags.DEFINE_integer("devices", None, "--dry_run: plan for this many devices (abstract mesh)")
flags.DEFINE_string(
    "target",
    None,
    '--dry_run: compile for this TPU topology, e.g. v5e:4x4 (needs pip install -e ".[tpu_aot]")',
)
flags.DEFINE_string(
    "profile_steps",
    None,
    'trace N steps after the first ("5") or steps A..B ("10:15") into <workdir>/tensorboard',
)
flags.DEFINE_string("input", None, "--mode=reconstruct / build_dataset: a folder of audio files")
flags.DEFINE_integer("levels", None, "--mode=reconstruct: RVQ levels to use (default all)")
flags.DEFINE_string(
    "from", None, "--mode=import: encodec, hubert or w2v_bert2 (audiolm_jax/importers)"
)
flags.DEFINE_string(
    "checkpoint", None, "--mode=import: a save_pretrained folder (config.json + weights)"
)
flags.DEFINE_string(
    "pipeline",
    None,
    "--mode=generate: a pipeline folder (pipeline.json or stage subfolders; default --workdir, "
    "else runs/quickstart/pipeline)",
)
flags.DEFINE_string("prompt", None, "--mode=generate: an audio file to continue (any rate)")
flags.DEFINE_float("prompt_seconds", 3.0, "--mode=generate: how much of --prompt to use")
flags.DEFINE_float("seconds", 10.0, "--mode=generate: seconds of new audio")
flags.DEFINE_string("out", "generated.wav", "--mode=generate: output wav (+ .png beside it)")
flags.DEFINE_integer("seed", 0, "--mode=generate: the sampling key")
flags.DEFINE_integer("batch", 1, "--mode=generate: samples to draw")
flags.DEFINE_enum(
    "matmul_dtype",
    None,
    ["float32", "bfloat16"],
    "--mode=generate: operand dtype of the stages' Dense matmuls (default: as trained); "
    "bfloat16 is the fastest way to sample on a CPU with AMX (sample(matmul_dtype=))",
)
flags.DEFINE_enum(
    "malloc",
    "off",
    ["auto", "on", "off"],
    "glibc malloc tuning for XLA's CPU temporaries (audiolm_jax.host.tune_malloc): one arena, "
    "no mmap, no trimming; on: faster CPU steps with temporaries over 32 MB, slower compiles; "
    "auto = on unless the host has a GPU or TPU",
)
FLAGS = flags.FLAGS

_OVERRIDES: list[tuple[str, str]] = []


def _setup_logging(workdir: str) -> None:
    import jax

    from audiolm_jax.train.files import local_log_dir

    logdir = local_log_dir(workdir)  # a bucket workdir: this worker's log stays on local disk
    os.makedirs(logdir, exist_ok=True)
    # Orbax and JAX log every save step at INFO through absl; keep their warnings only.
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%H:%M:%S")
    logger = logging.getLogger("audiolm_jax")
    logger.propagate = False
    # Every process logs to its own file; only the first also talks on stderr at INFO.
    pid = jax.process_index()
    logger.setLevel(logging.INFO)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.INFO if pid == 0 else logging.WARNING)
    name = "log.txt" if pid == 0 else f"log.process{pid}.txt"
    for handler in (stderr, logging.FileHandler(os.path.join(logdir, name))):
        handler.setFormatter(fmt)
        logger.addHandler(handler)


def main(argv: list[str]) -> int:
    from audiolm_jax import host
    from audiolm_jax.train.distributed import maybe_initialize

    # Before anything starts JAX's backends: XLA's CPU threads take their malloc arenas then.
    malloc_tuned = host.tune_malloc(FLAGS.malloc)
    maybe_initialize()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.list_configs:
        print("\n".join(config_lib.list_configs()))
        return 0
    if FLAGS.mode == "import":
        return _import()
    if FLAGS.mode == "generate":
        return _generate()
    if not FLAGS.config:
        raise app.UsageError(
            f"--config is required; known configs: {', '.join(config_lib.list_configs())}"
        )
    try:
        config = config_lib.load_config(FLAGS.config)
        for key, value in _OVERRIDES:
            config_lib.apply_override(config, key, value)
        if FLAGS.profile_steps and "train" in config:
            config.train.profile_steps = FLAGS.profile_steps
    except (ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) else str(e)
        print(f"launch.py: {msg}", file=sys.stderr)
        return 2
    mode = FLAGS.mode or config.get("workflow") or "train"
    if mode not in MODES:
        print(f"launch.py: unknown --mode={mode}; modes: {', '.join(MODES)}", file=sys.stderr)
        return 2
    workdir = FLAGS.workdir or os.path.join("runs", config.name)
    _setup_logging(workdir)
    logging.getLogger("audiolm_jax").info(
        "launch.py --config=%s --mode=%s --workdir=%s%s",
        FLAGS.config,
        "dry_run" if FLAGS.dry_run else mode,
        workdir,
        "".join(f" --config.{k}={v}" for k, v in _OVERRIDES),
    )
    from audiolm_jax.train.distributed import describe

    logging.getLogger("audiolm_jax").info(describe())
    logging.getLogger("audiolm_jax").info(
        "host malloc: %s (--malloc=%s)",
        "one arena, no mmap, no trim (audiolm_jax.host)" if malloc_tuned else "as the system's",
        FLAGS.malloc,
    )
    if FLAGS.dry_run:
        from audiolm_jax.workflows import run_dry_run

        return _report(
            lambda: run_dry_run(config, workdir, devices=FLAGS.devices, target=FLAGS.target),
            (RuntimeError, ValueError),
        )
    options = {name: getattr(FLAGS, name) for name in MODE_FLAGS.get(mode, ())}
    # ImportError: an optional extra a mode needs (e.g. --mode=eval without ".[eval]").
    return _report(
        lambda: MODES[mode](config, workdir, **options),
        (ValueError, FileNotFoundError, ImportError),
    )


def _report(work, errors: tuple[type[Exception], ...]) -> int:
    """Runs `work()` and prints its summary as JSON (exit 0), or the message of one of
    `errors` on stderr (exit 2): bad input gets a sentence, not a traceback."""
    try:
        summary = work()
    except errors as e:
        print(f"launch.py: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _import() -> int:
    """--mode=import: a public checkpoint into an Orbax checkpoint in --workdir (no --config)."""
    from audiolm_jax.importers import CheckpointImportError, import_to_workdir

    kind = FLAGS["from"].value
    if not kind:
        print("launch.py: --mode=import needs --from=encodec|hubert|w2v_bert2", file=sys.stderr)
        return 2
    workdir = FLAGS.workdir or os.path.join("runs", kind)
    _setup_logging(workdir)
    return _report(
        lambda: import_to_workdir(kind, FLAGS.checkpoint, workdir),
        (CheckpointImportError, ValueError, FileNotFoundError, FileExistsError),
    )


def _generate() -> int:
    """--mode=generate: audio from a trained pipeline (no --config). A pipeline whose parts
    disagree raises PipelineMismatchError, a ValueError."""
    from audiolm_jax.workflows import run_generate

    pipeline = FLAGS.pipeline or FLAGS.workdir or os.path.join("runs", "quickstart", "pipeline")
    _setup_logging(os.path.dirname(os.path.abspath(FLAGS.out)))
    return _report(
        lambda: run_generate(
            pipeline,
            out=FLAGS.out,
            seconds=FLAGS.seconds,
            prompt=FLAGS.prompt,
            prompt_seconds=FLAGS.prompt_seconds,
            seed=FLAGS.seed,
            batch=FLAGS.batch,
            matmul_dtype=FLAGS.matmul_dtype,
        ),
        (ValueError, FileNotFoundError),
    )


def run() -> None:
    rest, overrides = config_lib.split_overrides(sys.argv)
    _OVERRIDES.extend(overrides)
    app.run(lambda argv: sys.exit(main(argv)), argv=rest)


if __name__ == "__main__":
    run()
