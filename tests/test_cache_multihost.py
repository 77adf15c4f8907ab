"""The token-cache data source resumes exactly across a checkpoint in a 2-process JAX job: each
process reads its own shards, saves its own iterator (`process_<i>-of-2`), and after a restart
from step 3 serves the same batches 4..6 as an unbroken run."""

import os
import sys

import pytest
from conftest import REPO
from multihost import run_job
from test_seqio_tasks import write_cache

NUM_PROCESSES = 2


def _run(workdir, cache, steps):
    args = [
        sys.executable,
        str(REPO / "launch.py"),
        "--config=semantic_cache_tiny",
        f"--config.data.corpora.corpus={cache}",
        "--config.data.batch_size=4",
        "--config.data.seq_len=32",
        "--config.data.shuffle_buffer=16",
        "--config.lm.num_layers=1",
        "--config.lm.num_heads=2",
        "--config.lm.d_model=32",
        "--config.lm.d_ff=64",
        "--config.optimizer.warmup_steps=2",
        f"--config.train.steps={steps}",
        "--config.train.log_every=3",
        "--config.train.eval_every=3",
        "--config.train.eval_batches=1",
        "--config.train.checkpoint_every=3",
        "--config.train.keep_checkpoints=3",
        "--config.train.log_batch_hashes=True",
        f"--workdir={workdir}",
    ]
    outs = run_job(
        args,
        num_processes=NUM_PROCESSES,
        cwd=str(REPO),
        env={"PYTHONPATH": str(REPO)},
    )
    for i, o in enumerate(outs):
        assert o.returncode == 0, f"process {i}:\n{o.stderr[-3000:]}"


def _hashes(workdir, process):
    suffix = "" if process == 0 else f".process{process}"
    lines = (workdir / f"batch_hashes{suffix}.txt").read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines)


@pytest.mark.slow
def test_two_process_cache_source_resumes_exactly(tmp_path):
    cache = tmp_path / "cache"
    # 4 shards: each of the 2 processes reads 2 of them.
    write_cache(cache, "corpus", 40, semantic_ids=(0, 16), seed=3, shards=4)

    straight = tmp_path / "straight"
    _run(straight, cache, steps=6)

    broken = tmp_path / "broken"
    _run(broken, cache, steps=3)
    iterators = broken / "checkpoints" / "3" / "data_iterator"
    for i in range(NUM_PROCESSES):
        assert (iterators / f"process_{i}-of-{NUM_PROCESSES}").is_dir(), os.listdir(iterators)
    _run(broken, cache, steps=6)  # resumes from the step-3 checkpoint

    per_process = []
    for i in range(NUM_PROCESSES):
        log = (broken / ("log.txt" if i == 0 else f"log.process{i}.txt")).read_text()
        # Each process restored its own saved iterator (not a replay from the step).
        assert "Resumed at step 3" in log and "'iterator_restored': True" in log, log[-2000:]
        a, b = _hashes(straight, i), _hashes(broken, i)
        assert sorted(a, key=int) == [str(s) for s in range(1, 7)]
        assert sorted(b, key=int) == [str(s) for s in range(1, 7)]
        for step in ("4", "5", "6"):
            assert a[step] == b[step], f"process {i} step {step}: {a[step]} != {b[step]}"
        assert len(set(a.values())) == 6  # every step served a different batch
        per_process.append(a)
    # The two processes read different shards, so their rows differ.
    assert per_process[0] != per_process[1]
