#!/usr/bin/env bash
# Soak test of a proxy-mode fleet on a Sentinel-managed Redis: two gateway
# replicas, a Redis primary, its replica and one Sentinel, the local
# Cloudflare Images emulator, all on loopback, for DURATION (default 30m)
# of mixed load. Needs curl, wrk (bench/load/lib.sh checks for it) and
# redis-server (Debian package `redis-server`).
#
#   DURATION=30m bash bench/soak/soak.sh
#
# DURATION is a number of seconds or with a unit: 90s, 5m, 1h.
#
# 300 private images are uploaded to the emulator. Each replica has a 2 MiB
# memory tier (about 60 objects of 34 KB), so:
#
#   - hits: the first 30 ids, variant public, asked again and again;
#   - misses: random ids of the other 270, variant public or thumbnail,
#     540 objects, far more than the memory tier holds, so it evicts all
#     the time (the Redis tier and the emulator serve them);
#   - purges: every 10 s, POST /cf_images/purge of a hot id on one
#     replica's admin API, alternating (fanned out to the other through
#     Redis);
#   - at 1/3 of the run the Redis primary is restarted (stopped and
#     started again on its port, well inside the Sentinel's
#     down-after-milliseconds, so no failover: the replicas' breakers and
#     reconnects are exercised);
#   - at 2/3 the primary is killed for good: the Sentinel fails over to
#     the replica, which the gateways must follow; 15 s later the old
#     primary is started again and the Sentinel makes it a replica.
#
# The load is bounded: rounds of 100 hits and 10 misses per replica (curl,
# one process each, 10 s timeout per request), then a 0.5 s pause, until
# DURATION is up. Each minute it prints, per replica: RSS (VmRSS of
# /proc/<pid>/status), goroutines (the admin API's
# /debug/pprof/goroutine?debug=1, first line), open files (/proc/<pid>/fd)
# and the requests and answers other than 2xx/3xx in that minute. At the
# end: first, last and max of each, and whether each stayed flat: last at
# most 1.5× its value at minute 2 (minute 1 in a run shorter than 3
# minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v redis-server >/dev/null || { echo "redis-server is not installed: apt-get install redis-server" >&2; exit 1; }
command -v redis-cli >/dev/null || { echo "redis-cli is not installed: apt-get install redis-tools" >&2; exit 1; }

duration=${DURATION:-30m}
case $duration in
*h) secs=$((${duration%h} * 3600)) ;;
*m) secs=$((${duration%m} * 60)) ;;
*s) secs=${duration%s} ;;
*) secs=$duration ;;
esac
[ "$secs" -ge 60 ] || { echo "DURATION must be at least 1m, got $duration" >&2; exit 1; }

work=$(mktemp -d)
# shellcheck source=bench/load/lib.sh
. bench/load/lib.sh
loader=
cleanup() {
	[ -z "$loader" ] || kill "$loader" 2>/dev/null || true
	stop_all
	rm -rf "$work"
}
trap cleanup EXIT

build_imagegate
make_jpeg "$work/img.jpg"

# --- Redis: primary, replica, Sentinel ---------------------------------
password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
sentinel_password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
master=mymaster
# The Sentinel calls the primary down after 3 s without an answer: the
# restart at 1/3 takes well under that, the kill at 2/3 lasts longer.
down_after=3000

# start_redis <name> <port> [args...]: a data node (both have masterauth,
# since either may become a replica after a failover); its pid is in
# ${pid_<name>}.
start_redis() {
	local name=$1 port=$2
	shift 2
	mkdir -p "$work/$name"
	redis-server --port "$port" --bind 127.0.0.1 --requirepass "$password" --masterauth "$password" \
		--dir "$work/$name" --save '' --appendonly no "$@" >>"$work/$name.log" 2>&1 &
	pids+=($!)
	printf -v "pid_$name" '%s' "$!"
}
rcli() { # <port> <password> <command...>
	local port=$1 pw=$2
	shift 2
	REDISCLI_AUTH=$pw redis-cli -h 127.0.0.1 -p "$port" "$@"
}
wait_for() { # <what> <seconds> <command...>: until the command succeeds
	local what=$1 n=$(($2 * 10))
	shift 2
	for _ in $(seq "$n"); do
		"$@" >/dev/null 2>&1 && return
		sleep 0.1
	done
	echo "$what: not after $(($n / 10))s" >&2
	exit 1
}
in_sync() { rcli "$1" "$password" info replication | grep -q master_link_status:up; }
sentinel_knows_replica() { [ "$(rcli "$sentinel_port" "$sentinel_password" sentinel replicas "$master" | grep -c '^ip$')" -ge 1 ]; }
sentinel_primary() { rcli "$sentinel_port" "$sentinel_password" sentinel get-master-addr-by-name "$master" | sed -n 2p; }

primary_port=$(free_port)
start_redis primary "$primary_port"
wait_for "redis primary answers" 10 rcli "$primary_port" "$password" ping
replica_port=$(free_port)
start_redis replica "$replica_port" --replicaof 127.0.0.1 "$primary_port"
wait_for "redis replica in sync" 20 in_sync "$replica_port"

sentinel_port=$(free_port)
mkdir -p "$work/sentinel"
# The Sentinel rewrites its configuration file, so it is a file of its own.
cat >"$work/sentinel/sentinel.conf" <<CONF
port $sentinel_port
bind 127.0.0.1
dir $work/sentinel
requirepass $sentinel_password
sentinel monitor $master 127.0.0.1 $primary_port 1
sentinel down-after-milliseconds $master $down_after
sentinel failover-timeout $master 10000
sentinel auth-pass $master $password
CONF
redis-server "$work/sentinel/sentinel.conf" --sentinel >"$work/sentinel.log" 2>&1 &
pids+=($!)
wait_for "Sentinel knows the replica" 30 sentinel_knows_replica

# --- emulator and two gateway replicas ---------------------------------
emu=127.0.0.1:$(free_port)
emu_admin=127.0.0.1:$(free_port)
start_caddy emulator "{
	admin $emu_admin
	persist_config off
	log {
		level WARN
	}
}
http://$emu {
	bind 127.0.0.1
	cf_images_emulator {
		api_token {file.$PWD/dev/api-token}
		signing_key {file.$PWD/dev/signing-key}
		storage memory
	}
}"

declare -A site admin pid
for r in 1 2; do
	site[$r]=127.0.0.1:$(free_port)
	admin[$r]=127.0.0.1:$(free_port)
	REDIS_PASSWORD=$password SENTINEL_PASSWORD=$sentinel_password start_caddy "replica$r" "{
	admin ${admin[$r]}
	persist_config off
	log {
		level ERROR
	}
	cf_images {
		account_hash emu-account-hash
		signing_key_file $PWD/dev/signing-key
		delivery_url http://$emu
		redis {
			url               redis://:{env.REDIS_PASSWORD}@127.0.0.1:$sentinel_port/0
			sentinel          $master
			sentinel_password {env.SENTINEL_PASSWORD}
		}
	}
}
http://${site[$r]} {
	cf_images {
		variants public thumbnail
		session none
		mode proxy {
			cache_size 2MiB
			# One load generator is one caller: the per-caller fetch
			# limit (300 a minute by default) would refuse the misses.
			fetch_limit off
		}
	}
}"
	v=pid_replica$r
	pid[$r]=${!v}
done
for a in "$emu" "${site[1]}" "${site[2]}"; do wait_http "http://$a/"; done

echo "uploading 300 images to the emulator"
api="http://$emu/client/v4/accounts/0123456789abcdef0123456789abcdef/images/v1"
token=$(cat dev/api-token)
seq 300 | xargs -P 4 -I{} curl -s --fail -H "Authorization: Bearer $token" \
	-F "file=@$work/img.jpg" -F requireSignedURLs=true "$api" |
	grep -o '"id":"[^"]*"' | cut -d'"' -f4 >"$work/ids"
[ "$(sort -u "$work/ids" | wc -l)" = 300 ] || { echo "uploaded $(wc -l <"$work/ids") images, want 300 distinct" >&2; exit 1; }
head -30 "$work/ids" >"$work/hot"
tail -n +31 "$work/ids" >"$work/cold"

# --- load ---------------------------------------------------------------
start=$(date +%s)
end=$((start + secs))

# load_loop: rounds of hits and misses on both replicas until end; each
# answer's status goes to $work/codes<replica>, one line each.
load_loop() {
	local round=0 r
	: >"$work/codes1"
	: >"$work/codes2"
	while [ "$(date +%s)" -lt "$end" ]; do
		round=$((round + 1))
		for r in 1 2; do
			awk -v s="${site[$r]}" -v seed="$round$r" '
				FNR == NR { hot[n++] = $0; next }
				{ cold[m++] = $0 }
				END {
					srand(seed)
					for (i = 0; i < 100; i++) printf "url = \"http://%s/img/%s/public\"\noutput = /dev/null\n", s, hot[i % n]
					for (i = 0; i < 10; i++) printf "url = \"http://%s/img/%s/%s\"\noutput = /dev/null\n", s, cold[int(rand() * m)], (rand() < 0.5 ? "public" : "thumbnail")
				}' "$work/hot" "$work/cold" >"$work/batch$r"
			curl -s --max-time 10 -K "$work/batch$r" -w '%{http_code}\n' >>"$work/codes$r" &
		done
		wait
		sleep 0.5
	done
}
load_loop &
loader=$!

# sample <minute>: one line per replica; also keeps the series for the
# summary in rss_<r>, gor_<r>, fds_<r>.
declare -A seen
declare -a rss_1 rss_2 gor_1 gor_2 fds_1 fds_2
sample() {
	local r rss gor fds lines reqs bad
	for r in 1 2; do
		rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/${pid[$r]}/status")
		gor=$(curl -s --max-time 10 "http://${admin[$r]}/debug/pprof/goroutine?debug=1" | awk 'NR == 1 { print $NF }')
		gor=${gor:-0}
		fds=$(find "/proc/${pid[$r]}/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
		lines=$(wc -l <"$work/codes$r")
		reqs=$((lines - ${seen[$r]:-0}))
		bad=$(tail -n +"$((${seen[$r]:-0} + 1))" "$work/codes$r" | head -n "$reqs" | awk '$1 !~ /^[23]/' | wc -l)
		seen[$r]=$lines
		eval "rss_$r+=($rss) gor_$r+=($gor) fds_$r+=($fds)"
		printf '| %d | %d | %d | %s | %d | %d | %d |\n' "$1" "$r" "$((rss / 1024))" "$gor" "$fds" "$reqs" "$bad"
	done
}

echo "soak: $secs s of mixed load; primary restart at $((secs / 3)) s, failover at $((2 * secs / 3)) s"
echo "| minute | replica | RSS MiB | goroutines | open files | requests | non-2xx/3xx |"
echo "|--:|--:|--:|--:|--:|--:|--:|"
sample 0
minute=1
restarted=0
failed_over=0
old_primary_back=0
purges_ok=0
purges_bad=0
next_purge=$((start + 10))
events=()
while :; do
	now=$(date +%s)
	if [ "$now" -ge "$next_purge" ] && [ "$now" -lt "$end" ]; then
		r=$((next_purge / 10 % 2 + 1))
		id=$(sed -n "$((RANDOM % 30 + 1))p" "$work/hot")
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/json' \
			-d "{\"id\":\"$id\"}" "http://${admin[$r]}/cf_images/purge")
		if [ "$code" = 200 ]; then purges_ok=$((purges_ok + 1)); else purges_bad=$((purges_bad + 1)); fi
		next_purge=$((next_purge + 10))
	fi
	if [ "$restarted" = 0 ] && [ "$now" -ge $((start + secs / 3)) ]; then
		restarted=1
		kill "$pid_primary"
		wait "$pid_primary" 2>/dev/null || true
		start_redis primary "$primary_port"
		wait_for "restarted primary answers" 10 rcli "$primary_port" "$password" ping
		wait_for "replica in sync after the restart" 30 in_sync "$replica_port"
		events+=("$((now - start)) s: restarted the primary (port $primary_port); Sentinel's primary now $(sentinel_primary)")
	fi
	if [ "$failed_over" = 0 ] && [ "$now" -ge $((start + 2 * secs / 3)) ]; then
		failed_over=$now
		kill -9 "$pid_primary"
		wait "$pid_primary" 2>/dev/null || true
		t0=$(date +%s.%N)
		for _ in $(seq 300); do
			[ "$(sentinel_primary)" = "$replica_port" ] && break
			sleep 0.1
		done
		events+=("$((now - start)) s: killed the primary; Sentinel named port $(sentinel_primary) (the replica is $replica_port) after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s")
	fi
	if [ "$failed_over" != 0 ] && [ "$old_primary_back" = 0 ] && [ "$now" -ge $((failed_over + 15)) ]; then
		old_primary_back=1
		start_redis primary "$primary_port"
		events+=("$((now - start)) s: started the old primary again (the Sentinel makes it a replica)")
	fi
	if [ "$now" -ge $((start + minute * 60)) ]; then
		sample "$minute"
		minute=$((minute + 1))
	fi
	[ "$now" -lt "$end" ] || break
	sleep 1
done
wait "$loader" || true
loader=

echo
printf '%s\n' "${events[@]}"
echo "purges: $purges_ok answered 200, $purges_bad otherwise"
for r in 1 2; do
	echo "replica $r: redis errors (get/set) $(metric "${admin[$r]}" 'imagegate_redis_errors_total{op="get"}')/$(metric "${admin[$r]}" 'imagegate_redis_errors_total{op="set"}'), upstream 2xx fetches $(metric "${admin[$r]}" 'imagegate_upstream_fetches_total{status="2xx"}'), memory-tier hits $(metric "${admin[$r]}" 'imagegate_byte_cache_hits_total{tier="memory"}'), redis-tier hits $(metric "${admin[$r]}" 'imagegate_byte_cache_hits_total{tier="redis"}')"
done
echo
# The reference sample: minute 2, or minute 1 in a short run (index =
# minute, since sample 0 is the first).
ref=2
[ "$minute" -gt 3 ] || ref=1
echo "| replica | metric | first | minute $ref | last | max | flat (last ≤ 1.5× minute $ref) |"
echo "|--:|---|--:|--:|--:|--:|---|"
for r in 1 2; do
	for m in rss gor fds; do
		eval "vals=(\"\${${m}_$r[@]}\")"
		# shellcheck disable=SC2154
		printf '%s\n' "${vals[@]}" | awk -v r="$r" -v m="$m" -v ref="$ref" '
			{ v[NR - 1] = $1; if (NR == 1 || $1 > max) max = $1 }
			END {
				name = m == "rss" ? "RSS KiB" : m == "gor" ? "goroutines" : "open files"
				last = v[NR - 1]
				printf "| %s | %s | %d | %d | %d | %d | %s |\n", r, name, v[0], v[ref], last, max, (last <= 1.5 * v[ref] ? "yes" : "NO")
			}'
	done
done
