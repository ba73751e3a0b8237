#!/usr/bin/env bash
# `make test-slurm`: a real one-node Slurm cluster on this machine, and the sweeps of
# docs/reliability.md run through it with Hydra's submitit launcher:
#   1. a neuron sweep of the digits zoo (2 units x 3 bands = 6 Slurm jobs),
#   2. a logistic slab sweep (2 jobs),
#   3. one longer job cancelled with `scancel` once it has saved a checkpoint, then resumed
#      (resume=<its run dir>) as a new Slurm job,
# each run checked (certified samples, an independent forward pass, metrics.json, status success)
# and collected with `feassample-summary`.
#
# Needs root: installs Debian's slurm-wlm and munge with apt when missing, writes slurm.conf and a
# munge key into a temp dir (nothing in /etc is used: SLURM_CONF points at the generated file,
# AuthInfo at a private munge socket, free ports are picked), starts munged, slurmctld and slurmd
# by hand (no systemd). Every process it started is stopped by PID when it exits, whatever
# happens, and the temp dir is removed.
#
#   scripts/slurm-local.sh [--keep DIR]     # --keep: copy the sweep directories and logs to DIR
#
# Exits 0 only when every check passed; prints a PASS/FAIL list at the end.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FEASSAMPLE_BIN:-$ROOT/.venv/bin}
KEEP=""
while [ $# -gt 0 ]; do
    case $1 in
        --keep) KEEP=${2:?--keep needs a directory}; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "slurm-local.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

START=$(date +%s)
say() { printf '[%4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts slurmctld/slurmd as root)"
[ -x "$BIN/feassample" ] || die "$BIN/feassample not found: run 'make setup' first"

# --- 1. packages --------------------------------------------------------------------------------
missing=()
command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    || missing+=(slurm-wlm)
command -v munged >/dev/null || missing+=(munge)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    apt-get update -q >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi
say "$(slurmctld -V), $(munged -V 2>&1 | awk '{print $1}')"

# --- 2. the temp dir, and stopping everything on exit --------------------------------------------
TMP=$(mktemp -d /tmp/feassample-slurm.XXXXXX) || die "mktemp failed"
chmod 755 "$TMP"    # munged wants its socket's directories searchable by all
mkdir -p "$TMP"/{munge,state,spool,log,sweeps}
LOGS=$TMP/log
SWEEPS=$TMP/sweeps
# Every process started below inherits this marker: the cleanup finds stray job steps by it.
export FEASSAMPLE_SLURM_TMP=$TMP
DAEMONS=()          # "name:pid", in start order
CLIENT_PID=""       # the Hydra client of the sweep in progress

stop_pid() {        # stop_pid NAME PID: SIGTERM, wait up to 15 s, then SIGKILL
    local name=$1 pid=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || { say "stopped $name (pid $pid)"; return 0; }; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null; say "killed $name (pid $pid) with SIGKILL"
}

ours() {            # the PIDs of live processes carrying our marker (job steps, their python)
    local p kv
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = "$$" ] && continue
        # bash builtins only: a helper process would carry the marker itself
        while IFS= read -r -d '' kv; do
            [ "$kv" = "FEASSAMPLE_SLURM_TMP=$TMP" ] && { echo "${p#/proc/}"; break; }
        done 2>/dev/null < "$p/environ"
    done
}

cleanup() {
    local rc=$? i entry pid
    trap - EXIT INT TERM
    say "cleaning up"
    if [ ${#DAEMONS[@]} -gt 0 ] && command -v scancel >/dev/null; then
        timeout 15 scancel --user="$(id -un)" 2>/dev/null   # this cluster's jobs only (SLURM_CONF is ours)
    fi
    [ -n "$CLIENT_PID" ] && stop_pid "hydra client (pid of its timeout wrapper)" "$CLIENT_PID"
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        entry=${DAEMONS[$i]}; stop_pid "${entry%%:*}" "${entry#*:}"
    done
    for pid in $(ours); do stop_pid "stray process $(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null | cut -c1-60)" "$pid"; done
    if [ -n "$KEEP" ] && [ -d "$SWEEPS" ]; then
        mkdir -p "$KEEP" && cp -a "$SWEEPS/." "$KEEP/" && cp -a "$LOGS" "$KEEP/log" \
            && say "sweep directories and logs copied to $KEEP"
    fi
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 3. munge -----------------------------------------------------------------------------------
dd if=/dev/urandom of="$TMP/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$TMP/munge/munge.key"
MUNGE_SOCKET=$TMP/munge/munge.socket
munged -F --key-file="$TMP/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$TMP/munge/munged.pid" --log-file="$LOGS/munged.log" \
    --seed-file="$TMP/munge/munged.seed" >>"$LOGS/munged.log" 2>&1 &
DAEMONS+=("munged:$!")
for _ in $(seq 1 20); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.5; done
[ -S "$MUNGE_SOCKET" ] || { tail -5 "$LOGS/munged.log"; die "munged did not create its socket"; }
say "munged up (pid ${DAEMONS[-1]#*:}, socket $MUNGE_SOCKET)"

# --- 4. slurm.conf for this machine --------------------------------------------------------------
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')
free_port() { "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port); SLURMD_PORT=$(free_port)
[ "$CTLD_PORT" != "$SLURMD_PORT" ] || SLURMD_PORT=$(free_port)
PARTITION=feassample
export SLURM_CONF=$TMP/slurm.conf
cat > "$SLURM_CONF" <<EOF
# One-node cluster for scripts/slurm-local.sh (written $(date -Is)); everything lives in $TMP.
ClusterName=feassample
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool/%n
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=300
InactiveLimit=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
say "slurm.conf: node $NODE, $CPUS CPUs, ${MEM_MB} MB, ports $CTLD_PORT/$SLURMD_PORT ($SLURM_CONF)"

# --- 5. slurmctld and slurmd -------------------------------------------------------------------
slurmctld -D -i >>"$LOGS/slurmctld.out" 2>&1 &
DAEMONS+=("slurmctld:$!")
for _ in $(seq 1 40); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.5; done
scontrol ping 2>/dev/null | grep -q UP || { tail -20 "$LOGS/slurmctld.log" "$LOGS/slurmctld.out"; die "slurmctld did not answer 'scontrol ping' within 20 s"; }
say "slurmctld up (pid ${DAEMONS[-1]#*:})"
slurmd -D >>"$LOGS/slurmd.out" 2>&1 &
DAEMONS+=("slurmd:$!")
state=""
for _ in $(seq 1 60); do
    state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null)
    [ "$state" = idle ] && break
    kill -0 "${DAEMONS[-1]#*:}" 2>/dev/null || break
    sleep 1
done
[ "$state" = idle ] || { tail -20 "$LOGS/slurmd.log" "$LOGS/slurmd.out" "$LOGS/slurmctld.log"; die "node $NODE is '${state:-absent}', not idle, 60 s after starting slurmd"; }
say "slurmd up (pid ${DAEMONS[-1]#*:}); sinfo: $(sinfo -h -o '%P %a %D %t %C')"

# --- 6. the sweeps ------------------------------------------------------------------------------
RESULTS=()
record() { # record NAME RC
    if [ "$2" = 0 ]; then RESULTS+=("PASS  $1"); else RESULTS+=("FAIL  $1"); fi
}
SLURM_ARGS=(hydra/launcher=submitit_slurm "hydra.launcher.partition=$PARTITION"
            hydra.launcher.timeout_min=10 hydra.launcher.cpus_per_task=1 threads=1 progress=false)
cd "$ROOT" || die "cannot cd to $ROOT"

sweep() { # sweep NAME TIMEOUT_S OVERRIDES...: one blocking multirun into $SWEEPS/NAME
    local name=$1 limit=$2 t0 rc; shift 2
    t0=$(date +%s)
    # In the background: `wait` lets a Ctrl-C or SIGTERM reach the cleanup at once.
    timeout "$limit" "$BIN/feassample" -m "$@" "${SLURM_ARGS[@]}" "hydra.sweep.dir=$SWEEPS/$name" \
        >"$LOGS/$name.log" 2>&1 &
    CLIENT_PID=$!
    wait $CLIENT_PID
    rc=$?
    CLIENT_PID=""
    say "sweep $name: exit $rc after $(( $(date +%s) - t0 )) s ($(ls -d "$SWEEPS/$name"/[0-9]* 2>/dev/null | wc -l) run dirs)"
    [ $rc = 0 ] || tail -25 "$LOGS/$name.log"
    return $rc
}

check_runs() { # check_runs N DIR...: certified samples, metrics.json, status success
    local n=$1; shift
    "$BIN/python" "$ROOT/scripts/check_sweep.py" --n "$n" "$@"
}

N=40
say "neuron sweep: classifier.fc2 units 3,5 x bands [8,12],[4,6],[0,2], n=$N (6 Slurm jobs)"
sweep neuron 900 problem=neuron problem.units.0.layer=classifier.fc2 problem.units.0.unit=3,5 \
    'problem.units.0.band=[8,12],[4,6],[0,2]' sampler.n=$N
record "neuron sweep: 6 Slurm jobs ran and exited 0" $?
runs=("$SWEEPS"/neuron/[0-5])
[ ${#runs[@]} = 6 ] && check_runs $N "${runs[@]}"
record "neuron sweep: 6 runs certified, in band by an independent forward pass, status success" $?

say "slab sweep: problem=logistic problem.z1=0.5,0.8, n=$N (2 Slurm jobs)"
sweep slab 600 problem=logistic problem.z1=0.5,0.8 sampler.n=$N
record "slab sweep: 2 Slurm jobs ran and exited 0" $?
runs=("$SWEEPS"/slab/[0-1])
[ ${#runs[@]} = 2 ] && check_runs $N "${runs[@]}"
record "slab sweep: 2 runs certified, in band by sigmoid(w.x + c), status success" $?

# A longer job, cancelled once it has saved its walk state and 5 shards of accepted samples.
LONG_N=2000
LONG=(problem=neuron sampler=cover sampler.n=$LONG_N)   # a mechanics test: the walk streams rows for long enough
say "cancel test: problem=neuron sampler=cover sampler.n=$LONG_N as one Slurm job, scancel once it has checkpointed"
timeout 600 "$BIN/feassample" -m "${LONG[@]}" "${SLURM_ARGS[@]}" "hydra.sweep.dir=$SWEEPS/cancelled" \
    >"$LOGS/cancelled.log" 2>&1 &
CLIENT_PID=$!
RUN=$SWEEPS/cancelled/0
job=""; shards=0
for _ in $(seq 1 360); do
    job=$(squeue -h -t RUNNING -o %A 2>/dev/null | head -1)
    shards=$(ls "$RUN"/checkpoint/shards/*.pt 2>/dev/null | wc -l)
    [ -n "$job" ] && [ "$shards" -ge 5 ] \
        && [ -e "$RUN/checkpoint/state.pt" ] && break
    kill -0 "$CLIENT_PID" 2>/dev/null || break
    sleep 0.5
done
cancelled=1
if [ -n "$job" ] && [ "$shards" -ge 5 ]; then
    scancel "$job"
    say "scancel $job: its run dir had $shards sample shard(s) and $(ls "$RUN"/checkpoint | tr '\n' ' ')"
    for _ in $(seq 1 60); do [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break; sleep 0.5; done
    # Without slurmdbd `sacct` is unavailable, so submitit cannot learn that the job was
    # cancelled and its Hydra client would wait forever: stop it (by PID) once the job is gone.
    stop_pid "hydra client of the cancelled sweep" "$CLIENT_PID"; CLIENT_PID=""
    # scancel sends SIGTERM: the driver finishes the round in progress, saves, and the run ends
    # with status "interrupted" (or, killed harder, leaves only its checkpoint)
    status=$(grep -o '"status": "[a-z]*"' "$RUN/metrics.json" 2>/dev/null | head -1)
    if [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && { [ -z "$status" ] || [ "$status" = '"status": "interrupted"' ]; }; then
        cancelled=0
        say "job $job is gone, stopped mid-run (${status:-no metrics.json})"
    fi
else
    say "the long job never ran with a checkpoint (job='$job', shards=$shards)"; tail -25 "$LOGS/cancelled.log"
fi
record "scancel: a running job stopped mid-run after its checkpoint was written" $cancelled

resumed=1
if [ $cancelled = 0 ]; then
    say "resume: ${LONG[*]} resume=$RUN as a new Slurm job"
    sweep resumed 600 "${LONG[@]}" "resume=$RUN" \
        && check_runs $LONG_N --resumed "$SWEEPS/resumed/0"
    resumed=$?
fi
record "resume: the cancelled run resumed under Slurm, $LONG_N certified samples, status success" $resumed

# A sharded job: 3 independent Slurm jobs (one array) whose union is one sample, merged and certified.
say "sharded job: problem=logistic problem.d=64 sampler.n=300 as shards=3 'shard=range(3)' (a Slurm array)"
sweep sharded 600 problem=logistic problem.d=64 sampler.n=300 shards=3 'shard=range(3)'
sharded=$?
if [ $sharded = 0 ]; then
    "$BIN/feassample-merge" "$SWEEPS/sharded" --out "$SWEEPS/sharded-merged" | sed 's/^/    /'
    sharded=${PIPESTATUS[0]}
    [ $sharded = 0 ] && "$BIN/python" -c "import sys, feassample as fs; s = fs.SampleSet.load(sys.argv[1]); sys.exit(0 if len(s) == 300 and bool(s.feasible.all()) else 1)" "$SWEEPS/sharded-merged"
    sharded=$((sharded + $?))
fi
record "shards: 3 array jobs merged by feassample-merge into 300 samples, certified again" $sharded

# --- 7. collect the sweeps -----------------------------------------------------------------------
summary=0
for name in neuron slab resumed; do
    [ -d "$SWEEPS/$name" ] || { summary=1; continue; }
    rm -f "$SWEEPS/$name"/summary.{md,csv,png}   # written again by the command, from the run dirs
    say "feassample-summary $SWEEPS/$name"
    "$BIN/feassample-summary" "$SWEEPS/$name" | sed 's/^/    /' || summary=1
    [ -s "$SWEEPS/$name/summary.md" ] && [ -s "$SWEEPS/$name/summary.png" ] || summary=1
done
[ "$(grep -c '^| [0-9]' "$SWEEPS/neuron/summary.md" 2>/dev/null)" = 6 ] || summary=1
record "feassample-summary: a table and summary.png per sweep (6 neuron rows)" $summary

# --- 8. verdict ---------------------------------------------------------------------------------
echo
echo "slurm-local: $(( $(date +%s) - START )) s"
printf '  %s\n' "${RESULTS[@]}"
for r in "${RESULTS[@]}"; do
    case $r in FAIL*) echo "slurm-local: FAILED (logs were in $LOGS; rerun with --keep DIR to keep the sweeps)"; exit 1 ;; esac
done
echo "slurm-local: all ${#RESULTS[@]} checks passed"
