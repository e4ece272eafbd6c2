#!/usr/bin/env bash
# tests/bench/baselines.sh — the designs the seeds used to sell a seat,
# measured on this machine in one run, as baselines for the grid:
#
#   1. Redis seat locks: `SET seat:N USER NX EX 600` with redis-benchmark,
#      no pipelining (-P 1), CONNECTIONS clients, random seats of a
#      100,000-seat concert: each reply is a lock taken or refused, one round
#      trip each, as a shopper's hold would be.  redis-server on a free
#      loopback port, no persistence (a lock store, not the record).
#   2. A PostgreSQL conditional UPDATE that really sells: a private
#      PostgreSQL 15 cluster (fsync and synchronous_commit on, as a system of
#      record runs), a seats table of SEATS rows, and pgbench with CONNECTIONS
#      clients each running
#          UPDATE seats SET status = 'SOLD', holder = :client_id
#           WHERE seat_id = :id AND status = 'FREE'
#      for a random seat, committed on its own.  A seat sells once; a later
#      update of it changes no row, as a buyer who lost the race.  The rate
#      is transactions per second; the seats really sold are counted after.
#
# Usage: tests/bench/baselines.sh [--seconds N] [--connections N] [--seats N]
# Prints one line per baseline and a last line `result redis=R pgbench=P
# pg_sold=S` for scripts/bench.  Run as root (PostgreSQL runs as the postgres
# user); needs redis-server, redis-benchmark (scripts/bootstrap --bench) and
# PostgreSQL 15's initdb, pg_ctl and pgbench.  Everything it starts is on
# loopback or a Unix socket in a temporary folder, and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=10 connections=64 seats=1000000
while (($# > 0)); do
    case $1 in
        --seconds | --connections | --seats)
            [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "baselines: $1 wants a positive number" >&2; exit 64; }
            declare "${1#--}=$2"
            shift 2
            ;;
        *) echo "usage: tests/bench/baselines.sh [--seconds N] [--connections N] [--seats N]" >&2; exit 64 ;;
    esac
done

fail() {
    echo "baselines: $*" >&2
    exit 1
}

((EUID == 0)) || fail "run as root (PostgreSQL runs as the postgres user)"
pg_bin=/usr/lib/postgresql/15/bin
for tool in redis-server redis-benchmark "$pg_bin/initdb" "$pg_bin/pg_ctl" "$pg_bin/pgbench"; do
    command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/bootstrap --bench"
done

tmp=$(mktemp -d /var/tmp/tixgrid-baselines-XXXXXX)
chmod 0755 "$tmp"
redis_pid=''
pg_started=0
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n $redis_pid ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    if ((pg_started)); then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$tmp/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if ((status == 0)); then
        rm -rf "$tmp"
    else
        echo "baselines: logs kept in $tmp" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    local port
    for port in $(shuf -i 20000-59999 -n 200); do
        if [[ -z $(ss -Hltn "sport = :$port") ]]; then
            echo "$port"
            return 0
        fi
    done
    fail "no free TCP port found"
}

# ---- Redis ---------------------------------------------------------------------------

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$tmp/redis.log" --dir "$tmp" &
redis_pid=$!
for ((i = 0; i < 50; i++)); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$redis_port" ping >/dev/null 2>&1 || fail "redis-server did not start (see $tmp/redis.log)"

# redis-benchmark counts requests, not time: size the run to about SECONDS
# from a short probe.
redis_run() {
    redis-benchmark -p "$redis_port" -c "$connections" -n "$1" -r 100000 -P 1 --csv \
        SET seat:__rand_int__ user NX EX 600 2>/dev/null | awk -F'"' 'NR == 2 { print $4 }'
}
probe=$(redis_run 20000)
[[ $probe =~ ^[0-9.]+$ ]] || fail "redis-benchmark gave no rate"
redis_rps=$(redis_run "$(awk -v r="$probe" -v s="$seconds" 'BEGIN { printf "%d", r * s }')")
locked=$(redis-cli -p "$redis_port" dbsize)
printf 'redis SET NX EX (redis-benchmark -c %s -P 1)   %10.0f requests/s   (%s seats locked)\n' \
    "$connections" "$redis_rps" "$locked"

# ---- PostgreSQL ------------------------------------------------------------------------

mkdir -p "$tmp/pg"
chown postgres: "$tmp/pg"
runuser -u postgres -- "$pg_bin/initdb" -D "$tmp/pg/data" -A trust -U postgres >"$tmp/initdb.log" 2>&1 ||
    fail "initdb failed (see $tmp/initdb.log)"
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/postgres.log" -w \
    -o "-k $tmp/pg -c listen_addresses= -c max_connections=$((connections + 10)) -c fsync=on -c synchronous_commit=on" \
    start >/dev/null || fail "PostgreSQL did not start (see $tmp/pg/postgres.log)"
pg_started=1
psql_q() { runuser -u postgres -- psql -X -q -h "$tmp/pg" -d postgres -v ON_ERROR_STOP=1 "$@"; }
psql_q <<SQL >/dev/null
CREATE TYPE seat_status AS ENUM ('FREE', 'SELECTED', 'RESERVED', 'SOLD', 'BLOCKED');
CREATE TABLE seats (seat_id integer PRIMARY KEY, status seat_status NOT NULL DEFAULT 'FREE',
                    holder integer);
INSERT INTO seats (seat_id) SELECT generate_series(1, $seats);
VACUUM ANALYZE seats;
SQL
cat >"$tmp/sell.sql" <<SQL
\\set id random(1, $seats)
UPDATE seats SET status = 'SOLD', holder = :client_id WHERE seat_id = :id AND status = 'FREE';
SQL
chmod 0644 "$tmp/sell.sql"
threads=$(nproc)
runuser -u postgres -- "$pg_bin/pgbench" -h "$tmp/pg" -n -c "$connections" -j "$threads" \
    -T "$seconds" -f "$tmp/sell.sql" postgres >"$tmp/pgbench.txt" 2>&1 ||
    fail "pgbench failed (see $tmp/pgbench.txt)"
pg_tps=$(awk '/^tps = / { print $3; exit }' "$tmp/pgbench.txt")
[[ $pg_tps =~ ^[0-9.]+$ ]] || fail "pgbench gave no rate (see $tmp/pgbench.txt)"
sold=$(psql_q -At -c "SELECT count(*) FROM seats WHERE status = 'SOLD'")
printf 'PostgreSQL UPDATE ... WHERE status = FREE (pgbench -c %s, fsync on) %10.0f sales/s   (%s seats sold)\n' \
    "$connections" "$pg_tps" "$sold"
printf 'result redis=%.0f pgbench=%.0f pg_sold=%s\n' "$redis_rps" "$pg_tps" "$sold"
