#!/usr/bin/env bash
# Deletes the TPU VM or the queued resource (with its slices) that tpu/create.sh made.
set -euo pipefail
if [[ ${BASH_SOURCE[0]} == */* ]]; then here=${BASH_SOURCE[0]%/*}; else here=.; fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG --name=NAME --zone=ZONE [--queued | --slices=N] [--yes] [--async]

Deletes the TPU VM (gcloud compute tpus tpu-vm delete) or, with --queued / --slices, the queued
resource and its nodes (gcloud compute tpus queued-resources delete --force). What is on the
workers' disks goes with them: checkpoints and the data must be on GCS (--workdir=gs://...).
A running job is killed without saving; stop it first with tpu/run.sh --stop.

$TARGET_HELP

  --yes              do not ask for confirmation (gcloud --quiet)
  --async            return at once, without waiting for the deletion to finish

Common:
  --dry-run          print the commands (one per line, '+ ' first) and run nothing
  -h, --help         this help

Examples:
  $PROG --name=audiolm --zone=us-west4-a
  $PROG --name=audiolm --zone=us-west4-a --slices=2 --yes
EOF
}

VALUE_FLAGS=("${TARGET_VALUE_FLAGS[@]}")
BOOL_FLAGS=("${TARGET_BOOL_FLAGS[@]}" yes async)
FLAG_yes=0 FLAG_async=0
parse_flags "$@"
((${#REST[@]})) && usage_error "unexpected arguments after --: ${REST[*]}"
check_target
need gcloud "Install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install"

where_flags
extra=()
((FLAG_queued)) && extra+=(--force)
((FLAG_async)) && extra+=(--async)
((FLAG_yes)) && extra+=(--quiet)
gcloud_base delete
run "${CMD[@]}" "$FLAG_name" "${WHERE[@]}" "${extra[@]}"
