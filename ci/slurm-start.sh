#!/usr/bin/env bash
# Start a real single-node SLURM on this machine for tests/test_slurm.py: Debian's slurmctld,
# slurmd and munge, two stand-in GPUs (gres backed by /dev/zero and /dev/full) so that GPU
# requests schedule, split into 8 shards (4 per GPU) for jobs that share a GPU.  Needs root.  Stop it with ci/slurm-stop.sh.
set -euo pipefail
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null && [ ! -x /usr/sbin/munged ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi
mkdir -p /run/munge /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
chown munge:munge /run/munge
chown -R slurm:slurm /var/lib/slurm/slurmctld /var/log/slurm
if ! { [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; }; then
  runuser -u munge -- /usr/sbin/munged
fi
node=$(hostname -s)
cpus=$(nproc)
memory=$(( $(free -m | awk '/^Mem:/{print $2}') * 8 / 10 ))
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=localcluster
SlurmctldHost=$node
AuthType=auth/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
DefMemPerCPU=1000
GresTypes=gpu,shard
NodeName=$node CPUs=$cpus RealMemory=$memory Gres=gpu:2,shard:8 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=$node Name=gpu File=/dev/zero
NodeName=$node Name=gpu File=/dev/full
NodeName=$node Name=shard Count=8
CONF
for daemon in slurmctld slurmd; do
  pidfile=/run/$daemon.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"  # restart with this configuration
    for _ in $(seq 20); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.5; done
  fi
  # -c: slurmctld forgets the jobs of an earlier start on this machine (StateSaveLocation),
  # which would otherwise hold the node ("mix") and keep it from ever being idle
  if [ "$daemon" = slurmctld ]; then /usr/sbin/slurmctld -c; else /usr/sbin/slurmd; fi
done
for _ in $(seq 60); do
  state=$(sinfo -h -o %t 2>/dev/null || true)
  if [ "$state" = "idle" ]; then
    echo "SLURM is up: node $node, $cpus CPUs, ${memory} MiB, 2 stand-in GPUs (8 shards)"
    exit 0
  fi
  sleep 1
done
echo "SLURM did not come up; last state: ${state:-none}" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
