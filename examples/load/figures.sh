#!/bin/sh
# figures.sh: server CPU per delivered packet, Shoal against bare pion, in
# one run. Each configuration (publishers x subscribers) runs against each
# server (examples/load/server: shoal, shoal with -batch=false,
# shoal with -spread-above -1, bare pion; on request shoal-nocc, with
# -cc=false, and shoal-pionpath, with -direct=false) in turn, REPS times, the server
# pinned to CPU 0 and the load tool to CPU 1 (taskset, when there is more
# than one CPU); it prints every run and the median of each cell.
#
#   sh examples/load/figures.sh                      # the defaults below
#   CONFIGS="1x1 1x25" IMPLS="shoal pion" REPS=5 sh examples/load/figures.sh
#   BASE=HEAD~1 IMPLS="shoal-base shoal pion" sh examples/load/figures.sh
#
# BASE, a git revision, builds the server also at that revision (git
# archive, in the temporary directory) and runs it as shoal-base: a change
# against what came before, in the same run.
#
# Media: per publisher VP8 at VIDEO_KBPS (2000 kbit/s, 30 fps: about 8
# packets a frame) and Opus 32 kbit/s. At low packet rates the fixed costs
# of the connections (ICE, RTCP, timers) dominate the figure.
set -eu
CONFIGS=${CONFIGS:-"1x1 1x5 1x10 1x25 5x5"}
IMPLS=${IMPLS:-"shoal shoal-nobatch shoal-nospread pion"}
REPS=${REPS:-3}
DURATION=${DURATION:-10s}
VIDEO_KBPS=${VIDEO_KBPS:-2000}
PORT=${PORT:-5190}
UDP=${UDP:-50190}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/server" ./examples/load/server
go build -o "$dir/load" ./examples/load
if [ -n "${BASE:-}" ]; then
	mkdir "$dir/base"
	git archive "$BASE" | tar -x -C "$dir/base"
	(cd "$dir/base" && go build -o "$dir/server-base" ./examples/load/server)
fi
pin0= pin1=
if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then
	pin0="taskset -c 0" pin1="taskset -c 1"
fi

run() { # impl pubs subs udp-port -> cpu-us/pkt, pkt/s, loss
	bin=$dir/server
	case $1 in
	shoal) args="-impl shoal" ;;
	shoal-base) args="-impl shoal" bin=$dir/server-base ;;
	shoal-nobatch) args="-impl shoal -batch=false" ;;
	shoal-nospread) args="-impl shoal -spread-above -1" ;;
	shoal-nocc) args="-impl shoal -cc=false" ;;
	shoal-pionpath) args="-impl shoal -direct=false" ;;
	pion) args="-impl pion" ;;
	esac
	# shellcheck disable=SC2086
	$pin0 "$bin" $args -addr 127.0.0.1:$PORT -udp-port "$4" 2>"$dir/server.log" &
	spid=$!
	sleep 2
	# shellcheck disable=SC2086
	$pin1 "$dir/load" -url ws://127.0.0.1:$PORT/signaling -channel "c$$" -publishers "$2" -subscribers "$3" \
		-video-kbps "$VIDEO_KBPS" -duration "$DURATION" -warmup 2s -server-pid $spid -quiet >"$dir/out" || true
	kill $spid
	wait $spid 2>/dev/null || true
	awk '/cpu-us per delivered packet/ {v=$(NF-4)} /^delivered/ {d=$4} /^loss/ {l=$2}
		END {printf "%s %s %s\n", v == "" ? "-" : v, d, l}' "$dir/out"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$dir/all"
n=0
for rep in $(seq "$REPS"); do
	for cfg in $CONFIGS; do
		p=${cfg%x*} s=${cfg#*x}
		for impl in $IMPLS; do
			n=$((n + 1)) # a UDP port of its own for each run
			r=$(run "$impl" "$p" "$s" $((UDP + n)))
			echo "rep $rep  ${p}x$s  $impl  cpu-us/pkt, pkt/s, loss: $r"
			echo "$cfg $impl $r" >>"$dir/all"
		done
	done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "median server cpu-us per delivered packet (ratio to pion):"
printf '%-6s' config
for impl in $IMPLS; do printf ' %16s' "$impl"; done
echo
for cfg in $CONFIGS; do
	printf '%-6s' "$cfg"
	base=$(awk -v c="$cfg" '$1 == c && $2 == "pion" && $3 != "-" {print $3}' "$dir/all" | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}')
	for impl in $IMPLS; do
		m=$(awk -v c="$cfg" -v i="$impl" '$1 == c && $2 == i && $3 != "-" {print $3}' "$dir/all" | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}')
		if [ -n "$m" ] && [ -n "$base" ]; then
			printf ' %9s (%.2f)' "$m" "$(echo "$m $base" | awk '{print $1/$2}')"
		else
			printf ' %16s' "${m:--}"
		fi
	done
	echo
done
