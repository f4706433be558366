#!/usr/bin/env bash
# One stage of a measuring session on a GPU machine, its results under $OUT (default ./out), each
# stage short enough for a 10-minute call and safe to repeat: what a killed stage finished stays.
#
#   bash benchmarks/device_session.sh PROFILE STAGE
#
# PROFILE: the measured profile's name (hardware/measured/PROFILE.yaml; h200, h100-sxm-80gb).
# STAGE:
#   calibrate   the sections in $SECTIONS (default: launch attention transfer; any of calibrate's,
#               e.g. matmul memory_kernels) measured again, into $OUT/PROFILE.yaml
#   suite       the validation suite on this GPU, resumed from $OUT/PROFILE.jsonl (seed it with
#               data/validation/PROFILE.jsonl to keep earlier cases; $ONLY: case ids to run alone)
#   profiles    torch.profiler kernel tables of the cases named in $CASES, in $OUT/profiles.tgz
#   transfers   the held-out transfer check against $OUT/PROFILE.yaml (or the committed one)
#   snapshot    the allocator's segments after a step of each case in $CASES (allocator_snapshot.py)
#   host        where the host time of the steps in $CASES goes (host_profile.py; "calibration-decode"
#               is the launch calibration's decode step)
#   small       the steps of the cases in $CASES at batch 1 and 32 tokens, and at their own shape
#               with the host's return timed (host_small.py; resumed from $OUT/host-small-PROFILE.json)
set -uo pipefail
profile=${1:?profile name}; stage=${2:?stage}
out=${OUT:-out}; mkdir -p "$out"
m="python3 -m memsim.cli"
yaml="$out/$profile.yaml"
[ -f "$yaml" ] || cp "hardware/measured/$profile.yaml" "$yaml"
hw="--hardware $profile"
case "$stage" in
  calibrate)
    for section in ${SECTIONS:-launch attention transfer}; do
      echo "== $section $(date -u +%FT%TZ)" >> "$out/calibrate.log"
      timeout 280 $m calibrate --update "$yaml" --only "$section" >> "$out/calibrate.log" 2>&1
    done ;;
  suite)
    timeout "${SUITE_S:-570}" $m validate data/suites/h100.yaml $hw --out "$out/$profile.jsonl" ${ONLY:+$(printf -- '--only %s ' $ONLY)} > "$out/suite.log" 2>&1 ;;
  profiles)
    mkdir -p "$out/profiles"
    timeout 540 python3 benchmarks/profile_kernels.py data/suites/h100.yaml ${CASES:?case ids} --out "$out/profiles" > "$out/profiles.log" 2>&1
    tar -czf "$out/profiles.tgz" -C "$out" profiles && rm -rf "$out/profiles" ;;
  transfers)
    timeout 280 python3 benchmarks/transfer_check.py "$yaml" --out "$out/transfer-$profile.csv" > "$out/transfer.log" 2>&1 ;;
  snapshot)
    for c in ${CASES:?case ids}; do
      timeout 200 python3 benchmarks/allocator_snapshot.py data/suites/h100.yaml "$c" $hw --out "$out/snapshot-$c.json" >> "$out/snapshot.log" 2>&1
    done ;;
  host)
    timeout 400 python3 benchmarks/host_profile.py data/suites/h100.yaml ${CASES:?case ids} --out "$out/host-profile-$profile.json" > "$out/host.log" 2>&1 ;;
  small)
    timeout "${SMALL_S:-570}" python3 benchmarks/host_small.py data/suites/h100.yaml ${CASES:?case ids} --out "$out/host-small-$profile.json" > "$out/small.log" 2>&1 ;;
  *) echo "stage: one of calibrate, suite, profiles, transfers, snapshot, host, small (not '$stage')" >&2; exit 2 ;;
esac
tail -3 "$out"/*.log 2>/dev/null
