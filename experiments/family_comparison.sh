#!/usr/bin/env bash
# The MAML family at one budget of CPU time: README's "The MAML family" table and docs/family_comparison.json.
# Sinusoids: 120 s of CPU per algorithm (K = 10 in training; evaluated on 600 tasks, K = 5, after 0/1/5/10 steps);
# Omniglot 5-way 1-shot: 600 s of CPU per algorithm (600 test tasks, after 0/1/3/5/10 steps).
# About 1 h 40 min of CPU in all; two runs at a time on 2 cores (each trains with one BLAS thread).
# Usage: MINIMAML_DATA=../shared/data/omniglot bash experiments/family_comparison.sh runs/family
set -u
OUT=${1:-runs/family}; mkdir -p "$OUT"
sin() {  # algorithm, extra arguments
  minimaml train --algorithm $1 --max-seconds 120 --iterations 1000000 --checkpoint-every 250 --no-baseline --quiet \
      --out $OUT/sin-$1 ${@:2} > $OUT/sin-$1.log 2>&1
  minimaml eval $OUT/sin-$1 --tasks 600 --k 5 --steps 0,1,5,10 --json $OUT/sin-$1.json >> $OUT/sin-$1.log 2>&1
}
omni() {
  minimaml train --task omniglot --ways 5 --shots 1 --algorithm $1 --max-seconds 600 --iterations 1000000 \
      --checkpoint-every 500 --val-every 2000 --quiet --out $OUT/omni-$1 ${@:2} > $OUT/omni-$1.log 2>&1
  minimaml eval $OUT/omni-$1 --json $OUT/omni-$1.json >> $OUT/omni-$1.log 2>&1
}
sin maml & sin fomaml; wait
sin anil & sin metasgd; wait
sin mamlpp --steps 2 --msl-iterations 20000 --first-order-iterations 10000 --cosine & sin reptile --steps 5; wait
sin imaml --steps 5 --inner-lr 0.002 --lam 100 --cg-steps 20 & omni maml; wait
omni fomaml & omni anil; wait
omni metasgd & omni mamlpp --steps 2 --msl-iterations 5000 --first-order-iterations 2000 --cosine; wait
omni reptile --steps 5 --inner-lr 0.4
# iMAML on Omniglot is refused at the start (see README): omni imaml --steps 5 --inner-lr 0.02 --lam 20
