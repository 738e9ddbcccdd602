"""`python -m bench NAME [ARGS]`: the benchmark bench/bench_NAME.py (`python -m bench status`, stand-ins only).

Without NAME (`make bench`): the lab benchmarks in turn (several minutes; each wipes and restarts the test
labs) and the stand-in status benchmark.
"""

import importlib
import sys

if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
    name = sys.argv[1].replace("-", "_")
    module = importlib.import_module(f"bench.bench_{name}")
    sys.argv = [f"bench {sys.argv[1]}", *sys.argv[2:]]
    module.main()
    sys.exit(0)

from bench import bench_lab, bench_operations, bench_status, bench_status_lab

for module in (bench_lab, bench_status, bench_status_lab, bench_operations):
    print(f"== {module.__name__}", flush=True)
    sys.argv = [module.__name__]
    module.main()
print("(pgBackRest rebuild and restore verification: python -m bench rebuild, several minutes)")
