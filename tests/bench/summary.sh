#!/usr/bin/env bash
# tests/bench/summary.sh — the one table of rates and ratios that
# `scripts/bench` (all) prints at its end, read from what each benchmark
# printed in the same run.
#
# Usage: tests/bench/summary.sh RESULTS_DIR
#
# RESULTS_DIR holds NAME.txt, the output of each benchmark scripts/bench
# ran (engine, nng, repl, failover, persister, gateway, baselines); a
# figure whose benchmark did not run, or failed before printing it, shows
# as "n/a".  The ratios are the issues' targets: the gateway's holds/s
# through the whole grid against nginx's static reply (>= 25 %) and against
# the PostgreSQL conditional UPDATE that really sells (>= 2x); one nng hop
# to tixgrid-pu against a raw nng echo (>= 70 %); holds with one backup
# against none (>= 70 %, peak throughput over 64/256/1024 in flight); the drain's changes/s (>= 50,000).  Failover's
# median and max over its kills are printed as they are (the issue asks for
# the figures, within the failover window).
# shellcheck disable=SC2016  # the awk programs are single-quoted on purpose
set -euo pipefail

if (($# != 1)) || [[ ! -d $1 ]]; then
    echo "usage: tests/bench/summary.sh RESULTS_DIR" >&2
    exit 64
fi
dir=$1

# pick FILE AWK_PROGRAM: the program's output on FILE, or "n/a".
pick() {
    local v=''
    [[ -r $1 ]] && v=$(awk "$2" "$1" | tail -n 1)
    echo "${v:-n/a}"
}

engine=$(pick "$dir/engine.txt" '/^hold\+release, 1 seat +1 / { print $6 }')
# The last line of each is the medians'.
nng_echo=$(pick "$dir/nng.txt" '/^  echo \(raw nng REP\)/ { for (i = 1; i <= NF; i++) if ($i == "round") print $(i - 1) }')
nng_pu=$(pick "$dir/nng.txt" '/^  tixgrid-pu/ { for (i = 1; i <= NF; i++) if ($i == "round") print $(i - 1) }')
# repl.txt: the peaks of the medians over the levels in flight, and the
# ratio at the first level (64, latency-bound).
repl_none=$(pick "$dir/repl.txt" '/^  peak no backup/ { sub(/,$/, "", $4); print $4 }')
repl_one=$(pick "$dir/repl.txt" '/^  peak no backup/ { print $8 }')
repl_64=$(pick "$dir/repl.txt" '/^  ratio one backup\/none at/ { print $NF }')
failover=$(pick "$dir/failover.txt" '/^# failover over/ { sub(/.*: median /, "median "); sub(/ from SIGKILL.*/, ""); print }')
failover_kills=$(pick "$dir/failover.txt" '/^# failover over/ { print $4 }')
drained=$(pick "$dir/persister.txt" '/changes persisted\/s/ { gsub(/\*/, ""); print $5 }')
nginx=$(pick "$dir/gateway.txt" '/^  nginx static GET/ { print $4 }')
gw_rps=$(pick "$dir/gateway.txt" '/^  gateway hold\+release/ { print $3 }')
gw_hps=$(pick "$dir/gateway.txt" '/^  gateway hold\+release/ { print $6 }')
redis=$(pick "$dir/baselines.txt" '/^result / { sub(/.*redis=/, ""); print $1 }')
pgbench=$(pick "$dir/baselines.txt" '/^result / { sub(/.*pgbench=/, ""); print $1 }')

# ratio A B SCALE FORMAT: A / B * SCALE, or n/a.
ratio() {
    if [[ $1 == n/a || $2 == n/a ]]; then
        echo n/a
    else
        awk -v a="$1" -v b="$2" -v s="$3" -v f="$4" 'BEGIN { if (b > 0) printf f, a / b * s; else print "n/a" }'
    fi
}

# verdict VALUE TARGET: met, MISSED or n/a.
verdict() {
    [[ $1 == n/a ]] && { echo n/a; return; }
    awk -v v="${1%[%x]*}" -v t="$2" 'BEGIN { print (v + 0 >= t ? "met" : "MISSED") }'
}

row() { printf '| %-58s | %22s | %-34s |\n' "$@"; }

echo
echo "summary: one run on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
row "measurement" "rate /s" "ratio (target)"
row "----------------------------------------------------------" "----------------------" "----------------------------------"
row "engine: single-seat hold+release, 1 thread (seat ops)" "$engine" ""
row "nng hop: raw nng REQ/REP echo over ipc://" "$nng_echo" ""
p=$(ratio "$nng_pu" "$nng_echo" 100 '%.0f %%')
row "nng hop: tixgrid-pu hold/release (round trips)" "$nng_pu" "$p of echo (>= 70 %): $(verdict "$p" 70)"
row "replication: hold/release, no backup (peak round trips)" "$repl_none" ""
p=$(ratio "$repl_one" "$repl_none" 100 '%.0f %%')
row "replication: the same with one backup (peak)" "$repl_one" "$p of none (>= 70 %): $(verdict "$p" 70)"
row "  same, at 64 in flight (latency-bound)" "" "$repl_64 of none"
[[ $failover_kills == n/a ]] || failover_kills+=" kills"
row "failover: SIGKILL to first hold on the new primary" "$failover_kills" "$failover"
row "persister: a backlog drained into PostgreSQL (changes)" "$drained" "(>= 50000): $(verdict "$drained" 50000)"
row "nginx static reply (HTTP ceiling, wrk)" "$nginx" ""
p=$(ratio "$gw_hps" "$nginx" 100 '%.1f %%')
row "gateway holds through the grid (1 backup, persister; wrk)" "$gw_hps" "$p of nginx (>= 25 %): $(verdict "$p" 25)"
row "  same run, requests (holds + releases)" "$gw_rps" ""
row "Redis SET NX EX seat locks (redis-benchmark, -P 1)" "$redis" "$(ratio "$gw_hps" "$redis" 1 '%.2f x') (gateway holds / Redis)"
p=$(ratio "$gw_hps" "$pgbench" 1 '%.2f x')
row "PostgreSQL UPDATE ... WHERE status = FREE (pgbench, sells)" "$pgbench" "$p (>= 2 x): $(verdict "$p" 2)"
