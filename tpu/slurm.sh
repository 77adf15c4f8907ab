#!/usr/bin/env bash
# Writes (and with --submit submits) a SLURM batch script: launch.py on N nodes x G GPUs.
set -euo pipefail
if [[ ${BASH_SOURCE[0]} == */* ]]; then here=${BASH_SOURCE[0]%/*}; else here=.; fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG --nodes=N --config=CONFIG --workdir=DIR [flags] [--submit] [-- LAUNCH_ARGS...]

Writes an sbatch script that runs, with srun, one launch.py process per GPU on every node
(N x G processes). With AUDIOLM_DISTRIBUTED=auto, jax.distributed.initialize() reads SLURM's
variables: the coordinator is the first node, and process i uses GPU SLURM_LOCALID of its node
(so every task must see all of its node's GPUs: no per-task GPU binding). With N > 1 nodes
launch.py gets --config.mesh.slices=N: the data axis spans the nodes, fsdp stays in a node.
SLURM sends SIGTERM --grace seconds before the time limit; every process then saves the same
step and exits. Submitting the same script again resumes from the newest checkpoint in --workdir
(--requeue does that by itself after a preemption).

Cluster:
  --nodes=N          nodes (required)
  --gpus-per-node=G  GPUs (and processes) per node (default 8)
  --cpus-per-task=C  CPU cores per process (default: the cluster's)
  --partition=NAME, --account=NAME, --time=D-HH:MM:SS   the usual sbatch options
  --grace=SECONDS    SIGTERM this long before the time limit (default 300; 0: none)
  --requeue          requeue the job after a preemption or node failure
  --sbatch=OPTION    another #SBATCH line, e.g. --sbatch=--exclusive; repeatable
  --setup=COMMAND    a shell line run before srun (module load ..., source venv/bin/activate);
                     repeatable
  --python=PATH      the Python to run (default python: the one on PATH after --setup)
  --dir=PATH         the repository on the cluster (default: this checkout, $REPO_ROOT)

$LAUNCH_HELP
  (the job name and the sbatch log runs/slurm/RUN-JOBID.log under --dir use --run)

Output:
  --out=FILE         where to write the sbatch script (default DIR/runs/slurm/RUN.sbatch)
  --submit           then submit it: sbatch FILE

Common:
  --dry-run          print the commands, the script included, and run nothing
  -h, --help         this help

Example:
  $PROG --nodes=4 --config=semantic_gpu --workdir=/shared/runs/semantic \\
      --tokens=/shared/librilight/tokens --partition=gpu --time=2-00:00:00 --submit
EOF
}

VALUE_FLAGS=("${LAUNCH_VALUE_FLAGS[@]}" nodes gpus-per-node cpus-per-task partition account time
  grace python dir out)
BOOL_FLAGS=(requeue submit)
LIST_FLAGS=("${LAUNCH_LIST_FLAGS[@]}" sbatch setup)
FLAG_nodes="" FLAG_gpus_per_node=8 FLAG_cpus_per_task="" FLAG_partition="" FLAG_account=""
FLAG_time="" FLAG_grace=300 FLAG_python=python FLAG_dir=$REPO_ROOT FLAG_out=""
FLAG_requeue=0 FLAG_submit=0 FLAG_sbatch=() FLAG_setup=()
parse_flags "$@"
require nodes
check_int nodes 1
check_int gpus-per-node 1
check_int cpus-per-task 1
check_int grace 0
check_match partition '^[A-Za-z0-9_.,-]+$' "a partition name"
check_match account '^[A-Za-z0-9_.-]+$' "an account name"
check_match time '^[0-9:-]+$' "a time such as 2-00:00:00 or 48:00:00"
for opt in "${FLAG_sbatch[@]}"; do
  [[ $opt == -* ]] || usage_error "--sbatch=$opt: expected an sbatch option such as --exclusive"
done
# Several nodes: the data axis spans them, so only gradients cross the slow network.
((FLAG_nodes > 1)) && EXTRA_OVERRIDES=("--config.mesh.slices=$FLAG_nodes")
launch_args
out=${FLAG_out:-$FLAG_dir/runs/slurm/$RUN_NAME.sbatch}
((FLAG_submit)) && need sbatch "Run this on a SLURM login node, or leave out --submit."

q "$FLAG_dir"
qdir=$REPLY
q "$FLAG_python"
qpython=$REPLY
script="#!/bin/bash
# Written by tpu/slurm.sh: launch.py on $FLAG_nodes node(s) x $FLAG_gpus_per_node GPU(s), one process per GPU.
#SBATCH --job-name=$RUN_NAME
#SBATCH --nodes=$FLAG_nodes
#SBATCH --ntasks-per-node=$FLAG_gpus_per_node
#SBATCH --gpus-per-node=$FLAG_gpus_per_node
"
[[ -n $FLAG_cpus_per_task ]] && script+="#SBATCH --cpus-per-task=$FLAG_cpus_per_task
"
[[ -n $FLAG_partition ]] && script+="#SBATCH --partition=$FLAG_partition
"
[[ -n $FLAG_account ]] && script+="#SBATCH --account=$FLAG_account
"
[[ -n $FLAG_time ]] && script+="#SBATCH --time=$FLAG_time
"
((FLAG_grace > 0)) && script+="#SBATCH --signal=TERM@$FLAG_grace
"
((FLAG_requeue)) && script+="#SBATCH --requeue
#SBATCH --open-mode=append
"
for opt in "${FLAG_sbatch[@]}"; do
  script+="#SBATCH $opt
"
done
script+="#SBATCH --chdir=$FLAG_dir
#SBATCH --output=runs/slurm/%x-%j.log
set -eo pipefail
"
for line in "${FLAG_setup[@]}"; do
  script+="$line
"
done
script+="export AUDIOLM_DISTRIBUTED=auto PYTHONUNBUFFERED=1
"
for e in "${ENV_WORDS[@]}"; do
  q "${e#*=}"
  script+="export ${e%%=*}=$REPLY
"
done
qwords "${LAUNCH[@]}"
script+="cd $qdir
srun --kill-on-bad-exit=1 $qpython $REPLY
"

outdir=${out%/*}
[[ $outdir == "$out" ]] && outdir=.
dirs=("$FLAG_dir/runs/slurm")
[[ $outdir == "$FLAG_dir/runs/slurm" || $outdir == . ]] || dirs=("$outdir" "${dirs[@]}")
run mkdir -p "${dirs[@]}"
q "$out"
qout=$REPLY
if ((DRY_RUN)); then
  printf "+ cat > %s <<'EOF'\n%sEOF\n" "$qout" "$script"
else
  printf '+ cat > %s\n' "$qout" >&2
  printf '%s' "$script" >"$out" || die "could not write $out"
fi
if ((FLAG_submit)); then
  run sbatch "$out"
else
  note "submit it with: sbatch $qout"
fi
