"""Start Dask workers as SLURM jobs (dask-jobqueue) and keep the scheduler alive for the recipe.

    .venv/bin/pip install dask-jobqueue==0.9.0
    .venv/bin/python deployments/slurm/dask_cluster.py --jobs 8 --cores 16 --memory 64GB --partition cpu
    # prints: dask.address=tcp://HEAD:8786  -> aworld recipe run -c configs/cluster.yaml --set dask.address=...
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--memory", default="64GB")
    ap.add_argument("--partition", default=None)
    ap.add_argument("--walltime", default="12:00:00")
    ap.add_argument("--threads", type=int, default=16, help="threads per worker: shards wait on the model")
    ap.add_argument("--port", type=int, default=8786)
    args = ap.parse_args()
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(cores=args.cores, processes=1, memory=args.memory, queue=args.partition,
                           walltime=args.walltime, scheduler_options={"port": args.port},
                           worker_extra_args=[f"--nthreads={args.threads}"],
                           job_script_prologue=["cd $SLURM_SUBMIT_DIR", "source .venv/bin/activate"])
    cluster.scale(jobs=args.jobs)
    print(cluster.job_script())
    print(f"dask.address={cluster.scheduler_address}", flush=True)
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()


if __name__ == "__main__":
    main()
