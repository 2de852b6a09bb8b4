#!/usr/bin/env bash
# `make run`: start the four demo services (users twice: :8001 and :8011),
# then portico in the foreground.
# Ctrl-C (or portico exiting) stops everything this script started.
#
# Extra flags for the demo services (see `build/demo --help`), e.g.
#   DEMO_FLAGS="--latency-ms 20" DEMO_FLAGS_payments="--fail-rate 0.5" make run
# (a running service is made slow or failing with POST /_control/fail?mode=...)
# Arguments given to this script are passed on to portico.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${PORTICO_BUILD:-build}
CONF=${PORTICO_CONF:-etc/portico.conf}

for bin in "$BUILD/demo" "$BUILD/portico"; do
	if [ ! -x "$bin" ]; then
		echo "run-demo: $bin is missing; run 'make' first" >&2
		exit 1
	fi
done
mkdir -p run logs

demo_pids=()
portico_pid=""

# shellcheck disable=SC2317  # invoked from the traps
stop_all() {
	trap - INT TERM EXIT
	if [ -n "$portico_pid" ]; then
		kill -TERM "$portico_pid" 2>/dev/null
		wait "$portico_pid" 2>/dev/null
	fi
	for p in "${demo_pids[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${demo_pids[@]}"; do
		wait "$p" 2>/dev/null
	done
}
trap 'echo; echo "run-demo: stopping"; stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

SPECS="users:8001 users:8011 orders:8002 products:8003 payments:8004"
for spec in $SPECS; do
	name=${spec%%:*}
	port=${spec##*:}
	var="DEMO_FLAGS_$name"
	# word splitting of the flag variables is intended
	# shellcheck disable=SC2086
	"$BUILD/demo" ${DEMO_FLAGS:-} ${!var:-} --service "$name" \
		--listen "127.0.0.1:$port" >"logs/demo-$name-$port.log" 2>&1 &
	demo_pids+=("$!")
done

# Each service prints "listening on" once its socket is bound.
for _ in $(seq 50); do
	ready=0
	for spec in $SPECS; do
		grep -q "listening on" "logs/demo-${spec%%:*}-${spec##*:}.log" \
			2>/dev/null && ready=$((ready + 1))
	done
	[ "$ready" -eq 5 ] && break
	for p in "${demo_pids[@]}"; do
		if ! kill -0 "$p" 2>/dev/null; then
			echo "run-demo: a demo service failed to start:" >&2
			cat logs/demo-*.log >&2
			exit 1
		fi
	done
	sleep 0.1
done
if [ "$ready" -ne 5 ]; then
	echo "run-demo: demo services did not start in time" >&2
	exit 1
fi

cat <<BANNER
Portico demo
  services: users :8001 and :8011  orders :8002  products :8003
            payments :8004   (logs in logs/demo-*.log)
  gateway:  $BUILD/portico -c $CONF   (listening on :8080)
try:
  curl localhost:8080/users/7
  curl 'localhost:8080/recommendations?user=7'
  curl -i localhost:8080/products      # the catalogue, cached 60 s (X-Cache, Age)
  curl -i localhost:8080/orders/1      # 401: orders needs a JWT
  TOKEN=\$($BUILD/gwctl token --key etc/keys/rs256.pem --kid rs1 --sub alice --scope orders:read)
  curl -H "Authorization: Bearer \$TOKEN" localhost:8080/orders/1
  curl -H "Authorization: Bearer \$TOKEN" localhost:8080/api/home   # four services in one
  curl -X POST 'localhost:8003/_control/fail?mode=slow&ms=500'   # products slow: degraded
  curl -X POST localhost:8003/_control/recover
  curl -H "X-API-Key: \$(cat etc/keys/demo-api-key.txt)" localhost:8080/payments/1
  curl -i localhost:8001/health        # a service directly, no gateway
  curl -X POST 'localhost:8011/_control/fail?mode=500'   # users :8011 fails
  $BUILD/gwctl breakers                # ... its breaker opens, health down
  curl -X POST localhost:8011/_control/recover
Ctrl-C stops everything.

BANNER

"$BUILD/portico" -c "$CONF" "$@" &
portico_pid=$!
wait "$portico_pid"
rc=$?
portico_pid=""
echo "run-demo: portico exited with status $rc" >&2
exit "$rc"
