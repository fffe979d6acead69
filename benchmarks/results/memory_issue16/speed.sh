#!/bin/bash
cd /work/h16b
out=benchmarks/results/memory_issue16
for round in 1 2; do for tree in before after; do
  [ $tree = before ] && path=/tmp/h16b_base/src || path=src
  echo "== speed $tree-$round $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  PYTHONPATH=$path timeout 300 /work/main/.venv/bin/python benchmarks/speed.py --presets pixelwise --cases synth --slices 12 --repeats 1 --threads 2 --out /tmp/h16b_cmp/speed-$tree-$round.json 2>&1 | tail -4
done; done
