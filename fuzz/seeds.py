#!/usr/bin/env python3
"""Writes the checked-in seed corpus under fuzz/corpus/ (run from anywhere: `python3 fuzz/seeds.py`).

The UsageBatch seeds are protobuf encoded by hand (field numbers from proto/proto/gpucost/v1/ingest.proto),
so that no Rust build is needed to make them; the `valid-*` ones pass `validate` at the fuzz targets'
fixed receive time (check with `GPUCOST_FUZZ_VERBOSE=1 <ingest_batch binary> fuzz/corpus/ingest_batch/*`).
Crash inputs the fuzzer found are kept beside these as `regress-*` files; this script leaves them alone.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1_800_000_000 * 10**9  # the fuzz targets' receive time
S = 10**9


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def u(field, n):
    return key(field, 0) + varint(n) if n else b""


def s(field, text):
    data = text.encode() if isinstance(text, str) else text
    return key(field, 2) + varint(len(data)) + data if data else b""


def msg(field, body):
    return key(field, 2) + varint(len(body)) + body


def f64(field, x):
    return key(field, 1) + struct.pack("<d", x) if x else b""


def labels(field, m):
    return b"".join(msg(field, s(1, k) + s(2, v)) for k, v in m.items())


def device(uuid, model="NVIDIA A10G", mem=24 << 30, parent="", profile="", index=0):
    return s(1, uuid) + s(2, model) + u(3, mem) + s(4, parent) + s(5, profile) + u(6, index)


def gpu(uuid, util, mem_used=1 << 30, power=200_000, energy=None, util_mem=10.0):
    body = s(1, uuid) + f64(2, util) + f64(3, util_mem) + u(4, mem_used) + u(5, power) + u(7, 15)
    if energy is not None:  # proto3 `optional`: present even when 0
        body += key(6, 0) + varint(energy)
    return body


def workload(kind, **f):
    order = ["namespace", "pod", "pod_uid", "container", "controller_kind", "controller_name"]
    body = u(1, kind)
    for i, name in enumerate(order, start=2):
        body += s(i, f.get(name, ""))
    body += labels(8, f.get("labels", {}))
    for i, name in [(10, "ecs_task_arn"), (11, "ecs_task_family"), (12, "ecs_cluster"), (13, "slurm_job_id"),
                    (14, "slurm_account"), (15, "user")]:
        body += s(i, f.get(name, ""))
    if "uid" in f:
        body += key(16, 0) + varint(f["uid"])
    for i, name in [(17, "systemd_unit"), (18, "container_id"), (19, "container_runtime")]:
        body += s(i, f.get(name, ""))
    body += labels(20, f.get("env", {}))
    return body


def process(pid, gpu_uuid, sm, mem=1 << 30, wl=None, name="python"):
    body = u(1, pid) + s(2, gpu_uuid) + f64(3, sm) + f64(4, sm / 2) + u(5, mem) + u(6, 15)
    if wl is not None:
        body += msg(7, wl)
    return body + s(8, name)


def batch(devices, gpus=(), processes=(), allocations=(), instance_type="g5.12xlarge", capacity=1,
          region="us-east-1", start=NOW - 15 * S, end=NOW, seq=1, first_seq=0, node_labels=None):
    node = s(1, "prod") + s(2, "ip-10-0-0-1") + s(3, instance_type) + u(4, capacity) + s(5, region)
    node += s(6, region + "a" if region else "")
    node += b"".join(msg(7, d) for d in devices) + labels(8, node_labels or {})
    body = s(1, "ip-10-0-0-1") + s(2, "boot-1") + u(3, seq) + msg(4, node) + u(5, start) + u(6, end)
    body += b"".join(msg(7, g) for g in gpus) + b"".join(msg(8, p) for p in processes)
    body += b"".join(msg(9, s(1, g) + msg(2, w)) for g, w in allocations)
    body += s(10, "0.1.0") + u(11, S)
    if first_seq:
        body += u(12, first_seq)
    return body


POD = 1
ECS, SLURM, SYSTEMD, CONTAINER, HOST = 2, 3, 4, 5, 6
A10G = [device(f"GPU-{i}", index=i) for i in range(4)]


def ingest_seeds():
    pod = lambda name: workload(POD, namespace="ml", pod=name, container="trainer", controller_kind="Job",
                                controller_name="train", labels={"team": "nlp"}, env={"MLFLOW_RUN_ID": "abc"})
    yield "valid-one-pod", batch(A10G, [gpu("GPU-0", 60.0, energy=3_000_000)], [process(42, "GPU-0", 60.0, wl=pod("p0"))])
    # Time-sliced GPU: shares over 100 % are scaled down to the interval.
    yield "valid-oversubscribed", batch(
        A10G, [gpu("GPU-1", 100.0)],
        [process(1, "GPU-1", 90.0, wl=pod("a")), process(2, "GPU-1", 90.0, wl=pod("b")),
         process(3, "GPU-1", 90.0, wl=pod("a"))])
    # An allocated GPU with nothing running, and an unidentified process.
    yield "valid-idle-allocation", batch(
        A10G, [gpu("GPU-2", 0.0)], [process(7, "GPU-3", 5.0)], allocations=[("GPU-2", pod("idle-notebook"))],
        capacity=2)
    # MIG: an A100 split into slices, each priced as its share of the parent.
    a100 = [device("GPU-a100", "NVIDIA A100-SXM4-40GB", 40 << 30),
            device("MIG-1", "NVIDIA A100-SXM4-40GB", 20 << 30, parent="GPU-a100", profile="3g.20gb"),
            device("MIG-2", "NVIDIA A100-SXM4-40GB", 10 << 30, parent="GPU-a100", profile="2g.10gb")]
    yield "valid-mig", batch(a100, [gpu("GPU-a100", 40.0, energy=1_000_000)],
                             [process(5, "MIG-1", 50.0, wl=pod("m1")), process(6, "MIG-2", 20.0, wl=pod("m2"))],
                             instance_type="p4d.24xlarge")
    kinds = [
        workload(ECS, ecs_task_arn="arn:aws:ecs:us-east-1:123456789012:task/batch/5a8c1d2e", ecs_task_family="tr",
                 ecs_cluster="batch", container_id="4f2c8e3a", container_runtime="docker"),
        workload(SLURM, slurm_job_id="4711", slurm_account="physics", user="alice", uid=1001),
        workload(SYSTEMD, systemd_unit="vllm-server.service", user="svc"),
        workload(CONTAINER, container_id="4f2c8e3a9b1d7f6e5c4b3a29180716253443526170819a0b1c2d3e4f5a6b7c8d",
                 container_runtime="containerd"),
        workload(HOST, user="bob", uid=1002),
        workload(99, namespace="from-a-newer-agent"),
    ]
    yield "valid-every-kind", batch(A10G, [gpu(f"GPU-{i}", 30.0) for i in range(4)],
                                    [process(100 + i, f"GPU-{i % 4}", 25.0, wl=w) for i, w in enumerate(kinds)],
                                    instance_type="", region="", capacity=0)
    # A batch the agent's spool merged from seqs 3..9, on an hour-long interval (the longest allowed).
    yield "valid-merged-hour", batch(A10G, [gpu("GPU-0", 10.0)], [process(9, "GPU-0", 10.0, wl=pod("x"))],
                                     start=NOW - 3600 * S, seq=9, first_seq=3, node_labels={"pool": "gpu"})
    # Rejected ones, each for one reason, so the fuzzer starts next to every check.
    yield "bad-unknown-gpu", batch(A10G, [gpu("GPU-9", 10.0)])
    yield "bad-util-over-100", batch(A10G, [], [process(1, "GPU-0", 140.0)])
    yield "bad-future", batch(A10G, start=NOW + 3600 * S, end=NOW + 3615 * S)
    yield "bad-mig-parent-unknown", batch([device("MIG-x", parent="GPU-nope", profile="1g.5gb")])
    yield "bad-duplicate-pid", batch(A10G, [], [process(1, "GPU-0", 1.0), process(1, "GPU-0", 2.0)])
    yield "bad-first-seq-after-seq", batch(A10G, seq=2, first_seq=5)
    yield "empty", b""
    # Regression: two processes of one workload on a GPU with 2^64-1 bytes overflowed the holding's sum.
    w = workload(POD, namespace="ml", pod="p")
    big = (1 << 64) - 1
    yield "regress-memory-sum-overflow", batch([device("GPU-0", mem=big)], [],
                                               [process(1, "GPU-0", 10.0, mem=big - 1, wl=w),
                                                process(2, "GPU-0", 10.0, mem=big - 1, wl=w)])


CID = "4f2c8e3a9b1d7f6e5c4b3a29180716253443526170819a0b1c2d3e4f5a6b7c8d"
UID = "0c2f1e4a-5b6d-4c3e-9f8a-7b6c5d4e3f2a"
UID_ = UID.replace("-", "_")
# From design/FIELD-NOTES.md and the cases in agent/src/identify/cgroup.rs.
CGROUPS = {
    "v2-systemd-containerd": f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
    "v2-systemd-crio": f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{CID}.scope\n",
    "v1-cgroupfs-kubepods": f"12:memory:/kubepods/burstable/pod{UID}/{CID}\n11:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n",
    "v2-cgroupns-relative": f"0::/../../kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
    "v2-docker": f"0::/system.slice/docker-{CID}.scope\n",
    "v1-docker": f"9:pids:/docker/{CID}\n1:name=systemd:/docker/{CID}\n",
    "v2-podman": f"0::/machine.slice/libpod-{CID}.scope/container\n",
    "v1-ecs": f"9:memory:/ecs/5a8c1d2e3f4b4a5c9d8e7f6a5b4c3d2e/{CID}\n",
    "v2-ecstasks": f"0::/ecstasks.slice/ecstasks-5a8c1d2e3f4b4a5c9d8e7f6a5b4c3d2e.slice/docker-{CID}.scope\n",
    "v1-slurm": "4:devices:/slurm/uid_1001/job_4711/step_0/task_0\n3:memory:/slurm/uid_1001/job_4711/step_0/task_0\n",
    "v2-slurmstepd": "0::/system.slice/slurmstepd.scope/job_4711/step_batch/user/task_0\n",
    "v2-service": "0::/system.slice/vllm-server.service\n",
    "v2-user-session": "0::/user.slice/user-1000.slice/session-3.scope\n",
    "hybrid": f"12:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{CID}\n0::/\n",
    "garbage": "not a cgroup file\n1:cpu:/docker/short\n",
    # Also fed to the other /proc parsers: a stat line whose comm holds `) (`, and passwd lines.
    "proc-stat": "4242 (python (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 100 200\n",
    "passwd": "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/bash\nbroken line\n",
}

QUERIES = {
    "month": "period=2026-11",
    "week": "period=2026-W48&group_by=department&format=csv",
    "week-53": "period=2020-W53&policy=utilization",
    "december": "period=2026-12&format=focus&group_by=cost-centre",
    "from-to-rfc3339": "from=2026-11-01T00:00:00Z&to=2026-11-15T12:30:00Z&group_by=namespace",
    "from-to-unix": "from=1793577600&to=1796169600&policy=allocation",
    "day-and-filters": "from=2026-11-01&to=2026-11-02&group_by=namespace,label:team&filter=namespace%3Dml",
    "intervals": "intervals=R2/P30D/2026-11-01&group=team",
    "dimensions": "group_by=cluster,node,gpu,workload,kind,model_version,day",
    "defaults": "",
    "unknown": "form=1&period=2026-13&group_by=pod",
    "encoded": "period=2026%2D11&group_by=cost%20center&format=j+son",
    "both": "period=2026-11&from=1&to=2",
    "garbage": "\u00ff=&&==%zz%%=W-1",
    # Regressions: each overflowed u64 arithmetic (the fuzzer's own finds, regress-year-3287 and
    # regress-intervals-year-5104, are kept as it wrote them and not made here).
    "regress-week-before-1970": "period=1970-W01",
    "regress-intervals-overflow": "intervals=R99999999999/P99999999999D/2026-11-01",
}


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def main():
    for name, data in ingest_seeds():
        write("ingest_batch", name + ".pb", data)
    for name, text in CGROUPS.items():
        write("cgroup_line", name + ".txt", text)
    for name, text in QUERIES.items():
        write("api_query", name + ".txt", text)


if __name__ == "__main__":
    main()
