#!/usr/bin/env python3
"""What daemons' job records and event logs say about an elektronn-sched run (tests, bench).

  sched_report.py overlap HOST...   exit 1 if any GPU ever ran two jobs at once; prints the
                                    intervals per GPU (a job holds its GPUs from its first
                                    RUNNING event to its final state)
  sched_report.py skew HOST...      per gang start (jobs sharing a request-id attempt prefix
                                    "<id>.<key>/<member>/<attempt>" and a JobSpec.start_at):
                                    max - min of the jobs' first StatusUpdate times; JSON
  sched_report.py jobs HOST...      every job as JSON: host, name, request_id, gpus, state

The token comes from $ELEKTRONN_TOKEN. Needs <build>/python on PYTHONPATH (elektronn_client).
"""
import json
import sys
from collections import defaultdict

from elektronn_client import connect
from elektronn_client.client import jobs_pb2

FINAL = {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED}


def seconds(ts):
    return ts.seconds + ts.nanos * 1e-9


def jobs(hosts):
    """Every job of every host with its intervals of RUNNING and its first status time."""
    out = []
    for host in hosts:
        with connect(host, timeout=5) as c:
            for job in c.list(page_size=1000):
                runs, started, first_status = [], None, None
                for ev in c.watch(job, follow=False, timeout=10):
                    kind = ev.WhichOneof("kind")
                    if kind == "state":
                        if ev.state == jobs_pb2.RUNNING and started is None:
                            started = seconds(ev.time)
                        elif ev.state != jobs_pb2.RUNNING and started is not None and (
                                ev.state in FINAL or ev.state == jobs_pb2.PAUSED):
                            runs.append((started, seconds(ev.time)))
                            started = None
                    elif kind == "status" and first_status is None:
                        first_status = seconds(ev.time)
                if started is not None:
                    runs.append((started, float("inf")))
                out.append({
                    "host": host, "name": job.name, "request_id": job.request_id,
                    "gpus": list(job.gpu_uuids), "state": jobs_pb2.JobState.Name(job.state),
                    "runs": runs, "first_status": first_status,
                    "start_at": seconds(job.spec.start_at) if job.spec.HasField("start_at")
                    else None,
                    "step": job.step,
                })
    return out


def overlap(all_jobs):
    by_gpu = defaultdict(list)
    for j in all_jobs:
        for g in j["gpus"]:
            for a, b in j["runs"]:
                by_gpu[(j["host"], g)].append((a, b, j["name"]))
    bad = []
    for gpu, spans in sorted(by_gpu.items()):
        spans.sort()
        print(f"{gpu[0]} {gpu[1]}: " + ", ".join(f"{n} [{a:.2f}, {b:.2f}]" for a, b, n in spans))
        for (a1, b1, n1), (a2, b2, n2) in zip(spans, spans[1:]):
            if a2 < b1:
                bad.append(f"{gpu[1]} on {gpu[0]}: {n1} [{a1:.3f}, {b1:.3f}] overlaps "
                           f"{n2} [{a2:.3f}, {b2:.3f}]")
    return by_gpu, bad


def skew(all_jobs):
    groups = defaultdict(list)
    for j in all_jobs:
        if j["start_at"] is None or j["first_status"] is None or j["state"] == "CANCELLED":
            continue
        groups[j["start_at"]].append(j)
    skews = sorted(max(x["first_status"] for x in g) - min(x["first_status"] for x in g)
                   for g in groups.values())
    sizes = [len(g) for g in groups.values()]
    return {"gang_starts": len(skews), "sizes": sizes, "skews_s": skews,
            "median_s": skews[len(skews) // 2] if skews else None,
            "worst_s": skews[-1] if skews else None}


def main(argv):
    if len(argv) < 3 or argv[1] not in ("overlap", "skew", "jobs"):
        print(__doc__, file=sys.stderr)
        return 2
    all_jobs = jobs(argv[2:])
    if argv[1] == "jobs":
        print(json.dumps(all_jobs))
        return 0
    if argv[1] == "skew":
        print(json.dumps(skew(all_jobs)))
        return 0
    by_gpu, bad = overlap(all_jobs)
    if not by_gpu:
        print("FAIL: no job ran on any GPU", file=sys.stderr)
        return 1
    for b in bad:
        print("FAIL: two jobs on one GPU: " + b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
