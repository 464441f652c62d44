#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for tests: `slurm_local.sh start DIR` / `slurm_local.sh stop DIR`.
# Everything (config, state, logs, pid files) lives in DIR; no accounting database. Needs root and
# Debian's slurm-wlm and munge (apt-get install slurm-wlm munge).
# The config is also installed as /etc/slurm/slurm.conf (an existing one is kept aside and restored
# by stop): Snakemake's SLURM job step runs srun with every SLURM_* variable but the job's identity
# removed, so srun must find the config where a real cluster keeps it. Use on a test machine only.
set -euo pipefail
cmd=${1:?usage: slurm_local.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: slurm_local.sh start|stop DIR}")

system_conf=/etc/slurm/slurm.conf

stop() {
  for d in slurmd slurmctld munged; do
    if [ -f "$dir/$d.pid" ]; then
      kill "$(cat "$dir/$d.pid")" 2>/dev/null || true
      rm -f "$dir/$d.pid"
    fi
  done
  if [ -f "$dir/installed-system-conf" ]; then
    rm -f "$system_conf"
    [ -f "$dir/system-conf.backup" ] && mv "$dir/system-conf.backup" "$system_conf"
    rm -f "$dir/installed-system-conf"
  fi
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: slurm_local.sh start|stop DIR" >&2; exit 2; }

mkdir -p "$dir"/{state,spool,log,munge}
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
user=$(id -un)

# munge: its own key, socket and pid file under DIR
[ -f "$dir/munge/munge.key" ] || dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" status=none
chmod 0700 "$dir/munge"; chmod 0400 "$dir/munge/munge.key"
munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
       --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" --force

cat > "$dir/slurm.conf" <<CONF
ClusterName=zsllocal
SlurmctldHost=$host
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p "$(dirname "$system_conf")"
if [ ! -f "$dir/installed-system-conf" ]; then
  [ -f "$system_conf" ] && cp -p "$system_conf" "$dir/system-conf.backup"
  touch "$dir/installed-system-conf"
fi
cp "$dir/slurm.conf" "$system_conf"
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$dir/slurm.conf"
slurmd -f "$dir/slurm.conf"
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "SLURM_CONF=$dir/slurm.conf"
    exit 0
  fi
  sleep 1
done
echo "the SLURM node did not become idle; logs in $dir/log" >&2
stop
exit 1
