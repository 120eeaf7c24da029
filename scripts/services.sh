#!/usr/bin/env bash
# Before the tests that need them: checks that Redis (127.0.0.1:6379) and PostgreSQL
# (127.0.0.1:5432) answer, and starts a stopped one with this machine's own command. Suites that
# need a service skip with a message naming it where it still does not answer.
set -uo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  for _ in $(seq 1 50); do answers "$1" && return 0; sleep 0.2; done
  return 1
}

if ! answers 6379; then
  echo "services: Redis does not answer on 127.0.0.1:6379; starting it" >&2
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
  wait_for 6379 || echo "services: Redis is not available: its tests will be skipped" >&2
fi

if ! answers 5432; then
  echo "services: PostgreSQL does not answer on 127.0.0.1:5432; starting it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null | head -1)" main start >/dev/null 2>&1 || true
  wait_for 5432 || echo "services: PostgreSQL is not available: its tests will be skipped" >&2
fi
exit 0
