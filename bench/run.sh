#!/usr/bin/env bash
# make bench: hotdesk against its anchors, measured in the same run on this machine.
#
#   pages   the entry screen, the logged-in menu and a provisioning file: hotdesk (access log
#           on, into a file through its non-blocking writer) vs nginx serving the same bytes as
#           static files (access log on, into a file) vs a bare hyper server (no log). Each
#           server pinned to CPU 0 (hotdesk with one tokio worker), wrk pinned to CPU 1;
#           rounds alternate between the three and the median round is reported.
#   storm   BENCH_STORM phones (10,000) each opening its own connection at once and fetching
#           the entry screen once, against hotdesk with its default config and against nginx,
#           BENCH_STORM_ROUNDS times each (5), alternating: phones without an answer and
#           listen drops (/proc/net/netstat) over all rounds, the median p99 and CPU per phone.
#   logins  logins/s and p99 at 1, 16 and 64 phones at once, the store on disk: BENCH_LOGIN_ROUNDS
#           rounds (3) of each, every login by a fresh phone; the median round's rate and p99.
#   memory  hotdesk's RSS idle, with BENCH_IDLE (10,000) idle keep-alive connections,
#           BENCH_AFTER seconds (60) after they closed, and as long after the storm.
#
# Knobs (environment): BENCH_SECONDS (5, per wrk run), BENCH_ROUNDS (3), BENCH_CONNS (64),
# BENCH_STORM (10000), BENCH_STORM_ROUNDS (5), BENCH_IDLE (10000), BENCH_AFTER (60),
# BENCH_LOGINS (2000 per round, at 16 and 64; a tenth at 1), BENCH_LOGIN_ROUNDS (3).
# Loopback only; everything started here is stopped on exit.
set -euo pipefail

SECONDS_EACH=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-64}
STORM=${BENCH_STORM:-10000}
STORM_ROUNDS=${BENCH_STORM_ROUNDS:-5}
IDLE=${BENCH_IDLE:-10000}
AFTER=${BENCH_AFTER:-60}
LOGINS=${BENCH_LOGINS:-2000}
LOGIN_ROUNDS=${BENCH_LOGIN_ROUNDS:-3}
SERVER_CPU=0
CLIENT_CPU=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$TARGET/bench-run
PAGE_PORT=18480 STORM_PORT=18481 NGINX_PORT=18482 BARE_PORT=18483

need() {
    command -v "$1" >/dev/null 2>&1 && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $2 (Debian) for the anchors"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
        echo "make bench needs $1: sudo apt-get install -y $2" >&2
        exit 1
    fi
}
need wrk wrk
need nginx nginx-light
[ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx || NGINX=$(command -v nginx)
# 10,000 connections on each side, plus the files of the store and the log.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((STORM + 1000)) ]; then
    echo "warning: open files limit $(ulimit -n) is below the storm's $STORM connections" >&2
fi

cd "$ROOT"
# One release build of both (a `cargo bench` build would compile the library a second time).
ANCHORS=$(cargo build --release --locked --bin hotdesk --bench anchors --message-format=json |
    sed -n 's/.*"executable":"\([^"]*anchors[^"]*\)".*/\1/p' | tail -n 1)
HOTDESK=$TARGET/release/hotdesk
[ -x "$ANCHORS" ] || { echo "cannot find the anchors bench binary" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK/www" "$WORK/nginx"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# --- directory: 1001 for the pages, then one user per login -------------------------------
{
    printf '[[user]]\nextension = "1001"\nname = "Ada Lovelace"\nvoicemail_pin = "7391"\nsip_password = "s3cret-1001"\n'
    for ((e = 20000; e < 20000 + (21 * LOGINS / 10) * LOGIN_ROUNDS; e++)); do
        printf '[[user]]\nextension = "%d"\nname = "Bench %d"\nvoicemail_pin = "7391"\nsip_password = "s-%d"\n' "$e" "$e" "$e"
    done
} >"$WORK/directory.toml"

# $1 port, $2 name, $3 extra [server] lines
config() {
    cat <<EOF
listen = "127.0.0.1:$1"
base_url = "http://127.0.0.1:$1"
[server]
$3
[directory]
kind = "file"
file = "$WORK/directory.toml"
[store]
path = "$WORK/$2.sqlite"
[networks.internal]
label = "Internal"
sip_server = "10.0.0.5"
EOF
}
# Pages and logins: wrk's connections all come from 127.0.0.1, and provisioning is fetched
# far faster than [provision] rate_per_second allows a real phone.
config $PAGE_PORT page 'max_connections_per_source = 1024' >"$WORK/page.toml"
printf '[provision]\nrate_per_second = 1000000\nrate_burst = 1000000\n' >>"$WORK/page.toml"
# One network and no code item: the entry screen is the credentials form, as it was measured
# before codes existed, and the login client submits it directly.
printf '[activation]\nphone_codes = false\n' >>"$WORK/page.toml"
# The storm and memory: the default config.
config $STORM_PORT storm '' >"$WORK/storm.toml"

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

start_hotdesk() { # $1 name, $2 port
    TOKIO_WORKER_THREADS=1 taskset -c $SERVER_CPU "$HOTDESK" serve --config "$WORK/$1.toml" \
        >"$WORK/$1.log" 2>&1 &
    echo $! >"$WORK/$1.pid"
    wait_port "$2"
}
start_hotdesk page $PAGE_PORT
PAGE_PID=$(cat "$WORK/page.pid")
PIDS+=("$PAGE_PID")
start_hotdesk storm $STORM_PORT
STORM_PID=$(cat "$WORK/storm.pid")
PIDS+=("$STORM_PID")

cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 30000;
daemon off;
master_process off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 25000; }
http {
    access_log $WORK/nginx/access.log;
    keepalive_requests 100000000;
    default_type text/xml;
    client_body_temp_path $WORK/nginx;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=16384;
        root $WORK/www;
    }
}
EOF
taskset -c $SERVER_CPU "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
wait_port $NGINX_PORT

# --- the pages, fetched once from hotdesk and kept as static files ------------------------
UA_NEW="Yealink SIP-T46S 66.86.0.15 805ec0000002"
UA_IN="Yealink SIP-T46S 66.86.0.15 805ec0000001"
H="http://127.0.0.1:$PAGE_PORT"
entry=$(curl -sf -A "$UA_IN" "$H/app")
# The first network of the login menu (its last item is "Log in with a code").
url=$(printf '%s' "$entry" | grep -o '<UR[IL]>http[^<]*</UR[IL]>' | grep -v 'by=code' | head -n 1 |
    sed 's:</\?UR[IL]>::g; s/&amp;/\&/g')
curl -sf -A "$UA_IN" "$url&ext=1001&pin=7391" | grep -q "Logged in" ||
    { echo "the bench phone could not log in" >&2; exit 1; }
curl -sf -A "$UA_NEW" "$H/app" >"$WORK/www/entry.xml"
curl -sf -A "$UA_IN" "$H/app" >"$WORK/www/menu.xml"
grep -q "Log out" "$WORK/www/menu.xml" || { echo "no logged-in menu" >&2; exit 1; }
curl -sf -A "$UA_IN" "$H/provision/805ec0000001.cfg" >"$WORK/www/805ec0000001.cfg"
"$ANCHORS" bare "127.0.0.1:$BARE_PORT" "$WORK/www" >"$WORK/bare.log" &
BARE_PID=$!
PIDS+=($BARE_PID)
taskset -p -c $SERVER_CPU $BARE_PID >/dev/null
wait_port $BARE_PORT

# The server's CPU time (all threads) in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# wrk's requests/s and p99 (ms), and the server's CPU µs per request, as "RPS P99 CPU".
# CPU per request is the steadier figure on a shared VM: a neighbour's load lowers req/s
# far more than it raises the work each request takes.
measure() { # $1 url, $2 user agent, $3 server pid
    local t0 out
    t0=$(ticks "$3")
    out=$(taskset -c $CLIENT_CPU wrk -t1 -c"$CONNS" -d"${SECONDS_EACH}s" --latency -H "User-Agent: $2" "$1")
    printf '%s\n' "$out" | awk -v ticks=$(($(ticks "$3") - t0)) -v hz="$(getconf CLK_TCK)" '
             /requests in/ {n=$1}
             /Requests\/sec/ {r=$2}
             $1=="99%" {v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
                        m = (u=="us") ? v/1000 : (u=="s") ? v*1000 : v}
             /Non-2xx/ {bad=$NF}
             END {if (bad) r=0; printf "%.0f %.2f %.1f\n", r, m, (n > 0) ? ticks * 1e6 / hz / n : 0}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RPS P99 CPU
PAGES="entry menu provision"
path_of() { case $1 in entry) echo /app;; menu) echo /app;; provision) echo /provision/805ec0000001.cfg;; esac; }
file_of() { case $1 in entry) echo /entry.xml;; menu) echo /menu.xml;; provision) echo /805ec0000001.cfg;; esac; }
ua_of() { case $1 in entry) echo "$UA_NEW";; *) echo "$UA_IN";; esac; }
echo "pages: $ROUNDS rounds of ${SECONDS_EACH}s each, $CONNS connections"
for page in $PAGES; do
    for who in hotdesk nginx bare; do : >"$WORK/$page.$who"; done
    # warm-up
    measure "$H$(path_of $page)" "$(ua_of $page)" "$PAGE_PID" >/dev/null
    for ((r = 0; r < ROUNDS; r++)); do
        measure "$H$(path_of $page)" "$(ua_of $page)" "$PAGE_PID" >>"$WORK/$page.hotdesk"
        measure "http://127.0.0.1:$NGINX_PORT$(file_of $page)" "$(ua_of $page)" "$NGINX_PID" >>"$WORK/$page.nginx"
        measure "http://127.0.0.1:$BARE_PORT$(file_of $page)" "$(ua_of $page)" "$BARE_PID" >>"$WORK/$page.bare"
    done
    for who in hotdesk nginx bare; do
        RPS[$page.$who]=$(cut -d' ' -f1 "$WORK/$page.$who" | median)
        P99[$page.$who]=$(cut -d' ' -f2 "$WORK/$page.$who" | median)
        CPU[$page.$who]=$(cut -d' ' -f3 "$WORK/$page.$who" | median)
    done
    echo "  $page: hotdesk ${RPS[$page.hotdesk]}/s ${CPU[$page.hotdesk]} µs, nginx ${RPS[$page.nginx]}/s ${CPU[$page.nginx]} µs, bare ${RPS[$page.bare]}/s ${CPU[$page.bare]} µs"
done

# --- logins -----------------------------------------------------------------------------
declare -A LOGIN_RATE LOGIN_P99
first=20000
# One field from every line of a file, one per line.
fields() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; }
# The page rounds leave hundreds of MB of access logs (hotdesk's and nginx's) in the page
# cache; written back now, so the logins' own fsyncs do not queue behind them.
sync
for conc in 1 16 64; do
    n=$LOGINS
    [ "$conc" = 1 ] && n=$((LOGINS / 10))
    : >"$WORK/logins.$conc"
    for ((r = 0; r < LOGIN_ROUNDS; r++)); do
        taskset -c $CLIENT_CPU "$ANCHORS" logins "127.0.0.1:$PAGE_PORT" "$conc" "$n" "$first" |
            tee -a "$WORK/logins.$conc" | sed 's/^/  /'
        first=$((first + n))
    done
    LOGIN_RATE[$conc]=$(fields "$WORK/logins.$conc" per_s | median)
    LOGIN_P99[$conc]=$(fields "$WORK/logins.$conc" p99_ms | median)
done
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
sum() { awk '{s += $1} END {print s + 0}'; }

# --- memory ------------------------------------------------------------------------------
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
curl -sf -A "$UA_NEW" "http://127.0.0.1:$STORM_PORT/app" >/dev/null
sleep 1
RSS_IDLE=$(rss "$STORM_PID")
coproc IDLER { taskset -c $CLIENT_CPU "$ANCHORS" idle "127.0.0.1:$STORM_PORT" "$IDLE" /app 3; }
read -r ready <&"${IDLER[0]}"
RSS_HELD=$(rss "$STORM_PID")
read -r _closed <&"${IDLER[0]}" || true
wait "$IDLER_PID" 2>/dev/null || true
echo "  memory: $ready; RSS idle ${RSS_IDLE} kB, held ${RSS_HELD} kB; waiting ${AFTER}s"
sleep "$AFTER"
RSS_AFTER=$(rss "$STORM_PID")

# --- storm -------------------------------------------------------------------------------
netstat_field() { awk -v f="$1" '/^TcpExt:/ {if (!n) {for (i=1;i<=NF;i++) if ($i==f) c=i; n=1} else print $c}' /proc/net/netstat; }
storm() { # $1 url path, $2 port, $3 server pid
    local d0 o0 t0 out
    d0=$(netstat_field ListenDrops)
    o0=$(netstat_field ListenOverflows)
    t0=$(ticks "$3")
    out=$(taskset -c $CLIENT_CPU "$ANCHORS" storm "127.0.0.1:$2" "$STORM" "$1")
    echo "$out drops=$(($(netstat_field ListenDrops) - d0)) overflows=$(($(netstat_field ListenOverflows) - o0))" \
        "cpu_us=$(awk -v t=$(($(ticks "$3") - t0)) -v hz="$(getconf CLK_TCK)" -v n="$STORM" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')"
}
# Rounds alternate, as for the pages: a single storm's p99 swings two- or threefold on a
# shared VM (it is the time the last phones wait, so it follows the machine's speed in
# that half second). The p99 and CPU are medians; unanswered phones and drops are summed.
echo "storm: $STORM_ROUNDS rounds of $STORM phones each"
for who in hotdesk nginx; do : >"$WORK/storm.$who"; done
storm_round() { # $1 who, then storm's arguments
    local out
    out=$(storm "$2" "$3" "$4")
    printf '  %-7s %s\n' "$1" "$out"
    echo "$out" >>"$WORK/storm.$1"
    sleep 2
}
for ((r = 0; r < STORM_ROUNDS; r++)); do
    storm_round hotdesk /app $STORM_PORT "$STORM_PID"
    storm_round nginx /entry.xml $NGINX_PORT "$NGINX_PID"
done
declare -A STORM_OUT
for who in hotdesk nginx; do
    f=$WORK/storm.$who
    STORM_OUT[$who]="unanswered=$(fields "$f" unanswered | sum) drops=$(fields "$f" drops | sum)"
    STORM_OUT[$who]+=" overflows=$(fields "$f" overflows | sum) p99_ms=$(fields "$f" p99_ms | median)"
    STORM_OUT[$who]+=" cpu_us=$(fields "$f" cpu_us | median)"
done
STORM_HD=${STORM_OUT[hotdesk]}
STORM_NX=${STORM_OUT[nginx]}
RSS_STORM=$(rss "$STORM_PID")
echo "  storm over: RSS ${RSS_STORM} kB; waiting ${AFTER}s"
sleep "$AFTER"
RSS_STORM_AFTER=$(rss "$STORM_PID")

# --- the table ---------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
echo
echo "hotdesk bench, $(date -u +%Y-%m-%d), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1)"
echo "(servers pinned to CPU $SERVER_CPU, clients to CPU $CLIENT_CPU; a shared VM is noisy: ±10% between runs)"
echo
printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' what hotdesk nginx "bare hyper" "÷nginx" "÷bare" floor
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ------------------------------------ -------------- -------------- -------------- ---------- ---------- ------
for page in $PAGES; do
    printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "$page req/s (log on)" \
        "${RPS[$page.hotdesk]}" "${RPS[$page.nginx]}" "${RPS[$page.bare]}" \
        "$(ratio "${RPS[$page.hotdesk]}" "${RPS[$page.nginx]}")" \
        "$(ratio "${RPS[$page.hotdesk]}" "${RPS[$page.bare]}")" "≥ 1.00 ÷nginx"
    printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "  p99 ms" \
        "${P99[$page.hotdesk]}" "${P99[$page.nginx]}" "${P99[$page.bare]}" \
        "$(ratio "${P99[$page.hotdesk]}" "${P99[$page.nginx]}")" \
        "$(ratio "${P99[$page.hotdesk]}" "${P99[$page.bare]}")" ""
    printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "  CPU µs per request" \
        "${CPU[$page.hotdesk]}" "${CPU[$page.nginx]}" "${CPU[$page.bare]}" \
        "$(ratio "${CPU[$page.hotdesk]}" "${CPU[$page.nginx]}")" \
        "$(ratio "${CPU[$page.hotdesk]}" "${CPU[$page.bare]}")" ""
done
printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "storm $STORM×$STORM_ROUNDS: unanswered" \
    "$(field "$STORM_HD" unanswered)" "$(field "$STORM_NX" unanswered)" - - - "0"
printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "  listen drops / overflows" \
    "$(field "$STORM_HD" drops) / $(field "$STORM_HD" overflows)" \
    "$(field "$STORM_NX" drops) / $(field "$STORM_NX" overflows)" - - - "0"
printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "  p99 ms" \
    "$(field "$STORM_HD" p99_ms)" "$(field "$STORM_NX" p99_ms)" - \
    "$(ratio "$(field "$STORM_HD" p99_ms)" "$(field "$STORM_NX" p99_ms)")" - "≤ 1.20 ÷nginx"
printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "  CPU µs per phone" \
    "$(field "$STORM_HD" cpu_us)" "$(field "$STORM_NX" cpu_us)" - \
    "$(ratio "$(field "$STORM_HD" cpu_us)" "$(field "$STORM_NX" cpu_us)")" - ""
for conc in 1 16 64; do
    printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "logins/s at $conc (p99 ms)" \
        "${LOGIN_RATE[$conc]} (${LOGIN_P99[$conc]})" - - - - \
        "$([ "$conc" = 64 ] && echo "≥ 6000 (p99 ≤ 15)")"
done
per_conn=$(awk -v a="$RSS_HELD" -v b="$RSS_IDLE" -v n="$IDLE" 'BEGIN {printf "%.1f", (a - b) / n}')
printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "RSS MB idle / $IDLE idle conns" \
    "$(awk -v a="$RSS_IDLE" -v b="$RSS_HELD" 'BEGIN {printf "%.1f / %.1f", a/1024, b/1024}')" - - - - ""
printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "  KB per idle connection" "$per_conn" - - - - "≤ 12"
printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "  RSS MB ${AFTER}s after they closed" \
    "$(awk -v a="$RSS_AFTER" 'BEGIN {printf "%.1f", a/1024}')" - - \
    "$(ratio "$RSS_AFTER" "$RSS_IDLE")" - "≤ 1.20 ÷idle"
printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "  RSS MB after the storm" \
    "$(awk -v a="$RSS_STORM" 'BEGIN {printf "%.1f", a/1024}')" - - \
    "$(ratio "$RSS_STORM" "$RSS_IDLE")" - ""
printf '| %-34s | %12s | %12s | %12s | %8s | %8s | %s |\n' "  RSS MB ${AFTER}s after the storm" \
    "$(awk -v a="$RSS_STORM_AFTER" 'BEGIN {printf "%.1f", a/1024}')" - - \
    "$(ratio "$RSS_STORM_AFTER" "$RSS_IDLE")" - "≤ 1.20 ÷idle"
