# Helpers shared by proxy.sh and fleet.sh; sourced, not run. They expect
# set -euo pipefail, the repository root as the working directory, and
# $work (a temporary directory the caller removes).
#
# Every server listens on 127.0.0.1 only. CPU per request is read from
# /proc/<pid>/stat (utime + stime) before and after each wrk run, so it
# counts only the named processes, not wrk.

command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is not installed: apt-get install curl" >&2; exit 1; }
[ -r /proc/self/stat ] || { echo "needs Linux /proc to measure CPU per request" >&2; exit 1; }

clk_tck=$(getconf CLK_TCK)
pids=()

# stop_all stops every process started with start_bg (by pid) and waits.
stop_all() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

# free_port prints a loopback TCP port nothing listens on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# build_imagegate builds the binary into $work.
build_imagegate() {
	go build -o "$work/imagegate" ./cmd/imagegate
}

# start_caddy <name> <caddyfile>: runs imagegate with the Caddyfile in the
# background; its pid is in ${pid_<name>} and its log in $work/<name>.log.
start_caddy() {
	local name=$1
	printf '%s\n' "$2" >"$work/$name.Caddyfile"
	HOME=$work XDG_DATA_HOME=$work/$name.data XDG_CONFIG_HOME=$work/$name.config \
		"$work/imagegate" run --config "$work/$name.Caddyfile" --adapter caddyfile >"$work/$name.log" 2>&1 &
	pids+=($!)
	printf -v "pid_$name" '%s' "$!"
}

# wait_http <url>: waits, at most 20s, until url answers at all.
wait_http() {
	for _ in $(seq 200); do
		curl -s -o /dev/null --max-time 1 "$1" && return
		sleep 0.1
	done
	echo "nothing answers at $1 after 20s" >&2
	exit 1
}

# cpu_ticks <pid...>: the processes' utime + stime, in clock ticks.
cpu_ticks() {
	local total=0 t
	for p in "$@"; do
		# Fields 14 and 15, counted after the ")" that ends the command name.
		t=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
		total=$((total + t))
	done
	echo "$total"
}

# metric <admin host:port> <series>: one series' value from /metrics, 0
# when absent. The series is the name with its labels as exposed.
metric() {
	curl -s "http://$1/metrics" | awk -v s="$2" 'index($0, s " ") == 1 { v = $2 } END { print v + 0 }'
}

# ids_lua <ids file> <offset> <out.lua>: a wrk script requesting
# /img/<id>/public for every id in turn, starting at offset. wrk runs two
# threads (-t 2): one takes the even positions, the other the odd, so
# together they request each id once per pass.
ids_lua() {
	{
		echo "local ids = {"
		sed 's/.*/"&",/' "$1"
		echo "}"
		cat <<LUA
local offset = $2
local threads = 0
function setup(thread)
  thread:set("first", threads)
  threads = threads + 1
end
local n
function init(args)
  n = offset + first
end
function request()
  local id = ids[(n % #ids) + 1]
  n = n + 2
  return wrk.format("GET", "/img/" .. id .. "/public")
end
LUA
	} >"$3"
}

summary=()
# cpu_runs[label] holds the first group's CPU µs/request of each run of that
# label, space-separated, for compare.
declare -A cpu_runs

# measure <label> <url> <lua> <pids> <other pids|-> [extra wrk args]: runs
# wrk for $secs with $conns connections and records requests/s, p50, p99,
# answers other than 2xx/3xx, and the CPU µs per request of each pid group
# (a group's pids are summed; "-" for none).
measure() {
	local label=$1 url=$2 lua=$3 group1=$4 group2=$5
	shift 5
	local b1 b2=0 a1 a2=0 out
	# shellcheck disable=SC2086
	b1=$(cpu_ticks $group1)
	# shellcheck disable=SC2086
	[ "$group2" = - ] || b2=$(cpu_ticks $group2)
	out=$(wrk -t 2 -c "$conns" -d "${secs}s" --latency -s "$lua" "$@" "$url")
	# shellcheck disable=SC2086
	a1=$(cpu_ticks $group1)
	# shellcheck disable=SC2086
	[ "$group2" = - ] || a2=$(cpu_ticks $group2)
	echo "== $label"
	echo "$out"
	echo
	local reqs rps p50 p99 bad cpu1 cpu2=-
	reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
	rps=$(awk '/^Requests\/sec/ { printf "%d", $2 }' <<<"$out")
	p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
	p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
	bad=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
	cpu1=$(per_request $((a1 - b1)) "$reqs")
	[ "$group2" = - ] || cpu2=$(per_request $((a2 - b2)) "$reqs")
	summary+=("$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$label" "$rps" "$p50" "$p99" "${bad:-0}" "$cpu1" "$cpu2")")
	cpu_runs[$label]="${cpu_runs[$label]:-} $cpu1"
}

# compare <label> <baseline label> <bar>: the ratio of the first group's
# CPU per request in runs of label to that in runs of the baseline, round by
# round (the runs are interleaved, so each pair saw the same load from the
# rest of the machine), with the median, the spread and whether the median
# is at most bar.
compare() {
	local a b
	read -ra a <<<"${cpu_runs[$1]}"
	read -ra b <<<"${cpu_runs[$2]}"
	local i ratios=()
	for i in "${!a[@]}"; do
		ratios+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { printf "%.3f", x / y }')")
	done
	printf '%s\n' "${ratios[@]}" | sort -n | awk -v l="$1" -v base="$2" -v bar="$3" \
		-v cpu_a="$(median "${a[@]}")" -v cpu_b="$(median "${b[@]}")" '
		{ r[NR] = $1 }
		END {
			m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
			printf "%s / %s, CPU per request: median %.3f× (%s vs %s µs), spread %.3f–%.3f over %d rounds, bar %s×: %s\n",
				l, base, m, cpu_a, cpu_b, r[1], r[NR], NR, bar, (m <= bar ? "MET" : "NOT MET")
		}'
}

# median <number...>: the median.
median() {
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# profile <admin host:port> <out> <url> <lua> [extra wrk args]: a CPU
# profile of the process behind that admin endpoint (Caddy serves
# /debug/pprof there) while wrk loads url for $secs. Not a measured run:
# profiling costs CPU of its own.
profile() {
	local admin=$1 out=$2 url=$3 lua=$4
	shift 4
	curl -s -o "$out" "http://$admin/debug/pprof/profile?seconds=$secs" &
	local c=$!
	wrk -t 2 -c "$conns" -d "$((secs + 1))s" -s "$lua" "$@" "$url" >/dev/null
	wait "$c"
	echo "profile of $url: $out (go tool pprof -top $work/imagegate $out)"
}

# per_request <ticks> <requests>: CPU µs per request.
per_request() {
	awk -v d="$1" -v hz="$clk_tck" -v n="$2" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }'
}

# print_summary <name of the first pid group> <name of the second>: the
# table of every measure so far.
print_summary() {
	echo "| run | requests/s | p50 | p99 | non-2xx | CPU µs/request, $1 | CPU µs/request, $2 |"
	echo "|---|--:|--:|--:|--:|--:|--:|"
	printf '%s\n' "${summary[@]}"
}

# make_jpeg <path>: writes a photo-like JPEG of at least 30,000 bytes.
make_jpeg() {
	mkdir -p "$work/mkjpeg"
	cat >"$work/mkjpeg/main.go" <<'GO'
// Command mkjpeg writes a noisy gradient JPEG of at least 30,000 bytes.
package main

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"os"
)

func main() {
	r := rand.New(rand.NewPCG(1, 2))
	for w := 320; ; w += 8 {
		h := w * 3 / 4
		m := image.NewRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				n := uint8(r.IntN(48))
				m.Set(x, y, color.RGBA{uint8(x) + n, uint8(y) + n, uint8(x+y) / 2, 255})
			}
		}
		var b bytes.Buffer
		if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 80}); err != nil {
			panic(err)
		}
		if b.Len() >= 30000 {
			if err := os.WriteFile(os.Args[1], b.Bytes(), 0o644); err != nil {
				panic(err)
			}
			return
		}
	}
}
GO
	go run "$work/mkjpeg/main.go" "$1"
}
