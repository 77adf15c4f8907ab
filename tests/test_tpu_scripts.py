"""The tpu/ cluster scripts: their --dry-run output, shellcheck, bad flags, missing tools.

With --dry-run every script prints the commands it would run (`+ ` then the words quoted for
bash, `# ` notes) and runs nothing. tests/golden/tpu/CASE.txt holds, for each case in CASES,
the invocation (`$ ...`) and that output. After an intended change, rewrite the goldens with

    UPDATE_GOLDEN=1 python -m pytest -q tests/test_tpu_scripts.py

and read their diff. setup.sh copies the commit at HEAD, written `<HEAD>` in the goldens.
The scripts have not run against real TPUs or clusters here: these tests check what they would
run (the dry-run output; the same commands reach stub gcloud / ssh / sbatch word for word) and
the remote job control, run locally by bash with a stub Python.
"""

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TPU = REPO / "tpu"
GOLDEN = Path(__file__).resolve().parent / "golden" / "tpu"
SCRIPTS = sorted(p.name for p in TPU.glob("*.sh"))
BASH = shutil.which("bash") or "/bin/bash"
STUBS = ("gcloud", "ssh", "scp", "sbatch")

Z = ("--name=audiolm", "--zone=us-west4-a")
RUN = (*Z, "--config=semantic_tpu", "--workdir=gs://my-bucket/semantic")
TOKENS = "--tokens=gs://my-bucket/librilight/tokens"

# case name -> (script, arguments after --dry-run)
CASES = {
    "create_v4": ("create.sh", ("--name=audiolm", "--zone=us-central2-b", "--accelerator=v4-32")),
    "create_v5e_spot": ("create.sh", (*Z, "--accelerator=v5litepod-64", "--spot")),
    "create_v6e_project": (
        "create.sh",
        ("--name=audiolm", "--zone=us-east5-b", "--project=my-project", "--accelerator=v6e-64"),
    ),
    "create_queued_v5p_reserved": (
        "create.sh",
        (
            "--name=audiolm",
            "--zone=us-east5-a",
            "--accelerator=v5p-128",
            "--queued",
            "--reserved",
            "--valid-until=6h",
            "--wait",
        ),
    ),
    "create_multislice_spot": (
        "create.sh",
        (*Z, "--accelerator=v5litepod-256", "--slices=4", "--spot", "--", "--network=my-net"),
    ),
    "setup_tpu": ("setup.sh", Z),
    "setup_multislice_repo": (
        "setup.sh",
        (*Z, "--slices=2", "--repo=https://github.com/my-org/audiolm-jax.git", "--ref=main"),
    ),
    "setup_hosts": ("setup.sh", ("--hosts=gpu1,me@gpu2", "--dir=/opt/audiolm-jax")),
    "run_semantic": (
        "run.sh",
        (*RUN, TOKENS, "--env=XLA_FLAGS=--xla_dump_to=/tmp/x", "--", "--config.train.steps=1000"),
    ),
    "run_soundstream_audio": (
        "run.sh",
        (
            *Z,
            "--project=my-project",
            "--config=soundstream_tpu",
            "--workdir=gs://my-bucket/codec",
            "--audio=gs://my-bucket/librilight/audio",
            "--run=codec-1",
            "--",
            "--config.train.steps=1000",
            "--config.data.batch_size=256",
        ),
    ),
    "run_multislice": ("run.sh", (*RUN, "--slices=2", "--tokens=librilight=gs://b/tokens")),
    "run_quoted_values": (
        "run.sh",
        (*RUN, "--env=NOTE=it's a test", "--", "--config.name=it's mine", "--mode=train"),
    ),
    "run_stop": ("run.sh", (*Z, "--stop", "--run=semantic_tpu")),
    "logs_default": ("logs.sh", Z),
    "logs_all_multislice": (
        "logs.sh",
        (*Z, "--slices=2", "--worker=all", "--run=semantic_tpu", "--no-follow", "--lines=20"),
    ),
    "logs_status": ("logs.sh", (*Z, "--status")),
    "logs_hosts_all": ("logs.sh", ("--hosts=gpu1,gpu2", "--worker=all", "--run=semantic_gpu")),
    "teardown_vm": ("teardown.sh", Z),
    "teardown_multislice": ("teardown.sh", (*Z, "--slices=4", "--yes", "--project=my-project")),
    "slurm_submit": (
        "slurm.sh",
        (
            "--nodes=4",
            "--config=semantic_gpu",
            "--workdir=/shared/runs/semantic",
            "--tokens=/shared/librilight/tokens",
            "--partition=gpu",
            "--account=speech",
            "--time=2-00:00:00",
            "--requeue",
            "--dir=/shared/audiolm-jax",
            "--setup=source /shared/venv/bin/activate",
            "--env=NCCL_DEBUG=WARN",
            "--submit",
            "--",
            "--config.train.steps=100000",
        ),
    ),
    "slurm_write_only": (
        "slurm.sh",
        (
            "--nodes=2",
            "--gpus-per-node=4",
            "--config=soundstream_gpu",
            "--workdir=/shared/runs/codec",
            "--audio=/shared/librilight/audio",
            "--grace=0",
            "--dir=/shared/audiolm-jax",
            "--out=/shared/jobs/codec.sbatch",
            "--sbatch=--exclusive",
        ),
    ),
    "multinode_3_hosts": (
        "multinode.sh",
        (
            "--hosts=gpu1,me@gpu2,gpu3",
            "--config=semantic_gpu",
            "--workdir=/shared/runs/semantic",
            "--tokens=/shared/librilight/tokens",
            "--",
            "--config.train.steps=10",
        ),
    ),
    "multinode_2_hosts_coordinator": (
        "multinode.sh",
        (
            "--hosts=me@10.0.0.5,me@10.0.0.6",
            "--coordinator=10.0.0.5",
            "--port=23456",
            "--python=/opt/conda/bin/python",
            "--config=coarse_gpu",
            "--workdir=gs://my-bucket/coarse",
            "--run=coarse-a",
        ),
    ),
    "multinode_stop": ("multinode.sh", ("--hosts=gpu1,gpu2", "--stop", "--config=semantic_gpu")),
}


def _head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def _script(name: str, *args: str, path: str, cwd=REPO, extra_env=None):
    """`bash tpu/NAME ARGS` with only `path` on PATH."""
    env = {"PATH": path, "TMPDIR": "/tmp", "LC_ALL": "C", **(extra_env or {})}
    return subprocess.run(
        [BASH, f"tpu/{name}", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def bare_path(tmp_path):
    """A PATH with git only (setup.sh reads the commit): no gcloud, ssh, sbatch."""
    bin_dir = tmp_path / "bare_bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    return str(bin_dir)


@pytest.mark.parametrize("case", sorted(CASES))
def test_dry_run_matches_golden(case, bare_path):
    script, args = CASES[case]
    out = _script(script, "--dry-run", *args, path=bare_path)
    assert out.returncode == 0, out.stderr
    text = "$ " + shlex.join([f"tpu/{script}", "--dry-run", *args]) + "\n" + out.stdout
    text = text.replace(_head(), "<HEAD>")
    golden = GOLDEN / f"{case}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no {golden}; run with UPDATE_GOLDEN=1 to write it"
    assert text == golden.read_text(), f"{case}: dry-run output differs from {golden}"


def test_every_script_has_a_golden_and_help():
    assert set(SCRIPTS) == {
        "create.sh",
        "lib.sh",
        "logs.sh",
        "multinode.sh",
        "run.sh",
        "setup.sh",
        "slurm.sh",
        "teardown.sh",
    }
    covered = {script for script, _ in CASES.values()}
    assert covered == set(SCRIPTS) - {"lib.sh"}
    for script in covered:
        out = _script(script, "--help", path=os.environ["PATH"])
        assert out.returncode == 0 and "Usage:" in out.stdout and "--dry-run" in out.stdout


def test_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed (apt-get install shellcheck); .ci/run installs it")
    out = subprocess.run(
        [shellcheck, "-x", *SCRIPTS], cwd=TPU, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr


BAD_FLAGS = [
    ("create.sh", ("--name=audiolm", "--accelerator=v4-8"), "missing required flag --zone"),
    ("create.sh", (*Z,), "missing required flag --accelerator"),
    ("create.sh", (*Z, "--accelerator=v5e-64"), "--accelerator=v5e-64"),
    ("create.sh", (*Z, "--accelerator=tpu"), "--accelerator=tpu"),
    ("create.sh", (*Z, "--accelerator=v9x-8"), "--runtime"),
    ("create.sh", (*Z, "--accelerator=v4-8", "--spot", "--reserved"), "--spot"),
    ("create.sh", (*Z, "--accelerator=v4-8", "--valid-until=6h"), "--valid-until"),
    ("create.sh", (*Z, "--accelerator=v4-8", "--slices=two"), "--slices=two"),
    ("create.sh", (*Z, "--accelerator=v4-8", "--bogus"), "unknown flag --bogus"),
    ("create.sh", ("--zone=z", "--accelerator=v4-8", "--name"), "--name needs a value"),
    ("create.sh", ("--name=My_TPU", "--zone=z", "--accelerator=v4-8"), "--name=My_TPU"),
    ("setup.sh", (*Z, "--ref=no-such-ref-here"), "--ref=no-such-ref-here"),
    ("setup.sh", (*Z, "--hosts=a,b"), "--hosts"),
    ("setup.sh", ("--zone=z",), "missing required flag --name"),
    ("run.sh", (*Z, "--config=semantic_tpu"), "missing required flag --workdir"),
    ("run.sh", (*Z, "--workdir=gs://b/w"), "missing required flag --config"),
    ("run.sh", (*RUN, "stray"), "stray"),
    ("run.sh", (*Z, "--config=soundstream_tpu", "--workdir=gs://b", TOKENS), "--tokens"),
    ("run.sh", (*RUN, "--audio=gs://b/audio"), "--audio"),
    ("run.sh", (*RUN, "--env=1X=y"), "--env=1X=y"),
    ("run.sh", (*RUN, "--run=my run"), "--run=my run"),
    ("run.sh", (*Z, "--stop"), "--stop needs --run"),
    ("logs.sh", (*Z, "--worker=first"), "--worker=first"),
    ("logs.sh", ("--hosts=a,b", "--worker=5"), "--worker=5"),
    ("logs.sh", (*Z, "--lines=-1"), "--lines"),
    ("teardown.sh", ("--name=audiolm",), "missing required flag --zone"),
    ("teardown.sh", (*Z, "--yes=1"), "--yes takes no value"),
    ("slurm.sh", ("--config=semantic_gpu", "--workdir=/w"), "missing required flag --nodes"),
    ("slurm.sh", ("--nodes=0", "--config=semantic_gpu", "--workdir=/w"), "--nodes=0"),
    ("slurm.sh", ("--nodes=1", "--config=semantic_gpu", "--workdir=/w", "--sbatch=x"), "--sbatch"),
    ("multinode.sh", ("--config=semantic_gpu", "--workdir=/w"), "missing required flag --hosts"),
    ("multinode.sh", ("--hosts=a", "--config=c", "--workdir=/w", "--port=http"), "--port=http"),
    ("multinode.sh", ("--hosts=a,b c", "--config=c", "--workdir=/w"), "--hosts"),
]


@pytest.mark.parametrize("script,args,message", BAD_FLAGS)
def test_bad_flags_exit_2_naming_the_flag(script, args, message):
    out = _script(script, "--dry-run", *args, path=os.environ["PATH"])
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr
    assert "--help" in out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize(
    "script,args,tool",
    [
        ("create.sh", (*Z, "--accelerator=v4-8"), "gcloud"),
        ("run.sh", (*RUN,), "gcloud"),
        ("teardown.sh", Z, "gcloud"),
        ("logs.sh", Z, "gcloud"),
        ("setup.sh", ("--hosts=a",), "ssh"),
        ("multinode.sh", ("--hosts=a,b", "--config=c", "--workdir=/w"), "ssh"),
        ("slurm.sh", ("--nodes=1", "--config=c", "--workdir=/w", "--submit"), "sbatch"),
    ],
)
def test_missing_tool_is_a_clear_error(script, args, tool, bare_path):
    out = _script(script, *args, path=bare_path)
    assert out.returncode == 127, (out.stdout, out.stderr)
    assert f"{tool} is not on PATH" in out.stderr
    assert "+ " not in out.stdout + out.stderr  # nothing ran


def _stub_bin(tmp_path) -> tuple[str, Path]:
    """Stub gcloud/ssh/scp/sbatch that record their words (NUL-separated, one call a line)."""
    bin_dir = tmp_path / "stub_bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool in STUBS:
        stub = bin_dir / tool
        stub.write_text(
            '#!/bin/bash\n{ printf "%s\\0" "${0##*/}" "$@"; printf "\\n"; } >> "$STUB_CALLS"\n'
        )
        stub.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}", calls


def _recorded(calls: Path) -> list[list[str]]:
    if not calls.exists():
        return []
    return [r.split("\0") for r in calls.read_text().split("\0\n") if r]


def _printed(stdout: str) -> list[list[str]]:
    """The commands of a dry run, as words, that go to one of the stubs."""
    words = []
    for line in stdout.splitlines():
        if line.startswith("+ "):
            cmd = shlex.split(line[2:].removesuffix(" &"))
            if cmd[0] in STUBS:
                words.append(cmd)
    return words


@pytest.mark.parametrize(
    "case",
    [c for c in sorted(CASES) if not c.startswith("slurm") and "queued" not in c],
)
def test_commands_run_are_the_ones_printed(case, tmp_path):
    """Without --dry-run the stubs receive exactly the words the dry run printed: the printed
    lines are correctly quoted, and what is printed is what runs."""
    script, args = CASES[case]
    path, calls = _stub_bin(tmp_path)
    env = {"STUB_CALLS": str(calls), "TMPDIR": str(tmp_path)}
    dry = _script(script, "--dry-run", *args, path=path, extra_env=env)
    assert dry.returncode == 0, dry.stderr
    assert not calls.exists()  # a dry run runs nothing
    real = _script(script, *args, path=path, extra_env=env)
    assert real.returncode == 0, real.stderr
    printed, recorded = _printed(dry.stdout), _recorded(calls)
    assert printed
    if " &\n" in dry.stdout:  # commands run in parallel record in any order
        printed, recorded = sorted(printed), sorted(recorded)
    assert recorded == printed


def test_slurm_writes_the_printed_script_and_submits_it(tmp_path):
    path, calls = _stub_bin(tmp_path)
    out_file = tmp_path / "jobs" / "semantic.sbatch"
    script, args = CASES["slurm_submit"]
    args = (f"--dir={tmp_path}", f"--out={out_file}") + tuple(
        a for a in args if not a.startswith("--dir=")
    )
    env = {"STUB_CALLS": str(calls)}
    dry = _script(script, "--dry-run", *args, path=path, extra_env=env)
    assert dry.returncode == 0, dry.stderr
    assert not out_file.exists()
    heredoc = dry.stdout.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0] + "\n"
    real = _script(script, *args, path=path, extra_env=env)
    assert real.returncode == 0, real.stderr
    assert out_file.read_text() == heredoc
    assert (tmp_path / "runs" / "slurm").is_dir()  # sbatch's --output folder
    assert _recorded(calls) == [["sbatch", str(out_file)]]
    assert "srun --kill-on-bad-exit=1 python launch.py --config=semantic_gpu" in heredoc
    assert "export AUDIOLM_DISTRIBUTED=auto" in heredoc
    syntax = subprocess.run([BASH, "-n", str(out_file)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def _remote_command(script: str, *args: str, index: int = 0) -> str:
    """The shell line that a dry run would send to the workers (or to host `index`)."""
    out = _script(script, "--dry-run", *args, path=os.environ["PATH"])
    assert out.returncode == 0, out.stderr
    words = _printed(out.stdout)[index]
    if words[0] == "ssh":
        return words[2]
    return next(w for w in words if w.startswith("--command=")).removeprefix("--command=")


def test_remote_job_control_runs_detached_and_stops_on_sigterm(tmp_path):
    """run.sh's, logs.sh's and multinode.sh's remote commands, run by bash in a fake home with
    a stub Python: the job starts detached with the right environment and arguments, a second
    start is refused, --status sees it, --stop delivers SIGTERM."""
    home = tmp_path / "home"
    (home / "audiolm-jax").mkdir(parents=True)
    venv_bin = home / "audiolm-venv" / "bin"
    venv_bin.mkdir(parents=True)
    python = venv_bin / "python"
    python.write_text(
        "#!/bin/bash\n"
        'echo "cwd=$PWD"; echo "env=$AUDIOLM_DISTRIBUTED $NOTE"; printf "arg=%s\\n" "$@"\n'
        "trap 'echo got SIGTERM; exit 0' TERM\n"
        "for _ in $(seq 300); do sleep 0.1; done\n"
    )
    python.chmod(0o755)
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}

    def remote(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [BASH, "-c", cmd], env=env, capture_output=True, text=True, timeout=30
        )

    start = _remote_command("run.sh", *RUN, "--env=NOTE=it's here", "--", "--config.name=it's mine")
    log = home / "audiolm_logs" / "semantic_tpu.log"
    pid_file = home / "audiolm_logs" / "semantic_tpu.pid"
    try:
        out = remote(start)
        assert out.returncode == 0, out.stderr
        assert "started semantic_tpu" in out.stdout
        pid = int(pid_file.read_text())
        for _ in range(100):
            if "arg=--config.name=it's mine" in log.read_text():
                break
            time.sleep(0.05)
        text = log.read_text()
        assert f"cwd={home / 'audiolm-jax'}" in text
        assert "env=auto it's here" in text
        argv = "arg=launch.py\narg=--config=semantic_tpu\narg=--workdir=gs://my-bucket/semantic\n"
        assert argv in text
        assert "arg=--config.name=it's mine" in text
        # The job is in its own session: not killed with the ssh session's process group.
        assert os.getsid(pid) == pid

        again = remote(start)
        assert again.returncode == 1 and "job semantic_tpu still runs" in again.stderr
        other = remote(_remote_command("run.sh", *RUN, "--run=other"))
        assert other.returncode == 1 and f"semantic_tpu still runs (pid {pid})" in other.stderr

        status = remote(_remote_command("logs.sh", *Z, "--status", "--run=semantic_tpu"))
        assert f"semantic_tpu running (pid {pid})" in status.stdout

        stop = remote(_remote_command("run.sh", *Z, "--stop", "--run=semantic_tpu"))
        assert "sent SIGTERM" in stop.stdout
        for _ in range(100):
            if "got SIGTERM" in log.read_text():
                break
            time.sleep(0.05)
        assert "got SIGTERM" in log.read_text()
    finally:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass

    # multinode.sh: host 1 of 3 gets host 0 as its coordinator and its own process id.
    multi = _remote_command(
        "multinode.sh", "--hosts=gpu1,gpu2,gpu3", "--config=semantic_gpu", "--workdir=/w", index=1
    )
    assert "JAX_COORDINATOR_ADDRESS=gpu1:12345 JAX_NUM_PROCESSES=3 JAX_PROCESS_ID=1 " in multi
