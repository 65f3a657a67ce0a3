"""How many CPUs this process may really use: in a container, its CPU limit, not the host's.

`os.cpu_count()` counts the host's cores. A pod limited to one CPU on a 64-core node would then
size its hashing pool for 64, each thread holding argon2's memory, and the kernel would throttle
the lot to one CPU anyway. The CPU affinity mask (taskset, cpusets) and the CPU quota of the
process's cgroup or any cgroup above it (a Kubernetes `limits.cpu`, `docker run --cpus`) each
bound it; the smallest counts.
"""

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
OWN_CGROUPS = Path("/proc/self/cgroup")


def _v2_quota(folder: Path) -> float | None:
    # cpu.max: "max 100000" (no limit) or "150000 100000" (1.5 CPUs).
    quota, period = (folder / "cpu.max").read_text().split()[:2]
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    quota = int((folder / "cpu.cfs_quota_us").read_text())  # -1: no limit
    return None if quota <= 0 else quota / int((folder / "cpu.cfs_period_us").read_text())


def cgroup_quota(root: Path = CGROUP_ROOT, own: Path = OWN_CGROUPS) -> float | None:
    """The smallest CPU quota from this process's cgroup up to the root, in CPUs; None: none."""
    quotas = []
    for line in own.read_text().splitlines() if own.exists() else []:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2, the one hierarchy
            base, read = root, _v2_quota
        elif "cpu" in controllers.split(","):  # cgroup v1's cpu controller
            base, read = root / "cpu", _v1_quota
        else:
            continue
        group = base / path.lstrip("/")
        for folder in (group, *(p for p in group.parents if p.is_relative_to(base))):
            try:
                quotas.append(read(folder))
            except (OSError, ValueError):
                continue  # no such file at this level: no limit set here
    return min((quota for quota in quotas if quota is not None), default=None)


def usable_cpus(root: Path = CGROUP_ROOT, own: Path = OWN_CGROUPS) -> int:
    """At least 1; a fractional quota rounds up (1.5 CPUs keep two threads busy part-time)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (quota := cgroup_quota(root, own)) is not None:
        cpus = min(cpus or 1, math.ceil(quota))
    return max(1, cpus or 1)
