#!/usr/bin/env bash
# Creates a Cloud TPU VM, or a queued resource (one slice or several), for tpu/run.sh.
set -euo pipefail
if [[ ${BASH_SOURCE[0]} == */* ]]; then here=${BASH_SOURCE[0]%/*}; else here=.; fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG --name=NAME --zone=ZONE --accelerator=TYPE [flags] [-- GCLOUD_FLAGS...]

Creates a TPU VM (gcloud compute tpus tpu-vm create) or, with --queued or --slices, a queued
resource (gcloud compute tpus queued-resources create) that Cloud TPU provisions when capacity
is free.

$TARGET_HELP
              (--slices=N with N >= 2: one queued resource of N slices, nodes NAME-0 ... NAME-<N-1>)

TPU:
  --accelerator=TYPE one slice: v4-32, v5litepod-64 (v5e), v5p-128, v6e-64, ...
  --runtime=VERSION  TPU software version (default by generation, from the Cloud TPU docs:
                     v2/v3/v4 tpu-ubuntu2204-base, v5litepod v2-alpha-tpuv5-lite,
                     v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e)
  --spot             Spot capacity: cheaper, can be preempted at any time (the job's SIGTERM
                     saves a checkpoint; rerun tpu/run.sh on a new slice to resume)
  --reserved         use the project's reserved capacity
  --valid-until=DURATION  queued resources: give up if not provisioned within DURATION (e.g. 6h)
  --wait             queued resources: wait until the resource is ACTIVE (polls every 30 s)
  -- GCLOUD_FLAGS    passed to gcloud as they are (e.g. --network=NET --service-account=SA)

Common:
  --dry-run          print the commands (one per line, '+ ' first) and run nothing
  -h, --help         this help

Examples:
  $PROG --name=audiolm --zone=us-west4-a --accelerator=v5litepod-64 --spot
  $PROG --name=audiolm --zone=us-east5-a --accelerator=v5p-128 --queued --reserved --wait
  $PROG --name=audiolm --zone=us-west4-a --accelerator=v5litepod-256 --slices=2 --spot
EOF
}

VALUE_FLAGS=("${TARGET_VALUE_FLAGS[@]}" accelerator runtime valid-until)
BOOL_FLAGS=("${TARGET_BOOL_FLAGS[@]}" spot reserved wait)
FLAG_accelerator="" FLAG_runtime="" FLAG_valid_until="" FLAG_spot=0 FLAG_reserved=0 FLAG_wait=0
parse_flags "$@"
check_target
require accelerator
accel=$FLAG_accelerator
if [[ $accel =~ ^v5e-([0-9]+)$ ]]; then
  usage_error "--accelerator=$accel: v5e slices are named v5litepod-N (e.g. v5litepod-${BASH_REMATCH[1]})"
fi
check_match accelerator '^v[0-9][a-z0-9]*-[0-9]+$' "a TPU type such as v4-32, v5litepod-64, v5p-128"
runtime=$FLAG_runtime
if [[ -z $runtime ]]; then
  case $accel in
    v2-* | v3-* | v4-*) runtime=tpu-ubuntu2204-base ;;
    v5litepod-*) runtime=v2-alpha-tpuv5-lite ;;
    v5p-*) runtime=v2-alpha-tpuv5 ;;
    v6e-*) runtime=v2-alpha-tpuv6e ;;
    *) usage_error "no default --runtime for --accelerator=$accel; give --runtime=VERSION" ;;
  esac
fi
((FLAG_spot && FLAG_reserved)) && usage_error "--spot and --reserved exclude each other"
if ((!FLAG_queued)); then
  [[ -n $FLAG_valid_until ]] && usage_error "--valid-until needs --queued (a queued resource)"
  ((FLAG_wait)) && usage_error "--wait needs --queued (creating a TPU VM already waits)"
fi
need gcloud "Install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install"

where_flags
capacity=()
((FLAG_spot)) && capacity=(--spot)
((FLAG_reserved)) && capacity=(--reserved)
target=("${WHERE[@]}")

if ((FLAG_queued)); then
  nodes=("--node-id=$FLAG_name")
  if [[ -n $FLAG_slices && $FLAG_slices -gt 1 ]]; then
    nodes=("--node-count=$FLAG_slices")
    note "a queued resource of $FLAG_slices slices of $accel (nodes $FLAG_name-0 ... $FLAG_name-$((FLAG_slices - 1)))"
  fi
  until=()
  [[ -n $FLAG_valid_until ]] && until=("--valid-until-duration=$FLAG_valid_until")
  run gcloud compute tpus queued-resources create "$FLAG_name" "${target[@]}" \
    "--accelerator-type=$accel" "--runtime-version=$runtime" "${nodes[@]}" \
    "${capacity[@]}" "${until[@]}" "${REST[@]}"
  if ((FLAG_wait)); then
    describe=(gcloud compute tpus queued-resources describe "$FLAG_name" "${target[@]}"
      '--format=value(state.state)')
    note "repeated every 30 s until the state is ACTIVE (FAILED or SUSPENDED stop here)"
    if ((DRY_RUN)); then
      run "${describe[@]}"
    else
      while :; do
        qwords "${describe[@]}"
        printf '+ %s\n' "$REPLY" >&2
        state=$("${describe[@]}") || die "could not describe the queued resource $FLAG_name"
        printf '%s\n' "$state" >&2
        case $state in
          ACTIVE) break ;;
          FAILED | SUSPENDED) die "queued resource $FLAG_name is $state" ;;
        esac
        sleep 30
      done
    fi
  else
    note "provisioning can take a while; it is ready when this says ACTIVE:"
    note "gcloud compute tpus queued-resources describe $FLAG_name --zone=$FLAG_zone"
  fi
else
  run gcloud compute tpus tpu-vm create "$FLAG_name" "${target[@]}" \
    "--accelerator-type=$accel" "--version=$runtime" "${capacity[@]}" "${REST[@]}"
fi
queued=""
if [[ -n $FLAG_slices && $FLAG_slices -gt 1 ]]; then
  queued=" --slices=$FLAG_slices"
elif ((FLAG_queued)); then
  queued=" --queued"
fi
project=""
[[ -n $FLAG_project ]] && project=" --project=$FLAG_project"
note "next: tpu/setup.sh --name=$FLAG_name --zone=$FLAG_zone$project$queued"
