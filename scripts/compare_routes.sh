#!/usr/bin/env bash
# The exact route against NSGA-II and TPE at an equal number of real evaluations: each route
# searches the same preset with the same trial budget for 3 seeds; the table gives each run's
# hypervolume (reference point: the uncompressed model's cost, accuracy 0) and the median.
# Usage: scripts/compare_routes.sh [CONFIG] [TRIALS]   (defaults: experiments/configs/default.json, 40)
# The sensitivity table is measured once and shared (it is cached beside the studies).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-experiments/configs/default.json}
trials=${2:-40}
bin=${COMPSEARCH_BIN:-build/cli/compsearch}
out=${COMPSEARCH_COMPARE_DIR:-runs/compare-routes}
mkdir -p "$out"
storage="$out/study.journal"
printf '%-8s %-5s %-12s %-6s %-8s\n' route seed hypervolume front wall_s
for route in exact nsga2 tpe; do
  for seed in 0 1 2; do
    cfg="$out/config-$route-$seed.json"
    /usr/bin/python3 - "$config" "$cfg" "$seed" "$(cd "$(dirname "$config")" && pwd)" <<'PY'
import json, os, sys
src, dst, seed, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = json.load(open(src))
c.setdefault("sampler", {})["seed"] = seed
c["model"] = os.path.normpath(os.path.join(base, c["model"]))
json.dump(c, open(dst, "w"))
PY
    summary=$("$bin" search --config "$cfg" --storage "$storage" --study-name "$route-$seed" \
      --sampler "$route" --trials "$trials" --quiet --json)
    /usr/bin/python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print("%-8s %-5s %-12.6g %-6d %-8.1f" % (sys.argv[2], sys.argv[3], s["hypervolume"], s["front_size"], s["wall_s"]))' "$summary" "$route" "$seed" | tee -a "$out/table.txt"
  done
done
echo "median hypervolume per route ($trials real evaluations each):"
/usr/bin/python3 - "$out/table.txt" <<'PY'
import statistics, sys, collections
hv = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r, s, h = line.split()[:3]
    hv[r].append(float(h))
for r, v in hv.items():
    print("  %-6s median %.6g  (runs: %s)" % (r, statistics.median(v), ", ".join("%.6g" % x for x in v)))
PY
