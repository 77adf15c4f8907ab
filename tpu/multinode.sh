#!/usr/bin/env bash
# Starts launch.py on several GPU machines over ssh as one jax.distributed job (no scheduler).
set -euo pipefail
if [[ ${BASH_SOURCE[0]} == */* ]]; then here=${BASH_SOURCE[0]%/*}; else here=.; fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG --hosts=HOST1,HOST2,... --config=CONFIG --workdir=DIR [flags] [-- LAUNCH_ARGS...]
       $PROG --hosts=HOST1,HOST2,... --stop [--run=NAME | --config=CONFIG]

Runs over ssh, on host i of N (one process per host, using all of its GPUs):
    JAX_COORDINATOR_ADDRESS=HOST1:PORT JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i \\
        python launch.py --config=CONFIG --workdir=DIR ...
detached (setsid nohup), appending to ~/audiolm_logs/RUN.log on each host (tpu/logs.sh --hosts
shows it). Install the code first on every host (tpu/setup.sh --hosts=..., or once on a shared
filesystem). --workdir must be one directory all hosts see (a shared filesystem or gs://).
With N > 1 hosts launch.py gets --config.mesh.slices=N: the data axis spans the hosts.
Rerunning the same command resumes from the newest checkpoint; --stop sends SIGTERM, after
which every process saves the same step and exits.

Hosts:
  --hosts=H1,H2,...  ssh hosts ([user@]host); the first runs process 0 and the coordinator
  --coordinator=HOST the coordinator's address as the other hosts reach it (default: the first
                     host, without user@)
  --port=PORT        the coordinator's port (default 12345)
  --python=PATH      the Python to run (default: VENV/bin/python, from tpu/setup.sh --hosts)

$LAUNCH_HELP

$REMOTE_HELP

  --stop             send SIGTERM to the job RUN on every host (it saves a checkpoint and exits)

Common:
  --dry-run          print the commands (one per line, '+ ' first) and run nothing
  -h, --help         this help

Example:
  $PROG --hosts=gpu1,gpu2,gpu3 --config=semantic_gpu --workdir=/shared/runs/semantic \\
      --tokens=/shared/librilight/tokens
EOF
}

VALUE_FLAGS=("${LAUNCH_VALUE_FLAGS[@]}" hosts coordinator port python dir venv)
BOOL_FLAGS=(stop)
LIST_FLAGS=("${LAUNCH_LIST_FLAGS[@]}")
FLAG_coordinator="" FLAG_port=12345 FLAG_python="" FLAG_stop=0
parse_flags "$@"
require hosts
split_hosts
check_int port 1
check_match coordinator '^[A-Za-z0-9_.:-]+$' "a host name or address"

if ((FLAG_stop)); then
  [[ -n $FLAG_run || -n $FLAG_config ]] || usage_error "--stop needs --run=NAME (or --config=NAME)"
  RUN_NAME=$FLAG_run
  if [[ -z $RUN_NAME ]]; then
    RUN_NAME=${FLAG_config##*/}
    RUN_NAME=${RUN_NAME%.py}
  fi
  [[ $RUN_NAME =~ ^[A-Za-z0-9_.-]+$ ]] || usage_error "--run=$RUN_NAME: not a job name"
  need ssh "Install an OpenSSH client."
  job_stop_cmd
  stop=$REPLY
  for host in "${HOSTS[@]}"; do run ssh "$host" "$stop"; done
  exit 0
fi

# Several hosts: the data axis spans them, so only gradients cross the slow network.
((${#HOSTS[@]} > 1)) && EXTRA_OVERRIDES=("--config.mesh.slices=${#HOSTS[@]}")
launch_args
need ssh "Install an OpenSSH client."
if [[ -n $FLAG_coordinator ]]; then
  coordinator=$FLAG_coordinator
else
  host_of "${HOSTS[0]}"
  coordinator=$REPLY
fi
if [[ -z $FLAG_python ]]; then
  rpath "$FLAG_venv"
  python=$REPLY/bin/python
elif [[ $FLAG_python == */* && $FLAG_python != /* ]]; then
  rpath "$FLAG_python"
  python=$REPLY
else
  q "$FLAG_python"
  python=$REPLY
fi

n=${#HOSTS[@]}
note "process 0 of $n (the coordinator, $coordinator:$FLAG_port) runs on ${HOSTS[0]}"
for i in "${!HOSTS[@]}"; do
  job_start_cmd "$FLAG_dir" "JAX_COORDINATOR_ADDRESS=$coordinator:$FLAG_port" \
    "JAX_NUM_PROCESSES=$n" "JAX_PROCESS_ID=$i" PYTHONUNBUFFERED=1 "${ENV_WORDS[@]}" \
    -- "$python" "${LAUNCH[@]}"
  run ssh "${HOSTS[$i]}" "$REPLY"
done
note "follow process 0: tpu/logs.sh --hosts=$FLAG_hosts --run=$RUN_NAME"
note "stop (every process saves a checkpoint): tpu/multinode.sh --hosts=$FLAG_hosts --stop --run=$RUN_NAME"
