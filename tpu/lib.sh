# shellcheck shell=bash
# shellcheck disable=SC2034  # the flag lists, defaults and help texts are read by the scripts
# Shared by the tpu/ scripts (sourced, never run): flag parsing, shell quoting, and `run`, which
# prints a command and then runs it, or with --dry-run only prints it.
#
# Dry-run output: one line per command, `+ ` then the words quoted for bash (paste it into a
# shell and it runs), `# ` for notes. Nothing is executed and neither gcloud nor the network is
# needed. Exit codes: 0 fine, 1 a command failed, 2 bad or missing flags, 127 a tool is missing.

PROG="tpu/${0##*/}"
if [[ ${BASH_SOURCE[0]} == */* ]]; then TPU_DIR=${BASH_SOURCE[0]%/*}; else TPU_DIR=.; fi
TPU_DIR=$(cd "$TPU_DIR" && pwd)
REPO_ROOT=${TPU_DIR%/*}
DRY_RUN=0
REST=()

die() {
  printf '%s: error: %s\n' "$PROG" "$1" >&2
  exit "${2:-1}"
}

usage_error() {  # a bad or missing flag: exit 2
  printf '%s: error: %s (see %s --help)\n' "$PROG" "$1" "$PROG" >&2
  exit 2
}

warn() { printf '%s: warning: %s\n' "$PROG" "$1" >&2; }

# q WORD: WORD quoted for bash only where needed (like Python's shlex.quote; in --flag=VALUE
# only the value), into $REPLY.
q() {
  local safe='^[A-Za-z0-9_@%+=:,./-]+$' flag='^(--[A-Za-z0-9_.-]+=)(.+)$' sq="'" esc="'\\''"
  if [[ $1 =~ $safe ]]; then
    REPLY=$1
  elif [[ $1 =~ $flag ]]; then
    local value=${BASH_REMATCH[2]}
    REPLY="${BASH_REMATCH[1]}'${value//$sq/$esc}'"
  else
    REPLY="'${1//$sq/$esc}'"
  fi
}

# qwords WORD...: the words quoted and joined by spaces, into $REPLY.
qwords() {
  local out="" w
  for w in "$@"; do
    q "$w"
    out+="${out:+ }$REPLY"
  done
  REPLY=$out
}

# note TEXT: a `# ` line (stdout with --dry-run, else stderr).
note() {
  if ((DRY_RUN)); then printf '# %s\n' "$1"; else printf '# %s\n' "$1" >&2; fi
}

# run CMD ARG...: print `+ CMD ARG...`; unless --dry-run, run it and stop if it fails.
run() {
  qwords "$@"
  local line=$REPLY
  if ((DRY_RUN)); then
    printf '+ %s\n' "$line"
    return 0
  fi
  printf '+ %s\n' "$line" >&2
  "$@" || die "this command failed (exit $?): $line" 1
}

# run_bg CMD ARG...: like run, in the background (`+ CMD ARG... &`); run_wait waits for them.
BG_PIDS=()
run_bg() {
  qwords "$@"
  local line=$REPLY
  if ((DRY_RUN)); then
    printf '+ %s &\n' "$line"
    return 0
  fi
  printf '+ %s &\n' "$line" >&2
  "$@" &
  BG_PIDS+=($!)
}

run_wait() {
  if ((DRY_RUN)); then
    printf '+ wait\n'
    return 0
  fi
  local p failed=0
  for p in "${BG_PIDS[@]}"; do wait "$p" || failed=1; done
  BG_PIDS=()
  ((!failed)) || die "a command in the background failed (see above)" 1
}

# need TOOL HINT: stop with exit 127 when TOOL is not on PATH (not checked with --dry-run).
need() {
  ((DRY_RUN)) && return 0
  command -v "$1" >/dev/null 2>&1 ||
    die "$1 is not on PATH. $2 (--dry-run prints the commands without it)" 127
}

# ---------------------------------------------------------------------------------------------
# Flags. A script lists its flags in three arrays, sets defaults as FLAG_<name> (dashes become
# underscores), then calls `parse_flags "$@"`:
#   VALUE_FLAGS  --name=VALUE or --name VALUE
#   BOOL_FLAGS   --name
#   LIST_FLAGS   --name=VALUE, repeatable, collected in the array FLAG_<name>
# --dry-run and --help are always there; words after `--` land in REST.

VALUE_FLAGS=()
BOOL_FLAGS=()
LIST_FLAGS=()

_var() { REPLY="FLAG_${1//-/_}"; }

_in() {  # _in WORD LIST...
  local w=$1
  shift
  local x
  for x in "$@"; do [[ $x == "$w" ]] && return 0; done
  return 1
}

parse_flags() {
  local f
  for f in "${VALUE_FLAGS[@]}" "${BOOL_FLAGS[@]}" "${LIST_FLAGS[@]}"; do
    _var "$f"
    declare -p "$REPLY" >/dev/null 2>&1 || die "internal: $REPLY has no default" 70
  done
  while (($#)); do
    local arg=$1 name value has_value=0
    shift
    case $arg in
      --) REST=("$@"); return 0 ;;
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1; continue ;;
      --*=*) name=${arg%%=*}; name=${name#--}; value=${arg#*=}; has_value=1 ;;
      --*) name=${arg#--} ;;
      *) usage_error "unexpected argument '$arg' (launch.py flags go after --)" ;;
    esac
    _var "$name"
    local var=$REPLY
    if _in "$name" "${BOOL_FLAGS[@]}"; then
      ((has_value)) && usage_error "--$name takes no value"
      printf -v "$var" '%s' 1
    elif _in "$name" "${VALUE_FLAGS[@]}" "${LIST_FLAGS[@]}"; then
      if ((!has_value)); then
        if ((!$#)) || [[ $1 == --* ]]; then usage_error "--$name needs a value"; fi
        value=$1
        shift
      fi
      [[ -n $value ]] || usage_error "--$name needs a value"
      if _in "$name" "${LIST_FLAGS[@]}"; then
        local -n list=$var
        list+=("$value")
        unset -n list
      else
        printf -v "$var" '%s' "$value"
      fi
    else
      usage_error "unknown flag --$name"
    fi
  done
}

# require NAME...: each flag must have been given.
require() {
  local f
  for f in "$@"; do
    _var "$f"
    [[ -n ${!REPLY} ]] || usage_error "missing required flag --$f"
  done
}

# check_int NAME MIN: the flag, when given, is an integer >= MIN.
check_int() {
  _var "$1"
  local v=${!REPLY}
  [[ -z $v ]] && return 0
  if [[ ! $v =~ ^[0-9]+$ ]] || ((10#$v < $2)); then
    usage_error "--$1=$v: expected an integer >= $2"
  fi
}

# check_match NAME REGEX WHAT: the flag, when given, matches REGEX.
check_match() {
  _var "$1"
  local v=${!REPLY}
  [[ -z $v || $v =~ $2 ]] || usage_error "--$1=$v: expected $3"
}

# ---------------------------------------------------------------------------------------------
# The TPU target: a TPU VM (gcloud compute tpus tpu-vm ...) or, with --queued / --slices N, a
# queued resource whose nodes (slices) are all addressed (gcloud compute tpus queued-resources).

TARGET_VALUE_FLAGS=(name zone project slices)
TARGET_BOOL_FLAGS=(queued)
FLAG_name="" FLAG_zone="" FLAG_project="" FLAG_slices="" FLAG_queued=0
TARGET_HELP="Target:
  --name=NAME        the TPU VM or queued resource (required)
  --zone=ZONE        its zone, e.g. us-west4-a (required)
  --project=PROJECT  the Google Cloud project (default: gcloud's configured project)
  --queued           NAME is a queued resource (created by tpu/create.sh --queued)
  --slices=N         NAME is a multi-slice queued resource of N slices (implies --queued)"

check_target() {
  require name zone
  check_match name '^[a-z]([-a-z0-9]*[a-z0-9])?$' "a lower-case name (letters, digits, -)"
  check_int slices 1
  [[ -n $FLAG_slices && $FLAG_slices -gt 1 ]] && FLAG_queued=1
  return 0
}

# target_flags: the target flags again (REPLY), for the next command a script suggests.
target_flags() {
  REPLY="--name=$FLAG_name --zone=$FLAG_zone"
  [[ -n $FLAG_project ]] && REPLY+=" --project=$FLAG_project"
  if [[ -n $FLAG_slices && $FLAG_slices -gt 1 ]]; then
    REPLY+=" --slices=$FLAG_slices"
  elif ((FLAG_queued)); then
    REPLY+=" --queued"
  fi
  return 0
}

# gcloud_base VERB: the words of `gcloud compute tpus (tpu-vm|queued-resources) VERB`, into
# the array CMD (the resource name is not included).
gcloud_base() {
  if ((FLAG_queued)); then
    CMD=(gcloud compute tpus queued-resources "$1")
  else
    CMD=(gcloud compute tpus tpu-vm "$1")
  fi
}

# where_flags WORKER: --zone, --project and which workers (and nodes of a queued resource).
where_flags() {
  WHERE=("--zone=$FLAG_zone")
  [[ -n $FLAG_project ]] && WHERE+=("--project=$FLAG_project")
  if [[ -n ${1:-} ]]; then
    WHERE+=("--worker=$1")
    if ((FLAG_queued)); then
      if [[ $1 == all ]]; then WHERE+=(--node=all); else WHERE+=("--node=${FLAG_node:-0}"); fi
    fi
  fi
  return 0
}

# tpu_ssh WORKER COMMAND: run COMMAND (a shell command line) on the workers.
tpu_ssh() {
  gcloud_base ssh
  where_flags "$1"
  run "${CMD[@]}" "$FLAG_name" "${WHERE[@]}" "--command=$2"
}

# tpu_scp SRC DEST: copy a local file to DEST (relative to the home folder) on every worker.
tpu_scp() {
  gcloud_base scp
  where_flags all
  run "${CMD[@]}" "$1" "$FLAG_name:$2" "${WHERE[@]}"
}

# host_of HOST: HOST without a `user@` prefix, into $REPLY.
host_of() { REPLY=${1#*@}; }

FLAG_hosts=""
# split_hosts: FLAG_hosts (h1,h2,...) into the array HOSTS.
split_hosts() {
  local IFS=,
  read -ra HOSTS <<<"$FLAG_hosts"
  ((${#HOSTS[@]})) || usage_error "--hosts needs at least one host"
  local h
  for h in "${HOSTS[@]}"; do
    [[ $h =~ ^[A-Za-z0-9_.@-]+$ ]] || usage_error "--hosts: '$h' is not a host name"
  done
}

# ---------------------------------------------------------------------------------------------
# Remote paths and the job: remote paths are relative to the remote home folder unless absolute.

# rpath PATH: PATH for a remote shell: `~/`-relative unless absolute, into $REPLY.
rpath() {
  local p=${1#\~/}
  local home='~'
  q "$p"
  [[ $p == /* ]] || REPLY="$home/$REPLY"
}

LAUNCH_VALUE_FLAGS=(config workdir audio run)
LAUNCH_LIST_FLAGS=(tokens env)
FLAG_config="" FLAG_workdir="" FLAG_audio="" FLAG_run="" FLAG_tokens=() FLAG_env=()
LAUNCH_HELP="The job:
  --config=NAME      a config of configs/ (required), e.g. semantic_tpu, semantic_gpu
  --workdir=DIR      checkpoints and logs (required), e.g. gs://BUCKET/semantic; shared by all
                     processes; rerunning with the same workdir resumes from its newest checkpoint
  --tokens=[CORPUS=]DIR  token cache of a stage config (semantic/coarse/fine_*): passes
                     --config.data.corpora.CORPUS=DIR; CORPUS defaults to the config's corpus
                     (librilight; piano for piano_*); repeatable
  --audio=DIR        audio folder of soundstream_* / w2v_bert_*: passes
                     --config.data.source=folder --config.data.path=DIR
  --env=KEY=VALUE    an environment variable for launch.py (e.g. XLA_FLAGS=...); repeatable
  --run=NAME         the job's name: log ~/audiolm_logs/NAME.log (default: the config name)
  -- ARGS...         passed to launch.py as they are: --config.a.b=v overrides, --mode=..."

# Where tpu/setup.sh installs on each worker or host (relative to the remote home folder).
FLAG_dir=audiolm-jax FLAG_venv=audiolm-venv
REMOTE_HELP="Remote paths (relative to the remote home folder unless absolute):
  --dir=PATH         the code (default audiolm-jax)
  --venv=PATH        the Python environment tpu/setup.sh made (default audiolm-venv)"

# launch_args: checks the job flags; sets RUN_NAME, ENV_WORDS (KEY=VALUE words) and LAUNCH
# (the words after `python`: launch.py --config=... --workdir=... overrides REST).
launch_args() {
  require config workdir
  local config=$FLAG_config
  if [[ $config != *.py && ! -f $REPO_ROOT/configs/$config.py ]]; then
    warn "configs/$config.py is not in this checkout; launch.py will refuse an unknown config"
  fi
  local base=${config##*/}
  base=${base%.py}
  RUN_NAME=${FLAG_run:-$base}
  [[ $RUN_NAME =~ ^[A-Za-z0-9_.-]+$ ]] ||
    usage_error "--run=$RUN_NAME: use letters, digits, '.', '_' and '-' (it names a log file)"
  LAUNCH=(launch.py "--config=$config" "--workdir=$FLAG_workdir")
  local t corpus dir
  if ((${#FLAG_tokens[@]})); then
    case $base in
      soundstream* | w2v_bert* | corpus | *quickstart)
        usage_error "--tokens is for stage configs (semantic/coarse/fine_*), not --config=$config" ;;
    esac
    for t in "${FLAG_tokens[@]}"; do
      if [[ $t =~ ^([A-Za-z0-9_]+)=(.+)$ ]]; then
        corpus=${BASH_REMATCH[1]}
        dir=${BASH_REMATCH[2]}
      else
        corpus=librilight
        [[ $base == piano_* ]] && corpus=piano
        dir=$t
      fi
      LAUNCH+=("--config.data.corpora.$corpus=$dir")
    done
  fi
  if [[ -n $FLAG_audio ]]; then
    case $base in
      *semantic* | *coarse* | *fine*)
        usage_error "--audio is for soundstream_* / w2v_bert_* configs; stage configs read --tokens" ;;
    esac
    LAUNCH+=(--config.data.source=folder "--config.data.path=$FLAG_audio")
  fi
  ENV_WORDS=()
  local e
  for e in "${FLAG_env[@]}"; do
    [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || usage_error "--env=$e: expected KEY=VALUE"
    ENV_WORDS+=("$e")
  done
  LAUNCH+=("${EXTRA_OVERRIDES[@]}" "${REST[@]}")
}
EXTRA_OVERRIDES=()

# Remote shell snippets of a detached job named $RUN_NAME with its log and pid in ~/audiolm_logs.
# job_start_cmd DIR ENV_WORD... -- PYTHON LAUNCH_WORD...: into $REPLY. DIR and PYTHON are remote
# paths (see rpath); the job runs detached (setsid nohup) so a dropped ssh does not end it, and
# refuses to start while a job started this way (of any name) still runs there: the chips or
# GPUs are that job's.
job_start_cmd() {
  local dir=$1
  shift
  local envs=()
  while (($#)) && [[ $1 != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  local py=$1
  shift
  local env_line="" e
  for e in "${envs[@]}"; do  # KEY=VALUE: only the value quoted, or it is no assignment
    q "${e#*=}"
    env_line+="${env_line:+ }${e%%=*}=$REPLY"
  done
  qwords "$@"
  local args=$REPLY
  rpath "$dir"
  local rdir=$REPLY
  q "$RUN_NAME"
  local out="r=$REPLY; l=~/audiolm_logs/\$r; mkdir -p ~/audiolm_logs; "
  out+="cd $rdir || { echo \"\$(hostname): no $rdir; run tpu/setup.sh first\" >&2; exit 1; }; "
  out+="for f in ~/audiolm_logs/*.pid; do p=\$(cat \"\$f\" 2>/dev/null); "
  out+="if kill -0 \"\$p\" 2>/dev/null; then n=\${f##*/}; "
  out+="echo \"\$(hostname): job \${n%.pid} still runs (pid \$p); stop it with --stop --run=\${n%.pid}\" >&2; "
  out+="exit 1; fi; done; "
  out+="echo \"== \$(date -u +%FT%TZ) \$(hostname) starts \$r\" >> \$l.log; "
  out+="${env_line:+$env_line }setsid nohup $py $args >> \$l.log 2>&1 < /dev/null & "
  out+="echo \$! > \$l.pid; echo \"\$(hostname): started \$r (pid \$!), log \$l.log\""
  REPLY=$out
}

# job_stop_cmd: SIGTERM to the job (it saves a checkpoint and exits), into $REPLY.
job_stop_cmd() {
  q "$RUN_NAME"
  REPLY="r=$REPLY; p=\$(cat ~/audiolm_logs/\$r.pid 2>/dev/null); "
  REPLY+="if kill -0 \"\$p\" 2>/dev/null; then kill -TERM \"\$p\" && echo \"\$(hostname): sent SIGTERM to \$r (pid \$p); it saves a checkpoint and exits\"; "
  REPLY+="else echo \"\$(hostname): \$r is not running\"; fi"
}
