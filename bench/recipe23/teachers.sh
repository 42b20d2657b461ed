#!/usr/bin/env bash
# Teachers of the issue-23 ablation, one after another (1 torch thread): baseline and one per lever config.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${W:-runs/r23}
export OMP_NUM_THREADS=1
for name in ${NAMES:-base window window_framing window_framing_torso}; do
  cfg=(); [ "$name" != base ] && cfg=(--config "bench/recipe23/$name.toml")
  [ -f "$W/t_$name/model.pt" ] && continue
  pipeline train --data "${DATA:-$W/penn.pkl}" "${cfg[@]}" --width 0.5 --length 32 --epochs 20 --eval-every 20 \
    --threads 1 --seed 0 --quiet --overwrite --out "$W/t_$name"
done
