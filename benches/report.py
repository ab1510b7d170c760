#!/usr/bin/env python3
"""Merges the Rust suite, Python and (if present) Erlang results into bench-results/bench.json and
prints the one table of ratios, with the machine it ran on. Idempotent: run it again any time.

    python3 benches/report.py [bench-results]
"""
import json
import os
import sys

d = sys.argv[1] if len(sys.argv) > 1 else "bench-results"
path = os.path.join(d, "bench.json")
with open(path) as f:
    main = json.load(f)

rows = [dict(t, part="rust") for t in main.get("targets", [])]
for part in ("python", "erlang"):
    p = os.path.join(d, f"{part}.json")
    if os.path.exists(p):
        with open(p) as f:
            sub = json.load(f)
        main[part] = sub
        rows += [dict(t, part=part) for t in sub.get("targets", [])]
    else:
        main.pop(part, None)
main["all_targets"] = rows
with open(path, "w") as f:
    json.dump(main, f, indent=1)

m = main.get("machine", {})
print("\n" + "=" * 110)
print(f"bodypipe benchmarks -- {m.get('cpu_model', '?')}, {m.get('cpus', '?')} vCPUs, "
      f"kernel {m.get('kernel', '?')}, THP {m.get('thp', '?')}, {m.get('rustc', '')}")
print(f"reps {main.get('reps')} (medians), scale {main.get('scale')}; all ratios measured in this run")
print("=" * 110)
print(f"{'':5}{'part':7}{'target':<62}{'value':>10}{'baseline':>10}{'ratio':>8}  bound")
for t in rows:
    met = t.get("met")
    tag = "SKIP" if met is None else ("MET" if met else "MISS")
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"{tag:5}{t['part']:7}{t['what']:<62}{fmt(t.get('value')):>10}{fmt(t.get('baseline')):>10}"
          f"{fmt(t.get('ratio')):>8}  {t.get('cmp', '>=')} {t.get('bound')}")
for part in ("python", "erlang"):
    for n in main.get(part, {}).get("notes", []):
        print(f"note ({part}): {n}")
for n in main.get("notes", []):
    print(f"note (rust): {n}")
if not os.path.exists(os.path.join(d, "erlang.json")):
    print("note (erlang): no bench-results/erlang.json (set ERLANG_BENCH to the Erlang bench command)")
print(f"\nfull results: {path}")
