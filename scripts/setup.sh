#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test cohortdb:
# libclang-dev (bindgen for librocksdb-sys), and the clients the client tests
# (tests/tests/clients.rs) drive: psql, curl (the HTTP collector's tests), Python with psycopg2, psycopg 3,
# asyncpg and SQLAlchemy (in tests/clients/.venv), node-postgres (npm, in
# tests/clients/node), pgjdbc (Debian's libpostgresql-jdbc-java) and a JDK;
# Debian's pgbench (in postgresql-15) and sqlsmith for the load and fuzz tests.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql-15)
command -v sqlsmith >/dev/null 2>&1 || need+=(sqlsmith)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Python drivers, in a project-local virtual environment
venv=tests/clients/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import psycopg2, psycopg, asyncpg, sqlalchemy' >/dev/null 2>&1 ||
  "$venv/bin/python" -m pip install -q -r tests/clients/python/requirements.txt

# node-postgres, from the committed lock file
if [ ! -d tests/clients/node/node_modules/pg ]; then
  (cd tests/clients/node && npm ci --no-audit --no-fund --silent)
fi
