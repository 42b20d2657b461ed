#!/usr/bin/env bash
# Issue 23, from-scratch recipe rows: each recipe's teacher and student (bench/make_bundled_model.sh, INSTALL=0)
# scored on the real-video set's cached skeletons, on the fast path (BlazePose lite) and the heavy path (BlazePose
# heavy, same tracking and stride as `run --pose-model heavy`), plus simulated-LQ Penn Action.
#
#   [RECIPES="lev off ..."] [BASELINES=1] [FLIP=1] bash bench/recipe23/rows.sh CLIPS OUT
#
# CLIPS: a folder with videos/labels.csv (bench/real_videos/materialise.py CLIPS/videos), cache_lite/ and
# cache_heavy4/ (`pipeline extract $(videos) --quality low [--pose-model heavy] --cache CLIPS/cache_...`).
# Models (WORK=runs/r23): per recipe R of RECIPES (default lev), $WORK/R/teacher/model.pt (absent when the recipe
# reused another's teacher) and $WORK/R/distill/student.pt, named R_teacher and R_student; with BASELINES=1 (the
# default) also $WORK/bundled_before.pt (the bundled student before the re-make) and $WORK/base_teacher
# (make_bundled_model.sh's teacher, no lever). FLIP=1 (default) adds the flip-averaged rows.
# Writes OUT/{lite,heavy}[_flip].json and OUT/sim.json; bench/recipe23/table.py turns them into rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIPS=$1
OUT=$2
W=${WORK:-runs/r23}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
LITE=(); HEAVY=(); SIM=()
if [ "${BASELINES:-1}" = 1 ]; then
  LITE=(--model "bundled=$W/bundled_before.pt:low" --model "base_teacher=$W/base_teacher/model.pt:low")
  HEAVY=(--model "base_teacher=$W/base_teacher/model.pt:low")
  SIM=(--model "bundled=$W/bundled_before.pt" --model "base_teacher=$W/base_teacher/model.pt")
fi
for r in ${RECIPES:-lev}; do
  for role in "student=$W/$r/distill/student.pt" "teacher=$W/$r/teacher/model.pt"; do
    [ -f "${role#*=}" ] || continue
    LITE+=(--model "${r}_${role}:low"); HEAVY+=(--model "${r}_${role}:low"); SIM+=(--model "${r}_${role}")
  done
done
FLIPS=(""); [ "${FLIP:-1}" = 1 ] && FLIPS+=(--flip)
for flip in "${FLIPS[@]}"; do
  python bench/recipe23/real_eval.py --labels "$CLIPS/videos/labels.csv" --cache "$CLIPS/cache_lite" "${LITE[@]}" \
    $flip --json "$OUT/lite${flip:+_flip}.json"
  python bench/recipe23/real_eval.py --labels "$CLIPS/videos/labels.csv" --cache "$CLIPS/cache_heavy4" "${HEAVY[@]}" \
    $flip --json "$OUT/heavy${flip:+_flip}.json"
done
# Simulated LQ of Penn Action's test split, as every recipe's student was distilled on (the first recipe's pickle).
first=${RECIPES:-lev}; first=${first%% *}
python bench/recipe23/sim_shift.py --data "$W/$first/penn_lq.pkl" "${SIM[@]}" --json "$OUT/sim.json"
