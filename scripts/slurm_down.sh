#!/usr/bin/env bash
# Stops the one-node Slurm cluster started by scripts/slurm_up.sh (for CI and `make slurm-down`):
# cancels every job, then stops slurmd, slurmctld, slurmdbd, MariaDB and munged, in the reverse order of
# their start, and checks that none of their processes is left. Packages, configs, the accounting DB and
# slurmctld's state (job ids keep counting) stay, so the next slurm_up.sh is quick.
# Idempotent: fine when nothing, or only part of it, is running. Exit non-zero if something survives.
set -euo pipefail

RUNDIR=/run/slurm
PROCS=(slurmstepd slurmd slurmctld slurmdbd mysqld_safe mariadbd-safe mariadbd mysqld munged)

log() { echo "[slurm-down] $*"; }
[ "$(id -u)" = 0 ] || { echo "[slurm-down] must run as root" >&2; exit 1; }

# pids_of NAME: pids of live processes with exactly that name (never a pattern match on command lines).
# Zombies are skipped: daemons are reparented to PID 1, and a container's PID 1 may be slow to reap.
pids_of() {
  local p
  for p in $(pgrep -x "$1" || true); do
    [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] || echo "$p"
  done
}
# gone PID...: true when none of the pids is alive (exited, or a zombie waiting to be reaped).
gone() {
  local p st
  for p in "$@"; do
    st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null || true)
    [ -z "$st" ] || [ "$st" = Z ] || return 1
  done
}
# stop NAME [PIDFILE] [quiet]: SIGTERM the daemon (pid file first, exact process name as fallback),
# wait up to 30 s, then SIGKILL what is left. "quiet": say nothing when it was not running.
stop() {
  local name=$1 pidfile=${2:-} quiet=${3:-} pids=() p
  if [ -n "$pidfile" ] && [ -s "$pidfile" ]; then
    # Only if that pid is still this daemon (a stale pid file may name a recycled pid).
    p=$(cat "$pidfile")
    if [[ "$p" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$name" ]; then pids+=("$p"); fi
  fi
  for p in $(pids_of "$name"); do [[ " ${pids[*]} " == *" $p "* ]] || pids+=("$p"); done
  if [ ${#pids[@]} -eq 0 ]; then [ -n "$quiet" ] || log "$name: not running"; return 0; fi
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  until gone "${pids[@]}"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$name: still alive after 30 s, SIGKILL"; kill -KILL "${pids[@]}" 2>/dev/null || true; sleep 1; break
    fi
    sleep 0.5
  done
  log "$name: stopped"
}

# 1. Jobs. Cancelled while slurmctld and slurmdbd are still up, so their end is recorded (sacct shows
#    CANCELLED) rather than left RUNNING in the accounting DB.
if command -v squeue >/dev/null && timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
  mapfile -t jobs < <(timeout 10 squeue -h -o %A 2>/dev/null || true)
  if [ ${#jobs[@]} -gt 0 ]; then
    log "cancelling ${#jobs[@]} job(s): ${jobs[*]}"
    timeout 10 scancel "${jobs[@]}" 2>/dev/null || true
    # KillWait is 5 s; give the node time to kill the steps and report the end.
    for _ in $(seq 1 40); do
      [ -z "$(timeout 10 squeue -h -t PD,R,CG,S -o %A 2>/dev/null)" ] && break
      sleep 0.5
    done
  else
    log "no jobs"
  fi
fi

# 2. Slurm daemons: node first (it reports to the controller), then the controller (which flushes its
#    pending accounting messages to slurmdbd on the way down), then slurmdbd.
stop slurmd "$RUNDIR/slurmd.pid"
stop slurmstepd
stop slurmctld "$RUNDIR/slurmctld.pid"
stop slurmdbd "$RUNDIR/slurmdbd.pid"

# 3. MariaDB: a clean shutdown through the server (mysqld_safe then exits on its own, it only restarts
#    a server that crashed); signals as fallback.
#    Process names differ between versions (mysqld/mariadbd, mysqld_safe/mariadbd-safe): try each.
if command -v mysqladmin >/dev/null && timeout 5 mysqladmin --protocol=socket -uroot ping >/dev/null 2>&1; then
  timeout 60 mysqladmin --protocol=socket -uroot shutdown >/dev/null 2>&1 || true
  # mysqld_safe notices the clean exit and ends by itself within a second or two.
  for _ in $(seq 1 20); do
    [ -z "$(pids_of mysqld_safe)$(pids_of mariadbd-safe)" ] && break
    sleep 0.5
  done
  log "mariadb: stopped (mysqladmin shutdown)"
else
  log "mariadb: not answering"
fi
stop mysqld_safe "" quiet
stop mariadbd-safe "" quiet
stop mariadbd /run/mysqld/mysqld.pid quiet
stop mysqld "" quiet

# 4. munged last: everything above authenticates through it.
stop munged /run/munge/munged.pid

# 5. Nothing of ours may be left.
left=""
for n in "${PROCS[@]}"; do
  p=$(pids_of "$n" | tr '\n' ' ')
  [ -z "$p" ] || left+="$n($p) "
done
if [ -n "$left" ]; then
  echo "[slurm-down] FAILED: still running: $left" >&2
  exit 1
fi
log "down: no slurm/mariadb/munge process left"
