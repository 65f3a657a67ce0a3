"""The hashing pool is sized by the CPUs the process may really use: its affinity mask and the CPU
quota of its cgroup or any above it (a container's limit), never the host's core count."""

import os
import subprocess
import sys
from pathlib import Path

from {{ cookiecutter.package }}.core.cpus import cgroup_quota, usable_cpus

from .test_settings import GOOD


def cgroups(tmp_path: Path, own: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup tree under tmp_path with `files` ({path: content}); `own` as /proc/self/cgroup."""
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    (tmp_path / "self-cgroup").write_text(own)
    return tmp_path, tmp_path / "self-cgroup"


def test_a_cgroup_v2_limit_above_the_process_bounds_it(tmp_path: Path) -> None:
    root, own = cgroups(
        tmp_path,
        "0::/kubepods/pod1/app\n",
        {
            "cpu.max": "max 100000\n",
            "kubepods/pod1/cpu.max": "150000 100000\n",  # limits.cpu: 1500m, on the pod
            "kubepods/pod1/app/cpu.max": "max 100000\n",
        },
    )
    assert cgroup_quota(root, own) == 1.5
    assert usable_cpus(root, own) == min(2, len(os.sched_getaffinity(0)))


def test_a_cgroup_v1_quota_bounds_it_and_none_leaves_the_cores(tmp_path: Path) -> None:
    root, own = cgroups(
        tmp_path,
        "4:memory:/docker/c1\n3:cpu,cpuacct:/docker/c1\n",
        {
            "cpu/docker/c1/cpu.cfs_quota_us": "100000\n",
            "cpu/docker/c1/cpu.cfs_period_us": "100000\n",
        },
    )
    assert usable_cpus(root, own) == 1
    unlimited, own = cgroups(tmp_path / "none", "0::/\n", {"cpu.max": "max 100000\n"})
    assert cgroup_quota(unlimited, own) is None


def test_the_default_hashing_pool_follows_the_affinity_mask_of_a_real_process() -> None:
    # taskset, as a container runtime's cpuset does: the process may run on one core only.
    module = "{{ cookiecutter.package }}.core.settings"
    code = f"from {module} import Settings; print(Settings().password_hash_concurrency)"
    result = subprocess.run(
        ["taskset", "--cpu-list", "0", sys.executable, "-c", code],
        env={**GOOD, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "1"
