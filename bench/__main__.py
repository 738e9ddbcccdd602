"""`make bench`: every benchmark in turn (several minutes; each wipes and restarts the test labs)."""

from bench import bench_lab, bench_operations, bench_status

for module in (bench_lab, bench_status, bench_operations):
    print(f"== {module.__name__}", flush=True)
    module.main()
print("(pgBackRest rebuild and restore verification: python -m bench.bench_rebuild, several minutes;\n"
      " client entrypoints through switchover-dc: python -m bench.bench_entrypoint)")
