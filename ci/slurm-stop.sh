#!/usr/bin/env bash
# Stop the daemons ci/slurm-start.sh started.
for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
done
exit 0
