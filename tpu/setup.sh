#!/usr/bin/env bash
# Installs this repository, at one commit, on every worker of a TPU slice (or on --hosts).
set -euo pipefail
if [[ ${BASH_SOURCE[0]} == */* ]]; then here=${BASH_SOURCE[0]%/*}; else here=.; fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG --name=NAME --zone=ZONE [flags]
       $PROG --hosts=HOST1,HOST2,... [flags]

Copies the code at one commit (default: your local HEAD) to every worker and installs it with
its accelerator's JAX (pip install -e ".[tpu]", or ".[gpu]" on --hosts) into a Python 3.11
virtual environment made by uv (the TPU images' Python 3.10 is older than JAX supports). Rerun
it after every commit you want the workers to run; it replaces the code and keeps the
environment. Uncommitted changes are not copied.

$TARGET_HELP

GPU hosts (plain multi-node, for tpu/multinode.sh):
  --hosts=H1,H2,...  ssh hosts ([user@]host) instead of a TPU; each gets its own copy (on a
                     shared filesystem one host is enough)

What and where:
  --ref=REF          the commit, branch or tag to install (default: HEAD of this checkout)
  --repo=URL         instead of copying a git archive from here, each worker fetches REF from
                     URL (git fetch; a private URL needs credentials on the workers)
  --extra=NAME       the setup.py extra to install: tpu (default) or, with --hosts, gpu
  --python=VERSION   Python of the environment (default 3.11)

$REMOTE_HELP

Common:
  --dry-run          print the commands (one per line, '+ ' first) and run nothing
  -h, --help         this help

Examples:
  $PROG --name=audiolm --zone=us-west4-a
  $PROG --name=audiolm --zone=us-west4-a --slices=2
  $PROG --hosts=gpu1,gpu2 --repo=https://github.com/ORG/audiolm-jax.git --ref=main
EOF
}

VALUE_FLAGS=("${TARGET_VALUE_FLAGS[@]}" hosts ref repo extra python dir venv)
BOOL_FLAGS=("${TARGET_BOOL_FLAGS[@]}")
FLAG_ref="" FLAG_repo="" FLAG_extra="" FLAG_python=3.11
parse_flags "$@"
((${#REST[@]})) && usage_error "unexpected arguments after --: ${REST[*]}"
if [[ -n $FLAG_hosts ]]; then
  [[ -n $FLAG_name ]] && usage_error "--hosts and --name exclude each other"
  split_hosts
  extra=${FLAG_extra:-gpu}
else
  check_target
  extra=${FLAG_extra:-tpu}
fi
check_match extra '^[a-z0-9_]+(,[a-z0-9_]+)*$' "setup.py extras such as tpu or gpu"
check_match python '^[0-9]+\.[0-9]+(\.[0-9]+)?$' "a Python version such as 3.11"

cd "$REPO_ROOT"
if [[ -n $FLAG_repo && -n $FLAG_ref ]]; then
  ref=$FLAG_ref  # resolved by the workers' git fetch
else
  command -v git >/dev/null 2>&1 || die "git is not on PATH (needed to read the commit to copy)"
  ref=$(git rev-parse --verify --quiet "${FLAG_ref:-HEAD}^{commit}") ||
    usage_error "--ref=${FLAG_ref:-HEAD}: not a commit of $REPO_ROOT"
  if [[ -z $FLAG_repo && -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    warn "uncommitted changes are not copied; the workers get commit $ref"
  fi
fi
if [[ -n $FLAG_hosts ]]; then
  need ssh "Install an OpenSSH client."
  need scp "Install an OpenSSH client."
else
  need gcloud "Install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install"
fi

rpath "$FLAG_dir"
rdir=$REPLY
rpath "$FLAG_venv"
rvenv=$REPLY
remote_tar=audiolm-jax-src.tar.gz
# The remote install, one shell line run on each worker.
install="set -e; "
if [[ -n $FLAG_repo ]]; then
  qwords "$FLAG_repo" "$ref"
  install+="git init -q $rdir; git -C $rdir fetch -q --depth=1 $REPLY; "
  install+="git -C $rdir checkout -q --force FETCH_HEAD; "
else
  install+="mkdir -p $rdir; tar -xzf ~/$remote_tar -C $rdir; rm -f ~/$remote_tar; "
fi
q "$FLAG_python"
py_version=$REPLY
install+="python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q --user uv "
install+="|| python3 -m pip install -q --user --break-system-packages uv; "
install+="[ -x $rvenv/bin/python ] || python3 -m uv venv -q --python $py_version $rvenv; "
install+="python3 -m uv pip install -q --python $rvenv/bin/python -e $rdir\"[$extra]\"; "
install+="v=\$($rvenv/bin/python -c \"import jax, audiolm_jax; print(jax.__version__)\"); "
install+="echo \"\$(hostname): installed $ref with jax \$v\""

tarball=""
if [[ -z $FLAG_repo ]]; then
  tarball=${TMPDIR:-/tmp}/audiolm-jax-$ref.tar.gz
  run git archive --format=tar.gz "--output=$tarball" "$ref"
fi
if [[ -n $FLAG_hosts ]]; then
  for host in "${HOSTS[@]}"; do
    [[ -n $tarball ]] && run scp -q "$tarball" "$host:$remote_tar"
    run ssh "$host" "$install"
  done
else
  [[ -n $tarball ]] && tpu_scp "$tarball" "$remote_tar"
  tpu_ssh all "$install"
fi
[[ -n $tarball ]] && run rm -f "$tarball"
if [[ -n $FLAG_hosts ]]; then
  note "next: tpu/multinode.sh --hosts=$FLAG_hosts --config=semantic_gpu --workdir=DIR"
else
  target_flags
  note "next: tpu/run.sh $REPLY --config=semantic_tpu --workdir=gs://BUCKET/semantic --tokens=gs://BUCKET/librilight/tokens"
fi
