# Baseline: PORTICO_BASELINE=/path/to/portico adds a second portico binary
# (the build before a change, say) as front "portico-base", and the
# scenario "baseline" runs it next to this build on the small-body route,
# with the ratio portico/portico-base. Example:
#
#   git worktree add /tmp/base HEAD~1 && make -C /tmp/base
#   PORTICO_BASELINE=/tmp/base/build/portico SCENARIOS="baseline" make bench
# ("baseline-close": the same with a new connection per request.)
if [ -n "${PORTICO_BASELINE:-}" ]; then
	start_portico_base() {	# DIR
		(cd "$1" && exec "$PORTICO_BASELINE" -c "$1/portico.conf" -p "$1") \
			>>"$1/stdout.log" 2>&1 &
		STARTED_PID=$!
		bench_track "$STARTED_PID"
	}
	front portico-base portico_base conf_portico
	scenario baseline /small "$CONNS" "portico portico-base" \
		"~100-byte body, this build vs $PORTICO_BASELINE"
	scenario baseline-close /small "$CONNS" "portico portico-base" \
		"new connection per request, this build vs $PORTICO_BASELINE" \
		-H "Connection: close"
	pair portico/portico-base
fi
