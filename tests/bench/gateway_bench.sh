#!/usr/bin/env bash
# tests/bench/gateway_bench.sh — requests per second and latency through the
# whole grid (HTTP → tixgrid-gateway → tixgrid-pu, the persister draining
# into PostgreSQL), beside nginx answering a static reply on the same
# machine in the same run.
#
# Usage: tests/bench/gateway_bench.sh BUILD_DIR [--seconds N] [--rounds N]
#                                     [--connections N] [--rate N]
#                                     [--background-nice N]
#                                     [--mode all|steady|sellout] [--buyers N]
#                                     [--event ID]
#
# --mode steady: only the issue's steady check on the grid: tixgrid-load
# hold-release at RATE holds/s (each released at once) for SECONDS, open
# loop; met when p99 < 10 ms and no request failed.
# --mode sellout: only the sell-out check: BUYERS virtual buyers (tixgrid-load
# sellout, all arriving within the first second) buy the 100,000-seat
# concert (or the demo event --event names: 3 is the 1,130-seat hall, for a
# short run) through the sandbox; met when it sold out, no seat was sold
# twice and the audit (--db) found PostgreSQL holding every sale within 10 s
# of the last one.
#
# --background-nice N runs PostgreSQL and the persister at nice N (default 0:
# as started).  On two shared cores a burst then goes to the seat path first
# and the write-behind catches up after it, as it would on machines of its
# own; the catch-up time printed after each round says what that deferred.
#
# scripts/bench runs it as the `gateway` benchmark (BUILD_DIR build-bench/,
# where tixgrid-load is); it is never a test.  Run as root: scripts/demo
# runs PostgreSQL as the postgres user.
#
#  1. The grid: scripts/demo in a folder of its own under /var/tmp, with
#     free loopback ports for PostgreSQL and the gateway, its units named
#     bench<pid>-pu1/-pu2 (TIXGRID_DEMO_PU_PREFIX: a demo already running on
#     the machine keeps its units and segments), and the gateway with the
#     demo's loop threads: half the cores, at least one (scripts/demo says
#     why; TIXGRID_GATEWAY_THREADS chooses another number).  The grid's
#     programs are scripts/demo's build/ (debugoptimized: -O2, assertions
#     on).
#     `tixgrid-persister seed-users` makes the load users
#     (userN@load.tixgrid, password load-test-1, persister/README.md).
#  2. nginx (nginx-light): worker_processes = cores, access_log off,
#     `return 200 '{"status":"ok"}'` on a loopback port, started as root
#     with its configuration, pid file, error log and temp paths in the
#     same temporary folder.
#  3. Throughput, closed loop: wrk -t CORES -c CONNECTIONS -d SECONDS.
#     After an unmeasured 3 s run on the gateway, ROUNDS rounds, each nginx
#     (GET /) then the gateway (tests/bench/hold_release.lua: single-seat
#     holds and the release of each, every wrk thread with its own user, a
#     booking per connection and its own seats, fresh each round); medians.
#     The CPU time (user + system) of the grid's processes and of nginx
#     during the rounds, per request answered, is printed too: unlike
#     requests/s it hardly depends on what else the machine runs.
#     After each gateway round, the time until the write-behind is idle
#     again (the drain's offsets in PostgreSQL stop moving and the gateway's
#     audit queue is empty): what the round left PostgreSQL to catch up.
#  4. Latency, open loop: tixgrid-load at RATE requests/s (RATE/2 holds/s,
#     each released at once, tests/load/README.md) on the gateway for
#     SECONDS after 2 s of warm-up, then the same rate of GET / on nginx as
#     the floor this machine gives.
#  5. Teardown, also on failure or Ctrl-C (trap): nginx by its pid file,
#     the grid by `scripts/demo reset` with the same environment, then the
#     folder.  After a failure the grid's logs are kept and named.
#
# A run is valid only if every request was answered 2xx: failed requests
# are printed and make the script exit 1.  Targets (printed, not enforced):
# the gateway's requests/s at least 25 % of nginx's, and p99 under 5 ms at
# 10,000 requests/s.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd -P)

usage="usage: tests/bench/gateway_bench.sh BUILD_DIR [--seconds N] [--rounds N] [--connections N] [--rate N] [--background-nice N] [--mode all|steady|sellout] [--buyers N] [--event ID]"
(($# >= 1)) || { echo "$usage" >&2; exit 64; }
build=$1
shift
seconds=10 rounds=3 connections=64 rate=10000 background_nice=0 mode=all buyers=10000 event=1
while (($# > 0)); do
    case $1 in
        --mode)
            [[ ${2:-} =~ ^(all|steady|sellout)$ ]] || { echo "gateway_bench: --mode is all, steady or sellout" >&2; exit 64; }
            mode=$2
            shift 2
            ;;
        --background-nice)
            if [[ ! ${2:-} =~ ^[0-9]+$ ]] || (($2 > 19)); then
                echo "gateway_bench: $1 wants 0..19" >&2
                exit 64
            fi
            background_nice=$2
            shift 2
            ;;
        --seconds | --rounds | --connections | --rate | --buyers | --event)
            [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "gateway_bench: $1 wants a positive number" >&2; exit 64; }
            declare "${1#--}=$2"
            shift 2
            ;;
        *) echo "$usage" >&2; exit 64 ;;
    esac
done

load_bin=$root/$build/tests/load/tixgrid-load
persister_bin=$root/build/persister/tixgrid-persister # scripts/demo's build
cores=$(nproc)
password=load-test-1 # persister/README.md, "Load-test users"
partition_base=$((1 << 32)) # API seat id of seat 0 of the demo concert (partition 1)
wrk_seats=4000              # seats per wrk thread and round
warmup_seat=40000           # the warm-up's seats (wrk threads x wrk_seats from here)
steady_seat=50000           # the open-loop run's seats: 50,000.. of the concert
steady_seats=10000

fail() {
    echo "gateway_bench: $*" >&2
    exit 1
}

((EUID == 0)) || fail "run as root (scripts/demo runs PostgreSQL as the postgres user)"
for tool in wrk nginx curl python3; do
    command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/bootstrap --bench"
done
[[ -x $load_bin ]] || fail "$load_bin is not built (scripts/bench builds it)"
grep -q TIXGRID_DEMO_PU_PREFIX scripts/demo ||
    fail "scripts/demo cannot name its units per folder (TIXGRID_DEMO_PU_PREFIX): a second demo would take another demo's units"
((connections >= cores)) || fail "--connections must be at least the $cores wrk threads"
((rounds * cores * wrk_seats <= warmup_seat && warmup_seat + cores * wrk_seats <= steady_seat)) ||
    fail "--rounds $rounds: the rounds' seats would reach the warm-up's (seat $warmup_seat)"

# ---- Temporary folder, ports, teardown -------------------------------------------

tmp=$(mktemp -d /var/tmp/tixgrid-bench-gw-XXXXXX)
chmod 0755 "$tmp" # the postgres user reaches the demo folder inside
nginx_dir=$tmp/nginx
ok=0
export TIXGRID_DEMO_DIR=$tmp/demo

nginx_stop() {
    local pid_file=$nginx_dir/nginx.pid pid waited=0
    [[ -s $pid_file ]] || return 0
    pid=$(<"$pid_file")
    # Ours only: the master started with this folder's configuration.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$nginx_dir/nginx.conf" || return 0
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null && ((waited++ < 50)); do
        sleep 0.1
    done
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    nginx_stop
    if [[ -d $TIXGRID_DEMO_DIR ]]; then
        if ((!ok)) && [[ -d $TIXGRID_DEMO_DIR/logs ]]; then
            cp -r "$TIXGRID_DEMO_DIR/logs" "$tmp/grid-logs"
        fi
        scripts/demo reset >>"$tmp/demo.log" 2>&1 ||
            echo "gateway_bench: scripts/demo reset failed (see $tmp/demo.log)" >&2
    fi
    if ((ok)); then
        rm -rf "$tmp"
    else
        echo "gateway_bench: logs kept in $tmp (grid-logs/, demo.log, nginx/, wrk and load outputs)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_port VAR: sets VAR to a TCP port no socket uses and that no earlier
# call gave, from a random start below the kernel's ephemeral range (so
# that the load's own outgoing connections cannot take it meanwhile).
taken_ports=" "
free_port() {
    local port low
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range
    for port in $(shuf -i 10000-$((low - 1)) -n 200); do
        if [[ $taken_ports != *" $port "* && -z $(ss -Htan "sport = :$port") ]]; then
            taken_ports+="$port "
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    fail "no free TCP port found"
}

export TIXGRID_DEMO_PG_PORT TIXGRID_DEMO_LISTEN TIXGRID_DEMO_SANDBOX_LISTEN TIXGRID_DEMO_PU_PREFIX=bench$$
gateway_port='' nginx_port='' sandbox_port=''
free_port TIXGRID_DEMO_PG_PORT
free_port gateway_port
free_port nginx_port
free_port sandbox_port
TIXGRID_DEMO_LISTEN=127.0.0.1:$gateway_port
TIXGRID_DEMO_SANDBOX_LISTEN=127.0.0.1:$sandbox_port

# ---- The grid and its users --------------------------------------------------------

conninfo="host=$TIXGRID_DEMO_DIR port=$TIXGRID_DEMO_PG_PORT dbname=tixgrid user=postgres"
gateway_url=http://127.0.0.1:$gateway_port
sandbox_url=http://127.0.0.1:$sandbox_port
sellout_users=50 # accounts the buyers share (each logged in once, argon2id)

grid_start() {
    echo "starting the grid (scripts/demo, units $TIXGRID_DEMO_PU_PREFIX-pu1/-pu2, gateway on :$gateway_port)"
    if ! scripts/demo start >"$tmp/demo.log" 2>&1; then
        tail -n 20 "$tmp/demo.log" >&2
        fail "scripts/demo start failed"
    fi
    local threads
    threads=$(tr '\0' '\n' <"/proc/$(<"$TIXGRID_DEMO_DIR/pids/gateway.pid")/cmdline" | grep -A1 -x -- --threads | tail -n 1)
    echo "  the gateway runs ${threads:-?} loop thread(s) on this machine's $cores cores"
    "$persister_bin" --db "$conninfo" seed-users $((cores + 1 > sellout_users ? cores + 1 : sellout_users)) >>"$tmp/demo.log" 2>&1 ||
        fail "seed-users failed (see $tmp/demo.log)"
}

# api METHOD PATH TOKEN BODY FIELD: one call to the gateway (TOKEN may be
# empty); prints FIELD of the JSON answer.
api() {
    local answer auth=()
    [[ -z $3 ]] || auth=(-H "Authorization: Bearer $3")
    answer=$(curl -sS --max-time 10 -X "$1" -H 'Content-Type: application/json' "${auth[@]}" \
        -d "$4" -w '\n%{http_code}' "$gateway_url$2") || fail "$1 $2: no answer"
    [[ ${answer##*$'\n'} == 2?? ]] || fail "$1 $2 answered ${answer##*$'\n'}: ${answer%$'\n'*}"
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "${answer%$'\n'*}" "$5"
}

login() {
    api POST /api/auth/login "" "{\"email\":\"user$1@load.tixgrid\",\"password\":\"$password\"}" token
}

# ---- nginx -----------------------------------------------------------------------------

nginx_start() {
    mkdir -p "$nginx_dir"
    cat >"$nginx_dir/nginx.conf" <<EOF
# The ceiling: the cheapest answer this machine's HTTP stack gives.
worker_processes $cores;
pid $nginx_dir/nginx.pid;
error_log $nginx_dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $nginx_dir/body;
    proxy_temp_path $nginx_dir/proxy;
    fastcgi_temp_path $nginx_dir/fastcgi;
    uwsgi_temp_path $nginx_dir/uwsgi;
    scgi_temp_path $nginx_dir/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        location / {
            default_type application/json;
            return 200 '{"status":"ok"}';
        }
    }
}
EOF
    nginx -p "$nginx_dir" -c "$nginx_dir/nginx.conf" -e "$nginx_dir/error.log" 2>"$nginx_dir/start.log" ||
        fail "nginx did not start: $(tail -n 3 "$nginx_dir/start.log")"
    local code waited=0
    until code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$nginx_port/") && [[ $code == 200 ]]; do
        ((waited++ < 50)) || fail "nginx does not answer on :$nginx_port (see $nginx_dir/error.log)"
        sleep 0.1
    done
}

# ---- Measurements ----------------------------------------------------------------------

# wrk_figures FILE: "requests/s p50_us p99_us" from wrk --latency output.
wrk_figures() {
    awk '
        function us(v) {
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return v * 1000
            if (v ~ /s$/) return v * 1000000
            return v
        }
        /^Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = us($2) }
        /^ +99%/ { p99 = us($2) }
        END { printf "%s %.0f %.0f\n", rps, p50, p99 }' "$1"
}

# wrk_errors FILE: socket errors and non-2xx/3xx answers wrk counted itself.
wrk_errors() {
    awk '
        /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { n += $NF }
        END { print n + 0 }' "$1"
}

# ---- CPU per request -------------------------------------------------------------------
# The CPU time (user + system, every thread) each part used during the
# closed-loop rounds, over the requests answered: what a request costs,
# whatever else the machine runs.  wrk's own share is not counted.

grid_parts=(gateway units persister postgres)
declare -A cpu_ticks_used=() cpu_requests=()
clock_ticks=$(getconf CLK_TCK)

# part_pids PART: the pids of PART's processes now.
part_pids() {
    local main
    case $1 in
        gateway | persister) cat "$TIXGRID_DEMO_DIR/pids/$1.pid" ;;
        units) cat "$TIXGRID_DEMO_DIR/pids/$TIXGRID_DEMO_PU_PREFIX"-pu[12].pid ;;
        postgres | nginx)
            [[ $1 == nginx ]] && main=$(<"$nginx_dir/nginx.pid") || main=$(<"$TIXGRID_DEMO_DIR/pids/postgres.pid")
            echo "$main"
            pgrep -P "$main" || true
            ;;
    esac
}

# part_ticks PART: clock ticks PART's processes used so far (fields 14 and
# 15 of /proc/PID/stat, counted after the command name).
part_ticks() {
    local pid total=0
    for pid in $(part_pids "$1"); do
        [[ -r /proc/$pid/stat ]] || continue
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}

# cpu_count PART... -- COMMAND...: runs COMMAND, which sets `requests` to
# the requests answered, and charges them and the ticks each PART used
# meanwhile to the PART.
requests=0
cpu_count() {
    local part parts=() ticks
    declare -A before=()
    while [[ $1 != -- ]]; do
        parts+=("$1")
        before[$1]=$(part_ticks "$1")
        shift
    done
    shift
    "$@"
    for part in "${parts[@]}"; do
        ticks=$(part_ticks "$part")
        cpu_ticks_used[$part]=$((${cpu_ticks_used[$part]:-0} + ticks - ${before[$part]}))
        cpu_requests[$part]=$((${cpu_requests[$part]:-0} + requests))
    done
}

# cpu_us PART: microseconds of CPU per request.
cpu_us() {
    awk -v t="${cpu_ticks_used[$1]:-0}" -v hz="$clock_ticks" -v n="${cpu_requests[$1]:-0}" \
        'BEGIN { printf "%.0f", (n > 0 ? t * 1e6 / hz / n : 0) }'
}

# ---- Rounds ----------------------------------------------------------------------------

nginx_round() {
    cpu_count nginx -- nginx_wrk "$1"
}

nginx_wrk() {
    local out=$tmp/wrk-nginx-$1.txt
    wrk -t "$cores" -c "$connections" -d "${seconds}s" --latency \
        "http://127.0.0.1:$nginx_port/" >"$out" 2>&1 || fail "wrk on nginx failed (see $out)"
    (($(wrk_errors "$out") == 0)) || fail "wrk on nginx saw errors (see $out)"
    requests=$(awk '/ requests in / { print $1 }' "$out")
    read -r rps p50 p99 < <(wrk_figures "$out")
    nginx_rps+=("$rps") nginx_p50+=("$p50") nginx_p99+=("$p99")
    printf '  round %s  nginx    %10.0f requests/s                    p50 %6s us  p99 %6s us\n' \
        "$1" "$rps" "$p50" "$p99"
}

# gateway_wrk OUT SEAT_FIRST SECONDS: wrk with hold_release.lua on the
# gateway, with fresh bookings (one per connection and one for wrk's check of
# the script: hold_release.lua has at most one hold in flight per booking)
# and, for each wrk thread, wrk_seats seats from SEAT_FIRST on.  Sets rps,
# hps (holds/s), p50, p99, requests (answered), failed (non-2xx and socket
# errors), statuses.
gateway_wrk() {
    local out=$1 seat_first=$2 args=() t k ids per_thread line holds secs
    per_thread=$(((connections + cores - 1) / cores + 1))
    for ((t = 0; t < cores; t++)); do
        ids=()
        for ((k = 0; k < per_thread; k++)); do
            ids+=("$(api POST /api/bookings "${tokens[t]}" '{"event_id":1}' id)")
        done
        args+=("${tokens[t]}:$(IFS=,; echo "${ids[*]}")")
    done
    wrk -t "$cores" -c "$connections" -d "${3}s" --latency -s tests/bench/hold_release.lua \
        "$gateway_url" -- "$seat_first" "$wrk_seats" "${args[@]}" >"$out" 2>&1 ||
        fail "wrk on the gateway failed (see $out)"
    line=$(grep '^hold_release ' "$out") || fail "no result line from hold_release.lua (see $out)"
    holds=$(sed -E 's/.* holds=([0-9]+).*/\1/' <<<"$line")
    requests=$(sed -E 's/.* requests=([0-9]+).*/\1/' <<<"$line")
    secs=$(sed -E 's/.* seconds=([0-9.]+).*/\1/' <<<"$line")
    hps=$(awk -v h="$holds" -v s="$secs" 'BEGIN { printf "%.0f", h / s }')
    failed=$(($(sed -E 's/.* failed=([0-9]+).*/\1/' <<<"$line") +
        $(sed -E 's/.* socket_errors=([0-9]+).*/\1/' <<<"$line")))
    statuses=$(sed -E 's/.* statuses=(.*)/\1/' <<<"$line")
    read -r rps p50 p99 < <(wrk_figures "$out")
}

# per_message BEFORE AFTER: seat operations per message to the units
# between two /metrics snapshots (the gateway's batches, gateway/README.md).
per_message() {
    awk '
        /^tixgrid_grid_batches_total / { m[FILENAME == ARGV[1]] = $2 }
        /^tixgrid_grid_batched_requests_total / { r[FILENAME == ARGV[1]] = $2 }
        END { d = m[0] - m[1]; printf "%.1f", (d > 0 ? (r[0] - r[1]) / d : 0) }' "$1" "$2"
}

# catch_up: seconds until the write-behind is idle again after a round: the
# drain's offsets (partition_offsets.last_seq) unchanged for 0.5 s and the
# gateway's audit queue empty.  Sets caught_up (seconds, or "over 60").
catch_up() {
    local start=$EPOCHREALTIME last='' now backlog stable=0 polls=0
    caught_up="over 60"
    while ((polls++ < 600)); do
        now=$(psql -X -At "$conninfo" -c 'SELECT coalesce(sum(last_seq), 0) FROM partition_offsets' 2>/dev/null) || now=''
        backlog=$(curl -s "$gateway_url/metrics" | awk '/^tixgrid_audit_backlog / { print $2 }')
        if [[ -n $now && $now == "$last" && $backlog == 0 ]]; then
            if ((++stable == 5)); then
                caught_up=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { d = b - a - 0.5; printf "%.1f", d < 0 ? 0 : d }')
                return 0
            fi
        else
            stable=0
        fi
        last=$now
        sleep 0.1
    done
}

# gateway_round N: round N's seats follow round N-1's.
gateway_round() {
    curl -s "$gateway_url/metrics" >"$tmp/metrics-round-before.txt"
    cpu_count "${grid_parts[@]}" -- \
        gateway_wrk "$tmp/wrk-gateway-$1.txt" $((partition_base + ($1 - 1) * cores * wrk_seats)) "$seconds"
    curl -s "$gateway_url/metrics" >"$tmp/metrics-round-after.txt"
    gateway_rps+=("$rps") gateway_hps+=("$hps") gateway_p50+=("$p50") gateway_p99+=("$p99")
    catch_up
    printf '  round %s  gateway  %10.0f requests/s (%7.0f holds/s)  p50 %6s us  p99 %6s us   failed %s (%s), %s operations per message, write-behind idle %s s after\n' \
        "$1" "$rps" "$hps" "$p50" "$p99" "$failed" "$statuses" \
        "$(per_message "$tmp/metrics-round-before.txt" "$tmp/metrics-round-after.txt")" "$caught_up"
    ((failed == 0)) || errors=1
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.0f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# server_side BEFORE AFTER: the gateway's own latency histogram (GET
# /metrics, select and release) between two snapshots, as "share <= bound".
server_side() {
    awk '
        match($0, /^tixgrid_http_request_duration_seconds_bucket\{route="seats_(select|release)",le="[^"]+"\}/) {
            split($0, q, "\""); le = q[4]
            if (FILENAME == ARGV[1]) { before[le] += $NF } else { after[le] += $NF; if (!(le in seen)) { order[++n] = le; seen[le] = 1 } }
        }
        END {
            total = after["+Inf"] - before["+Inf"]
            if (total <= 0) { print "none"; exit }
            for (i = 1; i <= n && order[i] != "0.05"; i++) {
                printf "%s%.1f %% <= %g ms", (i > 1 ? ", " : ""), 100 * (after[order[i]] - before[order[i]]) / total, order[i] * 1000
            }
            printf "\n"
        }' "$1" "$2"
}

# load_result FILE: tixgrid-load's JSON report as one line `result key=value...`.
load_result() {
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency"]
print("result scenario=%s answered_per_s=%.1f failed=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f queue_max=%d " % (
    r["scenario"], r["answers_per_s"], r["requests"]["failed"], l["p50_us"], l["p90_us"],
    l["p99_us"], l["p999_us"], l["max_us"], r["queue_max"]))' "$1"
}

# steady NAME ARG...: tixgrid-load for 2 s of warm-up and SECONDS measured;
# its table on the screen, its figures in steady_result[NAME].
declare -A steady_result=()
steady() {
    local name=$1 out=$tmp/load-$1.txt
    shift
    if [[ $name == gateway ]]; then
        curl -s "$gateway_url/metrics" >"$tmp/metrics-before.txt"
    fi
    TIXGRID_LOAD_PASSWORD=$password "$load_bin" --seconds $((seconds + 2)) --warmup-seconds 2 \
        --connections "$connections" --json --no-progress "$@" >"$out" 2>"$out.err" || true
    sed 's/^/  /' "$out.err"
    if [[ $name == gateway ]]; then
        curl -s "$gateway_url/metrics" >"$tmp/metrics-after.txt"
        echo "    the gateway's own histogram (request in to reply out, select and release):"
        echo "      $(server_side "$tmp/metrics-before.txt" "$tmp/metrics-after.txt")"
    fi
    local line
    line=$(load_result "$out" 2>/dev/null) || fail "tixgrid-load gave no report (see $out, $out.err)"
    echo "  $name: ${line#result }"
    steady_result[$name]=$line
    [[ $line == *" failed=0 "* ]] || errors=1
}

field() { sed -E "s/.* $2=([^ ]+).*/\\1/" <<<"$1"; }

# ---- The issue's checks (--mode steady, --mode sellout) --------------------------------

# json_field FILE PATH: one field of tixgrid-load's JSON report ("latency.p99_us").
json_field() {
    python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[k]
print(v if not isinstance(v, bool) else int(v))' "$1" "$2"
}

steady_check() {
    local report=$tmp/steady.json p99 failed verdict=met
    echo "steady: $rate holds/s (each released at once) for ${seconds}s, open loop, $connections connections"
    TIXGRID_LOAD_PASSWORD=$password "$load_bin" --url "$gateway_url" --scenario hold-release \
        --email "user1@load.tixgrid" --seat-first $((partition_base + steady_seat)) \
        --seats "$steady_seats" --rate "$rate" --seconds "$seconds" --connections "$connections" \
        --json-file "$report" --progress || true
    [[ -s $report ]] || fail "tixgrid-load gave no report"
    p99=$(json_field "$report" latency.p99_us)
    failed=$(json_field "$report" requests.failed)
    awk -v p="$p99" 'BEGIN { exit !(p < 10000) }' && ((failed == 0)) || verdict=MISSED
    printf 'steady: %s holds/s for %s s: p99 %.0f us (target < 10,000), %s failed (target 0): %s\n' \
        "$rate" "$seconds" "$p99" "$failed" "$verdict"
    [[ $verdict == met ]] || errors=1
}

sellout_check() {
    local report=$tmp/sellout.json verdict=met
    echo "sellout: $buyers buyers race for the seats of event $event, $connections connections"
    "$load_bin" --url "$gateway_url" --sandbox "$sandbox_url" --db "$conninfo" --scenario sellout \
        --event "$event" --buyers "$buyers" --rate "$buyers" --seconds 1 --users "$sellout_users" \
        --password "$password" --connections "$connections" --sandbox-connections 64 \
        --time-limit-s 900 --json-file "$report" --progress || true
    [[ -s $report ]] || fail "tixgrid-load gave no report"
    local sold_out double catchup clean
    sold_out=$(json_field "$report" sales.sold_out)
    double=$(json_field "$report" audit.double_sold)
    catchup=$(json_field "$report" audit.catchup_ms)
    clean=$(json_field "$report" audit.clean)
    ((sold_out == 1 && double == 0 && clean == 1 && catchup >= 0 && catchup <= 10000)) || verdict=MISSED
    printf 'sellout: sold out %s, seats sold twice %s, PostgreSQL caught up %s ms after the last sale (target <= 10,000), audit clean %s: %s\n' \
        "$sold_out" "$double" "$catchup" "$clean" "$verdict"
    [[ $verdict == met ]] || errors=1
}

if [[ $mode != all ]]; then
    errors=0
    grid_start
    "${mode}_check"
    ((errors == 0)) || fail "the $mode check was missed (above)"
    ok=1
    exit 0
fi

# ---- Run ------------------------------------------------------------------------------

errors=0
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
grid_start
if ((background_nice > 0)); then
    # shellcheck disable=SC2046  # one pid per word
    renice -n "$background_nice" -p $(part_pids postgres) $(part_pids persister) >/dev/null
    echo "PostgreSQL and the persister run at nice $background_nice"
fi
nginx_start
tokens=()
for ((t = 1; t <= cores; t++)); do
    tokens+=("$(login "$t")")
done

# A first, unmeasured run: the gateway's and the units' first requests
# (connections to the units, caches) are not in round 1.
gateway_wrk "$tmp/wrk-gateway-warmup.txt" $((partition_base + warmup_seat)) 3
((failed == 0)) || fail "the warm-up run failed: $statuses (see $tmp/wrk-gateway-warmup.txt)"

echo
echo "closed loop: wrk -t $cores -c $connections -d ${seconds}s, $rounds rounds (nginx GET /, gateway hold+release)"
nginx_rps=() nginx_p50=() nginx_p99=() gateway_rps=() gateway_hps=() gateway_p50=() gateway_p99=()
for ((r = 1; r <= rounds; r++)); do
    nginx_round "$r"
    gateway_round "$r"
done

echo
echo "open loop: tixgrid-load, $rate requests/s for ${seconds}s after 2 s of warm-up, $connections connections"
steady gateway --rate $((rate / 2)) --url "$gateway_url" --scenario hold-release --email "user$((cores + 1))@load.tixgrid" \
    --seat-first $((partition_base + steady_seat)) --seats "$steady_seats"
steady nginx --rate "$rate" --url "http://127.0.0.1:$nginx_port/"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

n_rps=$(median "${nginx_rps[@]}")
g_rps=$(median "${gateway_rps[@]}")
g_hps=$(median "${gateway_hps[@]}")
ratio=$(awk -v g="$g_rps" -v n="$n_rps" 'BEGIN { printf "%.1f", 100 * g / n }')
g_p99_us=$(field "${steady_result[gateway]}" p99_us)
verdict() { if (($1)); then echo met; else echo MISSED; fi; }

echo
echo "summary ($cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $load_before before, $load_after after)"
printf '  nginx static GET          %10s requests/s  (median of %s; p50 %s us, p99 %s us)\n' \
    "$n_rps" "$rounds" "$(median "${nginx_p50[@]}")" "$(median "${nginx_p99[@]}")"
printf '  gateway hold+release      %10s requests/s = %s holds/s  (p50 %s us, p99 %s us)\n' \
    "$g_rps" "$g_hps" "$(median "${gateway_p50[@]}")" "$(median "${gateway_p99[@]}")"
printf '  ratio                     %9s %%  (target >= 25 %%): %s\n' "$ratio" \
    "$(verdict "$(awk -v r="$ratio" 'BEGIN { print (r >= 25) }')")"
printf '  at %s requests/s          gateway p50 %s  p90 %s  p99 %s  p99.9 %s  max %s us (target p99 < 5,000): %s\n' \
    "$rate" "$(field "${steady_result[gateway]}" p50_us)" "$(field "${steady_result[gateway]}" p90_us)" "$g_p99_us" \
    "$(field "${steady_result[gateway]}" p999_us)" "$(field "${steady_result[gateway]}" max_us)" \
    "$(verdict "$((${g_p99_us%.*} < 5000))")"
printf '  at %s requests/s          nginx   p50 %s  p90 %s  p99 %s  p99.9 %s  max %s us\n' \
    "$rate" "$(field "${steady_result[nginx]}" p50_us)" "$(field "${steady_result[nginx]}" p90_us)" \
    "$(field "${steady_result[nginx]}" p99_us)" "$(field "${steady_result[nginx]}" p999_us)" "$(field "${steady_result[nginx]}" max_us)"
grid_us=0
for part in "${grid_parts[@]}"; do
    grid_us=$((grid_us + $(cpu_us "$part")))
done
printf '  CPU per request           gateway %s + units %s + persister %s + PostgreSQL %s = %s us; nginx %s us\n' \
    "$(cpu_us gateway)" "$(cpu_us units)" "$(cpu_us persister)" "$(cpu_us postgres)" "$grid_us" "$(cpu_us nginx)"
if ((errors)); then
    fail "some requests failed (above): the figures are not valid"
fi
ok=1
