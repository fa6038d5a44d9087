#!/usr/bin/env bash
# `make run`: freshet on 127.0.0.1:6543 plus, unless FRESHET_DEMO=0, an embedded
# Kafka-protocol broker (librdkafka's mock cluster, `freshet-kafka-mock`) on
# 127.0.0.1:${FRESHET_KAFKA_PORT:-9092} with a `tweets` topic of 8 partitions, fed by the tweet
# generator at ${FRESHET_DEMO_RATE:-50} tweets/s. The broker keeps about the last 5 MB of each
# partition (a mock-cluster limit) and forgets everything when make run stops.
set -euo pipefail
bin=${1:?usage: run.sh BIN_DIR}
listen=${FRESHET_LISTEN:-127.0.0.1:6543}
data=${FRESHET_DATA_DIR:-./freshet-data}
if [ "${FRESHET_DEMO:-1}" != 0 ]; then
  port=${FRESHET_KAFKA_PORT:-9092}
  coproc MOCK { exec "$bin/freshet-kafka-mock" --topic tweets:8 --proxy-port "$port"; }
  mock_pid=$MOCK_PID
  read -r word _ <&"${MOCK[0]}" || true
  if [ "${word:-}" != bootstrap ]; then
    echo "the embedded Kafka broker did not start (is port $port taken? set FRESHET_KAFKA_PORT)" >&2
    exit 1
  fi
  "$bin/freshet-tweets" --bootstrap "127.0.0.1:$port" --rate "${FRESHET_DEMO_RATE:-50}" 2>/dev/null &
  gen_pid=$!
  trap 'kill "$gen_pid" "$mock_pid" 2>/dev/null || true' EXIT
  echo "embedded Kafka broker on 127.0.0.1:$port, topic tweets (8 partitions), ${FRESHET_DEMO_RATE:-50} tweets/s"
  echo "(the embedded broker starts empty each run: a source created over it in an earlier run is stale;"
  echo " DROP SOURCE tweets CASCADE and create it again, or start with an empty FRESHET_DATA_DIR)"
  echo "try: psql -h ${listen%:*} -p ${listen##*:} freshet -f examples/tweets/create_source.sql -f examples/tweets/views.sql"
fi
"$bin/freshet" --listen "$listen" --data-dir "$data"
