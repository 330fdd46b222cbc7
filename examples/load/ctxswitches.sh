#!/bin/sh
# ctxswitches.sh: context switches and CPU of the server per second while
# one configuration runs, for the server built from the working tree
# (shoal) and, with BASE=<git revision>, at that revision (shoal-base),
# alternated REPS times; pinned as figures.sh pins them. A context switch
# is the sum of voluntary and nonvoluntary switches over the server's
# threads (/proc/PID/task/*/status), counted over WINDOW seconds in the
# middle of the run.
#
#   BASE=HEAD~1 CONFIG=1x25 REPS=3 sh examples/load/ctxswitches.sh
set -eu
CONFIG=${CONFIG:-1x25}
REPS=${REPS:-3}
WINDOW=${WINDOW:-6}
VIDEO_KBPS=${VIDEO_KBPS:-2000}
PORT=${PORT:-5191}
UDP=${UDP:-51190}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/shoal" ./examples/load/server
go build -o "$dir/load" ./examples/load
impls=shoal
if [ -n "${BASE:-}" ]; then
	mkdir "$dir/base"
	git archive "$BASE" | tar -x -C "$dir/base"
	(cd "$dir/base" && go build -o "$dir/shoal-base" ./examples/load/server)
	impls="shoal-base shoal"
fi
pin0= pin1=
if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then
	pin0="taskset -c 0" pin1="taskset -c 1"
fi
switches() { # pid -> total context switches of its threads
	cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'
}
ticks() { # pid -> utime+stime in clock ticks
	awk '{print $14 + $15}' /proc/"$1"/stat
}
p=${CONFIG%x*} s=${CONFIG#*x}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
n=0
for rep in $(seq "$REPS"); do
	for impl in $impls; do
		n=$((n + 1))
		# shellcheck disable=SC2086
		$pin0 "$dir/$impl" -impl shoal -addr 127.0.0.1:$PORT -udp-port $((UDP + n)) 2>/dev/null &
		spid=$!
		sleep 2
		# shellcheck disable=SC2086
		$pin1 "$dir/load" -url ws://127.0.0.1:$PORT/signaling -channel "c$$" -publishers "$p" -subscribers "$s" \
			-video-kbps "$VIDEO_KBPS" -duration $((WINDOW + 6))s -warmup 2s -quiet >"$dir/out" 2>&1 &
		lpid=$!
		sleep 4
		c0=$(switches $spid) t0=$(ticks $spid)
		sleep "$WINDOW"
		c1=$(switches $spid) t1=$(ticks $spid)
		wait $lpid || true
		kill $spid
		wait $spid 2>/dev/null || true
		echo "rep $rep  $CONFIG  $impl  context switches/s: $(((c1 - c0) / WINDOW))  CPU ms/s: $(((t1 - t0) * 1000 / $(getconf CLK_TCK) / WINDOW))"
	done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
