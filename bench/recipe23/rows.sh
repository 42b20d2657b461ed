#!/usr/bin/env bash
# Issue 23, from-scratch recipe rows: each recipe's teacher and student (bench/make_bundled_model.sh, INSTALL=0)
# scored on the real-video set's cached skeletons, on the fast path (BlazePose lite) and the heavy path (BlazePose
# heavy, same tracking and stride as `run --pose-model heavy`), plus simulated-LQ Penn Action.
#
#   bash bench/recipe23/rows.sh CLIPS OUT
#
# CLIPS: a folder with videos/labels.csv (bench/real_videos/materialise.py CLIPS/videos), cache_lite/ and
# cache_heavy4/ (`pipeline extract $(videos) --quality low [--pose-model heavy] --cache CLIPS/cache_...`).
# Models (WORK=runs/r23): $WORK/bundled_before.pt (the bundled student before the re-make), $WORK/base_teacher
# (make_bundled_model.sh's teacher, no lever), $WORK/lev (LEVERS=bench/recipe23/window_framing.toml).
# Writes OUT/{lite,lite_flip,heavy,heavy_flip,sim}.json; bench/recipe23/table.py turns them into rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIPS=$1
OUT=$2
W=${WORK:-runs/r23}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
LITE=(--model "bundled=$W/bundled_before.pt:low" --model "base_teacher=$W/base_teacher/model.pt:low"
      --model "lev_student=$W/lev/distill/student.pt:low" --model "lev_teacher=$W/lev/teacher/model.pt:low")
HEAVY=(--model "base_teacher=$W/base_teacher/model.pt:low" --model "lev_teacher=$W/lev/teacher/model.pt:low"
       --model "lev_student=$W/lev/distill/student.pt:low")
for flip in "" --flip; do
  python bench/recipe23/real_eval.py --labels "$CLIPS/videos/labels.csv" --cache "$CLIPS/cache_lite" "${LITE[@]}" \
    $flip --json "$OUT/lite${flip:+_flip}.json"
  python bench/recipe23/real_eval.py --labels "$CLIPS/videos/labels.csv" --cache "$CLIPS/cache_heavy4" "${HEAVY[@]}" \
    $flip --json "$OUT/heavy${flip:+_flip}.json"
done
python bench/recipe23/sim_shift.py --data "$W/lev/penn_lq.pkl" --model "bundled=$W/bundled_before.pt" \
  --model "lev_student=$W/lev/distill/student.pt" --model "base_teacher=$W/base_teacher/model.pt" \
  --model "lev_teacher=$W/lev/teacher/model.pt" --json "$OUT/sim.json"
