#!/bin/bash
# before (the code of 4d3f7be, /tmp/h16b_base/src) and after (src), alternately, one session
cd /work/h16b
out=benchmarks/results/memory_issue16
for round in 1 2; do
  for views in --views ""; do
    for tree in before after; do
      [ $tree = before ] && path=/tmp/h16b_base/src || path=src
      name=$tree${views:+-views}-$round
      echo "== $name $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
      [ $tree = before ] && script=/tmp/h16b_base/memory.py || script=benchmarks/memory.py
      PYTHONPATH=$path /work/main/.venv/bin/python $script --slices 300 $views > $out/$name.txt 2>&1
      cat $out/$name.txt
    done
  done
done
