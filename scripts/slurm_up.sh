#!/usr/bin/env bash
# Brings up a real one-node Slurm cluster on this machine (node "localhost", partition "debug"), with
# accounting, and without systemd: for CI and `make slurm-up`. Runs as root on Debian (12: Slurm 22.05).
#
# What runs, in order: munged (authentication between all Slurm pieces), MariaDB (started by hand with
# mysqld_safe), slurmdbd (accounting daemon, stores jobs in MariaDB), slurmctld (controller), slurmd (the
# node). Stop everything with scripts/slurm_down.sh (packages and state stay).
#
# Why accounting (slurmdbd + MariaDB) and not a lighter setup: Dora launches through submitit, and submitit
# reads job states only from `sacct`. Without accounting storage sacct has nothing, submitit reports every
# job as UNKNOWN, Dora's monitoring never ends and its retries never fire.
#
# Why fake GPUs: Dora always submits with `--gres=gpu:N` (it has no gpus=0 mode), so a CPU-only node must
# still offer GRES "gpu" or every Dora job is refused. Slurm only counts GRES backed by character or block
# devices (a bare Count= leaves the node INVALID, regular files are rejected), so we create character
# devices /dev/fakegpuN with the null device's numbers (1,3) and list them in gres.conf. Jobs then get
# CUDA_VISIBLE_DEVICES=0,1,... set by Slurm, but there is no GPU behind them: code must run on CPU.
#
# Idempotent: when everything already answers it returns in seconds; when only part is up (say munged
# alone), it starts what is missing. Daemons are started detached, their logs are in /var/log/slurm/
# (munged: /var/log/munge/, MariaDB: /var/log/mysql/). On failure it prints the tail of the relevant log
# and exits non-zero.
#
# Knobs (environment): SLURM_FAKE_GPUS (default 2), SLURM_MEM_RESERVE_MB (memory kept for the OS, default
# the larger of 1024 MB and 10% of RAM), SLURM_UP_SMOKE=1 (run the smoke job even when already up),
# SLURM_UP_CANCEL_PENDING=1 (also cancel the pending jobs a restarted controller reloads, step 8).
set -euo pipefail

FAKE_GPUS=${SLURM_FAKE_GPUS:-2}
CLUSTER=rrci                  # cluster name in the accounting DB (lowercase, no dashes: it prefixes SQL tables)
DB_NAME=slurm_acct_db
ETC=/etc/slurm
LOGDIR=/var/log/slurm
RUNDIR=/run/slurm
MYSQL_LOG=/var/log/mysql/error.log
MUNGE_LOG=/var/log/munge/munged.log
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

log() { echo "[slurm-up] $*"; }
# fail LOGFILE MESSAGE: say what failed, show the end of the daemon's log, exit non-zero.
fail() {
  local logfile=$1; shift
  echo "[slurm-up] FAILED: $*" >&2
  if [ -n "$logfile" ] && [ -f "$logfile" ]; then
    echo "[slurm-up] --- last lines of $logfile ---" >&2
    tail -n 25 "$logfile" >&2 || true
  fi
  exit 1
}
# wait_for SECONDS CMD...: poll CMD every half second until it succeeds; non-zero if it never did.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# pid_alive PID: the process exists and is not a zombie. alive_pids NAME: such pids named exactly NAME.
# Zombies are left out: daemons are reparented to PID 1, and a container's PID 1 may take seconds to
# reap one that slurm_down.sh stopped.
pid_alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true); [ -n "$st" ] && [ "$st" != Z ]; }
alive_pids() { local p; for p in $(pgrep -x "$1" || true); do if pid_alive "$p"; then echo "$p"; fi; done; }
alive() { [ -n "$(alive_pids "$1")" ]; }
# wait_up NAME SECONDS CMD...: like wait_for, but give up early if no process NAME is left 2 s after the
# start (the daemon died at startup: no point waiting out the timeout).
wait_up() {
  local name=$1 deadline=$((SECONDS + $2)) grace=$((SECONDS + 2)); shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$grace" ] && ! alive "$name"; then
      "$@" >/dev/null 2>&1 && return 0
      echo "[slurm-up] $name is not running (exited at startup?)" >&2; return 1
    fi
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# ensure_daemon NAME PROBE MESSAGE CMD...: unless PROBE already passes, start CMD (detached, log in
# $LOGDIR/NAME.log; not again if a NAME process is alive but not answering yet) and wait up to 60 s for PROBE.
ensure_daemon() {
  local name=$1 probe=$2 message=$3; shift 3
  if "$probe"; then log "$name: running"; return 0; fi
  log "$name: starting"
  alive "$name" || "$@" </dev/null >>"$LOGDIR/$name.log" 2>&1 || fail "$LOGDIR/$name.log" "$name did not start"
  wait_up "$name" 60 "$probe" || fail "$LOGDIR/$name.log" "$message"
  log "$name: ok"
}

[ "$(id -u)" = 0 ] || { echo "[slurm-up] must run as root (daemons, /etc/slurm, mknod)" >&2; exit 1; }

# ---------------------------------------------------------------- health probes (all bounded in time)
munge_ok()    { command -v munge >/dev/null && timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }
mysql_ok()    { command -v mysqladmin >/dev/null && timeout 5 mysqladmin --protocol=socket -uroot ping >/dev/null 2>&1; }
slurmdbd_ok() { command -v sacctmgr >/dev/null && timeout 10 sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
cluster_ok()  { timeout 10 sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; }
ctld_ok()     { command -v scontrol >/dev/null && timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }
# Node usable: idle, or busy with jobs (mixed/allocated/completing); any "*" suffix means not responding.
node_state()  { timeout 10 sinfo -h -N -n localhost -o %t 2>/dev/null | head -n1; }
node_ok()     { case "$(node_state)" in idle|mix|alloc|comp) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------- 1. packages
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]} (daemons kept from starting)"
  # Debian's maintainer scripts start each daemon on install through invoke-rc.d, which asks
  # /usr/sbin/policy-rc.d first; exit code 101 means "action forbidden". We start the daemons ourselves,
  # in the right order and with our configs, so forbid that for the duration of this install only, then
  # put back whatever was there before (Docker images often ship their own policy-rc.d).
  POLICY=/usr/sbin/policy-rc.d
  POLICY_BACKUP=""
  if [ -e "$POLICY" ]; then POLICY_BACKUP=$(mktemp); cp -p "$POLICY" "$POLICY_BACKUP"; fi
  restore_policy() {
    if [ -n "$POLICY_BACKUP" ]; then mv -f "$POLICY_BACKUP" "$POLICY"; else rm -f "$POLICY"; fi
  }
  trap restore_policy EXIT
  trap 'restore_policy; trap - EXIT; exit 130' INT TERM
  printf '#!/bin/sh\n# written by rr-audiocraft scripts/slurm_up.sh during apt-get install; removed after\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  export DEBIAN_FRONTEND=noninteractive
  APT=(apt-get -o DPkg::Lock::Timeout=600 -q)
  "${APT[@]}" update >/dev/null || fail "" "apt-get update"
  "${APT[@]}" install -y --no-install-recommends "${missing[@]}" >/tmp/slurm-up-apt.log 2>&1 \
    || fail /tmp/slurm-up-apt.log "apt-get install ${missing[*]}"
  restore_policy
  trap - EXIT INT TERM
  log "packages installed"
else
  log "packages present"
fi

# ---------------------------------------------------------------- 2. configs
mkdir -p "$ETC" "$LOGDIR" "$RUNDIR" /var/spool/slurmctld /var/spool/slurmd

# Machine size. nproc honours CPU affinity (containers pinned to a few CPUs); memory is the smaller of
# MemTotal and the cgroup memory limit (v2 memory.max or v1 limit_in_bytes), minus a reserve for the OS,
# MariaDB and the daemons: a node advertising more than it has would let jobs be OOM-killed.
CPUS=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
  if [ -r "$f" ]; then
    lim=$(cat "$f")
    if [[ "$lim" =~ ^[0-9]+$ ]] && [ $((lim / 1048576)) -lt "$mem_mb" ]; then mem_mb=$((lim / 1048576)); fi
  fi
done
reserve=${SLURM_MEM_RESERVE_MB:-$(( mem_mb / 10 > 1024 ? mem_mb / 10 : 1024 ))}
REAL_MEM=$((mem_mb - reserve))
[ "$REAL_MEM" -ge 1024 ] || fail "" "only ${mem_mb} MB of memory (reserve ${reserve} MB): too small for a node"

SLURM_CHANGED=0
DBD_CHANGED=0
# put_file PATH MODE FLAGVAR: write stdin to PATH only when the content differs; then set FLAGVAR=1.
put_file() {
  local path=$1 mode=$2 flag=$3 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path"; then rm -f "$tmp"; else
    install -m "$mode" -o root -g root "$tmp" "$path"; rm -f "$tmp"; printf -v "$flag" 1
  fi
  chmod "$mode" "$path"
}

# The DB password is random, made once and kept in slurmdbd.conf (root-only): reruns reuse it so that
# the config (and the fast path) stays the same.
DB_PASS=$(sed -n 's/^StoragePass=//p' "$ETC/slurmdbd.conf" 2>/dev/null || true)
[ -n "$DB_PASS" ] || DB_PASS=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')

gpu_files="/dev/fakegpu0"
[ "$FAKE_GPUS" -le 1 ] || gpu_files="/dev/fakegpu[0-$((FAKE_GPUS - 1))]"

put_file "$ETC/slurm.conf" 644 SLURM_CHANGED <<EOF
# Written by scripts/slurm_up.sh (rr-audiocraft): one-node CI cluster. Edits are overwritten.
ClusterName=$CLUSTER
# slurmctld accepts "localhost" as its own name whatever the machine's hostname is.
SlurmctldHost=localhost
# Daemons as root: a throwaway single-user CI node; saves chown-ing every spool/log/conf to a slurm user.
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Track job processes by parent pid and bind nothing: the cgroup plugins need a delegated cgroup tree
# (systemd), which this machine does not have.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No MPI launcher; srun starts the tasks itself (Dora/submitit read SLURM_PROCID etc.).
MpiDefault=none
# Trackable consumables: CPUs only. Memory is still checked (a job asking --mem above RealMemory is
# refused) but not reserved per job, so small jobs without --mem don't each claim the whole node.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Fake GPUs (see header and gres.conf): Dora always asks --gres=gpu:N.
GresTypes=gpu
# Accounting through slurmdbd: required, submitit learns job states only from sacct.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# Also record the GPUs each job got, so sacct -o AllocTRES shows gres/gpu.
AccountingStorageTRES=gres/gpu
# No per-process usage sampling (would need cgroups or /proc polling; not needed for job states).
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Scheduling within seconds: the main scheduler runs at every submit/end event; backfill every 5 s.
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
# A finished job stays visible to squeue/scontrol 30 s (sacct keeps it for ever, in MariaDB).
MinJobAge=30
# scancel / time limit: SIGTERM, then SIGKILL after 5 s (default 30 s makes cancel tests slow).
KillWait=5
# Don't kill a job whose srun went quiet; no wait for other tasks once one ended (defaults, explicit).
InactiveLimit=0
Waittime=0
# A node that was DOWN (e.g. slurmd restarted by slurm_up.sh) returns to service when it registers
# with a valid config, without a manual "scontrol update state=resume".
ReturnToService=2
# Use the node values below even if slurmd's hardware probe disagrees (containers often misreport).
SlurmdParameters=config_overrides
# Refuse at submit time (instead of pending for ever) a job beyond the partition's limits.
EnforcePartLimits=ALL
# No mail on this node.
MailProg=/bin/true
# CPUs/RealMemory measured from this machine by slurm_up.sh; RealMemory leaves ${reserve} MB to the OS.
# NodeAddr pins the node to loopback; slurmd is started with -N localhost to take this name.
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEM Gres=gpu:$FAKE_GPUS State=UNKNOWN
# MaxTime 3 days: AudioCraft's default slurm.time is 3600 min; anything longer is refused at submit.
PartitionName=debug Nodes=localhost Default=YES MaxTime=3-00:00:00 State=UP
EOF

put_file "$ETC/gres.conf" 644 SLURM_CHANGED <<EOF
# Written by scripts/slurm_up.sh. Fake GPUs: character devices with the null device's numbers, made by
# slurm_up.sh (Slurm rejects GRES files that are not devices and a bare Count= leaves the node INVALID).
NodeName=localhost Name=gpu File=$gpu_files
EOF

# slurmd parses cgroup.conf even with proctrack/linuxproc + task/none. 24.05+ can switch the cgroup
# plugin off; on older Slurm (22.05) the plugin named here is never loaded with our settings.
slurm_ver=$(slurmd -V 2>/dev/null | awk '{print $2}')
if [ "$(printf '%s\n24.05\n' "$slurm_ver" | sort -V | head -n1)" = "24.05" ]; then cg=disabled; else cg=cgroup/v1; fi
put_file "$ETC/cgroup.conf" 644 SLURM_CHANGED <<EOF
# Written by scripts/slurm_up.sh. No cgroup confinement on this node (no systemd to delegate a tree).
CgroupPlugin=$cg
EOF

# slurmdbd refuses to start unless its config (which holds the DB password) is owned by SlurmUser, 0600.
put_file "$ETC/slurmdbd.conf" 600 DBD_CHANGED <<EOF
# Written by scripts/slurm_up.sh: the accounting daemon, storing jobs in the local MariaDB.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$LOGDIR/slurmdbd.log
PidFile=$RUNDIR/slurmdbd.pid
StorageType=accounting_storage/mysql
# "localhost" makes the MySQL client use the Unix socket.
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF

# Fake GPU devices (/dev is a fresh tmpfs in containers: recreate them at every start).
for ((i = 0; i < FAKE_GPUS; i++)); do
  [ -c "/dev/fakegpu$i" ] || mknod -m 666 "/dev/fakegpu$i" c 1 3 || fail "" "mknod /dev/fakegpu$i (needs CAP_MKNOD)"
done

# ---------------------------------------------------------------- fast path
if [ "$SLURM_CHANGED$DBD_CHANGED" = 00 ] && munge_ok && mysql_ok && cluster_ok && ctld_ok && node_ok; then
  log "already up: node localhost $(node_state), partition debug, cluster $CLUSTER (configs unchanged)"
  [ "${SLURM_UP_SMOKE:-0}" = 1 ] || exit 0
fi
log "configs in $ETC: node CPUs=$CPUS RealMemory=${REAL_MEM}MB gpu:$FAKE_GPUS (fake)$( [ "$SLURM_CHANGED$DBD_CHANGED" = 00 ] || echo ', changed')"

# stop_pid NAME PIDFILE: TERM a running daemon (to restart it with a changed config) and wait for it.
stop_pid() {
  local name=$1 pidfile=$2 pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  # The pid file's pid only if it is still this daemon (stale pid files may name a recycled pid).
  { [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; } \
    || pid=$(alive_pids "$name" | head -n1)
  [ -n "$pid" ] || return 0
  log "restarting $name (config changed)"
  kill -TERM "$pid" 2>/dev/null || true
  wait_for 30 bash -c "st=\$(awk '{print \$3}' /proc/$pid/stat 2>/dev/null); [ -z \"\$st\" ] || [ \"\$st\" = Z ]" \
    || kill -KILL "$pid" 2>/dev/null || true
}
if [ "$DBD_CHANGED" = 1 ]; then stop_pid slurmdbd "$RUNDIR/slurmdbd.pid"; fi
if [ "$SLURM_CHANGED" = 1 ]; then
  stop_pid slurmd "$RUNDIR/slurmd.pid"
  stop_pid slurmctld "$RUNDIR/slurmctld.pid"
fi

# ---------------------------------------------------------------- 3. munged
if munge_ok; then
  log "munged: running"
else
  log "munged: starting"
  # The key must be munge-owned and 0400 or munged refuses it. Debian's postinst usually made one.
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey -c -f -k /etc/munge/munge.key
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
  fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  # A stale pid file/socket from an unclean stop would make munged refuse to start.
  alive munged || rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  # munged insists that its log file belongs to the munge user.
  [ ! -e "$MUNGE_LOG" ] || chown munge:munge "$MUNGE_LOG"
  # munged as the munge user (it refuses root unless forced); it daemonizes itself. Its early errors
  # (before it opens its log) go to stderr, kept in a temp file.
  err=$(mktemp)
  alive munged \
    || runuser -u munge -- munged </dev/null >"$err" 2>&1 || { cat "$err" >&2; fail "$MUNGE_LOG" "munged did not start"; }
  rm -f "$err"
  wait_up munged 15 munge_ok || fail "$MUNGE_LOG" "munge -n | unmunge fails"
  log "munged: ok"
fi

# ---------------------------------------------------------------- 4. MariaDB
if mysql_ok; then
  log "mariadb: running"
else
  log "mariadb: starting (mysqld_safe)"
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  install -d -o mysql -g adm -m 2750 /var/log/mysql
  # The package's postinst initialises the data directory; do it here if that did not happen.
  [ -d /var/lib/mysql/mysql ] || mysql_install_db --user=mysql --datadir=/var/lib/mysql >/dev/null \
    || fail "" "mysql_install_db"
  # Detached from this shell (setsid, stdio closed) so it outlives the script and does not hold a
  # caller's pipe open. innodb_lock_wait_timeout: slurmdbd asks for >= 900 s (it warns otherwise).
  # (Unless a mysqld_safe is already there, e.g. still starting: then only wait for it.)
  if ! alive mysqld_safe; then
    setsid mysqld_safe --user=mysql --log-error="$MYSQL_LOG" --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
  fi
  wait_up mysqld_safe 60 mysql_ok || fail "$MYSQL_LOG" "MariaDB did not answer mysqladmin ping within 60 s"
  log "mariadb: ok"
fi
# The slurm DB user and its rights: idempotent (IF NOT EXISTS, then the password re-asserted). Root
# logs in through the Unix socket (unix_socket auth: OS root = DB root, no password).
mysql --protocol=socket -uroot <<SQL || fail "$MYSQL_LOG" "creating the slurm DB user"
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO 'slurm'@'localhost';
SQL
log "mariadb: DB user slurm has $DB_NAME"

# ---------------------------------------------------------------- 5. slurmdbd + cluster
# First start creates the schema (a few seconds).
ensure_daemon slurmdbd slurmdbd_ok "slurmdbd did not answer sacctmgr within 60 s" slurmdbd
# The cluster must exist in the DB before slurmctld registers, or nothing it runs gets accounted.
if cluster_ok; then
  log "accounting: cluster $CLUSTER registered"
else
  out=$(timeout 30 sacctmgr -i add cluster "$CLUSTER" 2>&1) || true
  cluster_ok || { echo "$out" >&2; fail "$LOGDIR/slurmdbd.log" "sacctmgr add cluster $CLUSTER"; }
  log "accounting: cluster $CLUSTER added"
fi

# ---------------------------------------------------------------- 6. slurmctld
# A controller started here reloads the jobs saved by the previous one: step 8 looks at those.
CTLD_STARTED=0
ctld_ok || CTLD_STARTED=1
ensure_daemon slurmctld ctld_ok "slurmctld not UP (scontrol ping) within 60 s" slurmctld

# ---------------------------------------------------------------- 7. slurmd
if alive slurmd && node_ok; then
  log "slurmd: running"
else
  if ! alive slurmd; then
    log "slurmd: starting"
    # -N: take the node name "localhost" whatever the hostname is.
    slurmd -N localhost </dev/null >>"$LOGDIR/slurmd.log" 2>&1 || fail "$LOGDIR/slurmd.log" "slurmd did not start"
  fi
  if ! wait_up slurmd 60 node_ok; then
    echo "[slurm-up] node state: $(node_state); reason: $(scontrol show node localhost 2>/dev/null | sed -n 's/.*Reason=//p')" >&2
    fail "$LOGDIR/slurmd.log" "node localhost not idle within 60 s"
  fi
  log "slurmd: ok, node localhost $(node_state)"
fi

# ---------------------------------------------------------------- 8. jobs left from an earlier start
# A slurmctld started by this script reloads the jobs its predecessor saved. One it lists as running
# but without a slurmstepd on this node died with that predecessor (machine or container stopped,
# daemons killed). slurmctld 22.05 keeps it running after slurmd registers without it (seen here and in
# CI after a killed run), so it would hold the node's CPUs until its time limit, and every new job, the
# smoke job first, would wait. Pending jobs are real queued work and are kept, unless
# SLURM_UP_CANCEL_PENDING=1 (CI sets it: a throwaway cluster whose queue can only hold a killed earlier
# run's jobs).
orphans=()
if [ "$CTLD_STARTED" = 1 ]; then
  while read -r id st; do
    case "$st" in
      R|CG|S) pgrep -f "^slurmstepd: \[$id\." >/dev/null || orphans+=("$id") ;;
      PD) [ "${SLURM_UP_CANCEL_PENDING:-0}" != 1 ] || orphans+=("$id") ;;
    esac
  done < <(timeout 10 squeue -h -o '%A %t' 2>/dev/null || true)
fi
if [ ${#orphans[@]} -gt 0 ]; then
  log "cancelling ${#orphans[@]} job(s) left from an earlier start (no process on the node$( [ "${SLURM_UP_CANCEL_PENDING:-0}" != 1 ] || echo ', or pending')): ${orphans[*]}"
  timeout 10 scancel "${orphans[@]}" 2>/dev/null || true
  orphans_gone() { [ -z "$(timeout 10 squeue -h -j "$(IFS=,; echo "${orphans[*]}")" -t PD,R,CG,S -o %A 2>/dev/null)" ]; }
  wait_for 60 orphans_gone \
    || fail "$LOGDIR/slurmctld.log" "jobs ${orphans[*]} still listed 60 s after scancel"
fi
pending=$(timeout 10 squeue -h -t PD -o %A 2>/dev/null | wc -l)
[ "$pending" = 0 ] || log "$pending pending job(s) kept in the queue (squeue; SLURM_UP_CANCEL_PENDING=1 cancels them)"

# ---------------------------------------------------------------- 9. smoke job
# The shape Dora submits: N tasks on one node, N fake GPUs, --mem; sacct must then report COMPLETED.
# srun rather than `sbatch --wait`: the latter polls with growing sleeps and adds ~10 s.
# Skipped while running jobs (live ones, kept above) hold the node: it would only queue behind them.
running=$(timeout 10 squeue -h -t R,CG -o %A 2>/dev/null | wc -l)
if [ "$running" != 0 ]; then
  log "smoke job skipped: $running job(s) running on the node (squeue)"
  log "up: partition debug, node localhost $(node_state), cluster $CLUSTER"
  exit 0
fi
ntasks=$(( CPUS < 2 ? 1 : 2 ))
log "smoke job: srun $ntasks tasks, --gres=gpu:$FAKE_GPUS --mem=256M"
out=$(cd /tmp && timeout 120 srun -J slurm-up-smoke -p debug -N1 --ntasks-per-node="$ntasks" --cpus-per-task=1 \
  --gres="gpu:$FAKE_GPUS" --mem=256M --time=2 printenv SLURM_JOB_ID 2>&1) \
  || { echo "$out" >&2; fail "$LOGDIR/slurmctld.log" "smoke job failed"; }
jobid=$(echo "$out" | grep -E '^[0-9]+$' | head -n1)
[ "$(echo "$out" | grep -cx "$jobid")" = "$ntasks" ] || { echo "$out" >&2; fail "$LOGDIR/slurmd.log" "smoke job: expected $ntasks tasks"; }
state_of() { timeout 10 sacct -j "$jobid" -n -X -P -o State 2>/dev/null | head -n1; }
# The job's end reaches the accounting DB asynchronously (usually well under a second).
wait_for 30 bash -c "[ \"\$(sacct -j $jobid -n -X -P -o State 2>/dev/null | head -n1)\" = COMPLETED ]" \
  || fail "$LOGDIR/slurmdbd.log" "smoke job $jobid: sacct says '$(state_of)', not COMPLETED"
log "smoke job $jobid: $ntasks tasks ran, sacct COMPLETED"
log "up: partition debug, node localhost (CPUs=$CPUS, RealMemory=${REAL_MEM}MB, gpu:$FAKE_GPUS fake), cluster $CLUSTER"
