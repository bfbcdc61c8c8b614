# Sourced by .ci/run: a throwaway PostgreSQL cluster for the tests of the PostgreSQL journal and distributed
# mode, owned by this CI run. Debian's `postgresql` package (installed by .ci/run), a fresh cluster in a temp
# folder trusting local connections, listening on 127.0.0.1 only; stopped and deleted when the run exits.
# Exports PG_TEST_URL, which tutti_testkit::postgres uses.

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pg_bin/initdb" ] || { echo "ci: PostgreSQL's server programs are missing (apt-get install postgresql)" >&2; exit 1; }
pg_dir=$(mktemp -d /tmp/tutti-ci-pg.XXXXXX)
pg_as=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root.
  chown postgres:postgres "$pg_dir"
  pg_as=(runuser -u postgres --)
fi
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${pg_as[@]}" "$pg_bin/initdb" --auth=trust --username=tutti --encoding=UTF8 --no-sync -D "$pg_dir/data" >/dev/null
"${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir -c max_connections=300" start >/dev/null
stop_postgres() {
  "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap stop_postgres EXIT
export PG_TEST_URL="postgres://tutti@127.0.0.1:$pg_port/postgres"
echo "ci: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"
