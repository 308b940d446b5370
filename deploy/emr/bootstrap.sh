#!/bin/bash
# EMR bootstrap action (deploy/emr/submit.py cluster adds it): runs on every node before YARN starts.
# Arguments: the interpreter `submit.py pack` built the environment with, and the cgroup mount point
# that yarn-site's linux-container-executor.cgroups.mount-path names.
set -euxo pipefail
python=${1:-python3.11}
cgroup_root=${2:-/spark-rapids-cgroup}

# venv-pack does not include the interpreter: bin/python in the archive links to /usr/bin/<python>
# of the amazonlinux:2023 build container, and EMR 7's Amazon Linux 2023 has only python3.9 there.
sudo dnf install -y "$python"
"/usr/bin/$python" -c 'import sys; assert sys.version_info >= (3, 10), sys.version'

# Amazon Linux 2023 mounts cgroup v2 only; YARN's GPU isolation needs v1's devices controller
# (AWS's Spark-RAPIDS page for EMR 7.x).
sudo mkdir -p "$cgroup_root/devices"
mountpoint -q "$cgroup_root/devices" || sudo mount -t cgroup -o devices cgroupv1-devices "$cgroup_root/devices"
sudo chmod a+rwx -R "$cgroup_root"
