#!/usr/bin/env bash
# Starts launch.py on every worker of a TPU slice at once, detached, as one jax.distributed job.
set -euo pipefail
if [[ ${BASH_SOURCE[0]} == */* ]]; then here=${BASH_SOURCE[0]%/*}; else here=.; fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG --name=NAME --zone=ZONE --config=CONFIG --workdir=gs://... [flags] [-- LAUNCH_ARGS...]
       $PROG --name=NAME --zone=ZONE --stop [--run=NAME | --config=CONFIG]

Runs, on every worker at once (gcloud compute tpus tpu-vm ssh --worker=all):
    AUDIOLM_DISTRIBUTED=auto python launch.py --config=CONFIG --workdir=DIR ...
in the code tpu/setup.sh installed; launch.py joins the workers with jax.distributed.initialize().
The job is detached (setsid nohup): a dropped ssh does not end it. Each worker appends to
~/audiolm_logs/RUN.log (tpu/logs.sh shows it) and keeps the job's pid in ~/audiolm_logs/RUN.pid;
it refuses to start while a job it started (of any name) still runs on a worker.

Resuming: a SIGTERM (Spot preemption, maintenance, or --stop) makes every worker save the same
step and exit. Running the same command again resumes from the newest checkpoint in --workdir.

$TARGET_HELP
              (with --slices=N, launch.py also gets --config.mesh.slices=N)

$LAUNCH_HELP

$REMOTE_HELP

  --stop             send SIGTERM to the job RUN on every worker (it saves a checkpoint and exits)

Common:
  --dry-run          print the commands (one per line, '+ ' first) and run nothing
  -h, --help         this help

Examples:
  $PROG --name=audiolm --zone=us-west4-a --config=semantic_tpu \\
      --workdir=gs://BUCKET/semantic --tokens=gs://BUCKET/librilight/tokens
  $PROG --name=audiolm --zone=us-west4-a --config=soundstream_tpu \\
      --workdir=gs://BUCKET/codec --audio=gs://BUCKET/librilight/audio -- --config.train.steps=1000
  $PROG --name=audiolm --zone=us-west4-a --stop --run=semantic_tpu
EOF
}

VALUE_FLAGS=("${TARGET_VALUE_FLAGS[@]}" "${LAUNCH_VALUE_FLAGS[@]}" dir venv)
BOOL_FLAGS=("${TARGET_BOOL_FLAGS[@]}" stop)
LIST_FLAGS=("${LAUNCH_LIST_FLAGS[@]}")
FLAG_stop=0
parse_flags "$@"
check_target

if ((FLAG_stop)); then
  [[ -n $FLAG_run || -n $FLAG_config ]] || usage_error "--stop needs --run=NAME (or --config=NAME)"
  RUN_NAME=$FLAG_run
  if [[ -z $RUN_NAME ]]; then
    RUN_NAME=${FLAG_config##*/}
    RUN_NAME=${RUN_NAME%.py}
  fi
  [[ $RUN_NAME =~ ^[A-Za-z0-9_.-]+$ ]] || usage_error "--run=$RUN_NAME: not a job name"
  need gcloud "Install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install"
  job_stop_cmd
  tpu_ssh all "$REPLY"
  exit 0
fi

if [[ -n $FLAG_slices && $FLAG_slices -gt 1 ]]; then
  EXTRA_OVERRIDES=("--config.mesh.slices=$FLAG_slices")
fi
launch_args
[[ $FLAG_workdir == gs://* ]] ||
  warn "--workdir=$FLAG_workdir is not on GCS: the workers do not share a disk, and checkpoints must be one directory for all of them"
need gcloud "Install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install"

rpath "$FLAG_venv"
job_start_cmd "$FLAG_dir" AUDIOLM_DISTRIBUTED=auto PYTHONUNBUFFERED=1 "${ENV_WORDS[@]}" \
  -- "$REPLY/bin/python" "${LAUNCH[@]}"
tpu_ssh all "$REPLY"

target_flags
target=$REPLY
note "follow the log of worker 0: tpu/logs.sh $target --run=$RUN_NAME"
note "stop (every worker saves a checkpoint): tpu/run.sh $target --stop --run=$RUN_NAME"
