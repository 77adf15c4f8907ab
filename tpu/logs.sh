#!/usr/bin/env bash
# Shows the log of a job that tpu/run.sh (or tpu/multinode.sh) started, or whether it runs.
set -euo pipefail
if [[ ${BASH_SOURCE[0]} == */* ]]; then here=${BASH_SOURCE[0]%/*}; else here=.; fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG --name=NAME --zone=ZONE [--worker=N|all] [--run=NAME] [flags]
       $PROG --hosts=HOST1,HOST2,... [--worker=N|all] [--run=NAME] [flags]

Streams ~/audiolm_logs/RUN.log of one worker (worker 0, the one that logs training progress,
by default) or of all (each line prefixed by the worker's host name). Ctrl-C stops watching;
the job goes on.

$TARGET_HELP
  --node=N           with --slices: the slice of --worker=N (default 0)

GPU hosts (tpu/multinode.sh):
  --hosts=H1,H2,...  the hosts the job runs on; worker N is the N-th host

What:
  --worker=N|all     which worker (default 0; --status: all)
  --run=NAME         the job (default: the newest log on each worker)
  --lines=N          lines of history before following (default 100)
  --no-follow        print the last lines and stop
  --status           one line per worker: running or not, and the log's last line

Common:
  --dry-run          print the commands (one per line, '+ ' first) and run nothing
  -h, --help         this help

Examples:
  $PROG --name=audiolm --zone=us-west4-a
  $PROG --name=audiolm --zone=us-west4-a --worker=all --run=semantic_tpu --no-follow
  $PROG --name=audiolm --zone=us-west4-a --status
EOF
}

VALUE_FLAGS=("${TARGET_VALUE_FLAGS[@]}" node hosts worker run lines)
BOOL_FLAGS=("${TARGET_BOOL_FLAGS[@]}" no-follow status)
FLAG_node="" FLAG_worker="" FLAG_lines=100 FLAG_no_follow=0 FLAG_status=0
parse_flags "$@"
((${#REST[@]})) && usage_error "unexpected arguments after --: ${REST[*]}"
if [[ -n $FLAG_hosts ]]; then
  [[ -n $FLAG_name ]] && usage_error "--hosts and --name exclude each other"
  split_hosts
else
  check_target
fi
check_match worker '^(all|[0-9]+)$' "a worker number or all"
check_int node 0
check_int lines 0
check_match run '^[A-Za-z0-9_.-]+$' "a job name"
worker=${FLAG_worker:-0}
((FLAG_status)) && worker=${FLAG_worker:-all}
if [[ -n $FLAG_hosts && $worker != all ]] && ((worker >= ${#HOSTS[@]})); then
  usage_error "--worker=$worker: --hosts has ${#HOSTS[@]} hosts (0 ... $((${#HOSTS[@]} - 1)))"
fi

# The remote command: pick the job's log, then print its state or its tail.
if [[ -n $FLAG_run ]]; then
  cmd="r=$FLAG_run; "
else
  cmd="r=\$(ls -t ~/audiolm_logs/*.log 2>/dev/null | head -n 1); r=\${r##*/}; r=\${r%.log}; "
fi
cmd+="l=~/audiolm_logs/\$r; [ -f \$l.log ] || { echo \"\$(hostname): no log \$l.log\" >&2; exit 1; }; "
if ((FLAG_status)); then
  cmd+="p=\$(cat \$l.pid 2>/dev/null); "
  cmd+="if kill -0 \"\$p\" 2>/dev/null; then s=\"running (pid \$p)\"; else s=\"not running\"; fi; "
  cmd+="echo \"\$(hostname): \$r \$s; last line: \$(tail -n 1 \$l.log)\""
else
  follow=""
  ((FLAG_no_follow)) || follow=" -F"
  cmd+="tail -n $FLAG_lines$follow \$l.log"
  [[ $worker == all ]] && cmd+=" | sed -u \"s/^/\$(hostname): /\""
fi

if [[ -n $FLAG_hosts ]]; then
  need ssh "Install an OpenSSH client."
  if [[ $worker != all ]]; then
    run ssh "${HOSTS[$worker]}" "$cmd"
  elif ((FLAG_status || FLAG_no_follow)); then
    for host in "${HOSTS[@]}"; do run ssh "$host" "$cmd"; done
  else
    for host in "${HOSTS[@]}"; do run_bg ssh "$host" "$cmd"; done
    run_wait
  fi
else
  need gcloud "Install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install"
  tpu_ssh "$worker" "$cmd"
fi
