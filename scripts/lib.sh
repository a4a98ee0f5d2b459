# shellcheck shell=bash
# Helpers shared by scripts/test, scripts/conformance and scripts/demo. Source it; do not run it.
#
# Everything a machine needs is installed here, by the project, because a fresh CI or developer
# machine has only the OS and the Rust toolchain.

# Debian keeps nutcracker in /usr/sbin, which a non-root PATH often lacks.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac

# Prints a section header, so a long CI log can be scanned by eye.
section() {
  printf '\n==== %s ====\n' "$*"
}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Runs a command as root: directly when we are root (as in CI), else through sudo
# (non-interactive when there is no terminal, so CI fails fast instead of hanging on a prompt).
as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null; then
    if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
  else
    die "need root to run: $* (no sudo found)"
  fi
}

_apt_updated=0

# ensure_packages PACKAGE:COMMAND...
# Installs each Debian PACKAGE whose COMMAND is not on PATH. A command check (not dpkg) also
# accepts tools a developer built from source. 'apt-get update' runs once, and only if
# something is missing.
ensure_packages() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair#*:}" >/dev/null || missing+=("${pair%%:*}")
  done
  if ((${#missing[@]} == 0)); then
    echo "already installed: ${*%%:*}"
    return 0
  fi
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them by hand"
  echo "installing: ${missing[*]}"

  # Installing redis-server, memcached or nutcracker would start its system service on the
  # default port. Tests and scripts start their own servers on other ports, so those services
  # are only noise: a policy-rc.d that exits 101 ("action forbidden") keeps them from starting.
  # An existing policy-rc.d (Docker images ship one) is left alone.
  local policy=/usr/sbin/policy-rc.d created_policy=0 rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    created_policy=1
  fi
  if ((_apt_updated == 0)); then
    as_root apt-get update -q || rc=$?
    _apt_updated=1
  fi
  if ((rc == 0)); then
    as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
  fi
  if ((created_policy)); then as_root rm -f "$policy"; fi
  ((rc == 0)) || die "apt-get failed (exit $rc) installing: ${missing[*]}"
}

# True if something accepts TCP connections on 127.0.0.1:PORT (bash's /dev/tcp: no nc needed).
# ensure_python_module MODULE PIP_PACKAGE: makes `python3 -c "import MODULE"` work, installing
# from PyPI when missing (the metrics test validates /metrics with prometheus_client's parser).
ensure_python_module() {
  local module=$1 package=$2
  command -v python3 >/dev/null || ensure_packages python3:python3 python3-pip:pip3
  if python3 -c "import $module" 2>/dev/null; then
    return 0
  fi
  echo "installing Python package $package"
  python3 -m pip install --quiet "$package" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "$package" ||
    die "could not install the Python package $package"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_ports_taken=" "

# alloc_port VAR: stores in VAR a loopback port nothing listens on and not handed out before by
# this shell. Drawn below the kernel's ephemeral range (32768+), where outgoing connections
# take their local ports, as tests/common/mod.rs does.
alloc_port() {
  # Locals are _-prefixed: printf -v would otherwise set a local that shadows the caller's VAR.
  local _port _try
  for _try in {1..200}; do
    _port=$((10000 + RANDOM % 22000))
    if [[ $_ports_taken != *" $_port "* ]] && ! port_in_use "$_port"; then
      _ports_taken+="$_port "
      printf -v "$1" '%s' "$_port"
      return 0
    fi
  done
  die "no free loopback port found"
}

# wait_port PORT SECONDS [PID]: waits until 127.0.0.1:PORT accepts; fails early if PID exits.
wait_port() {
  local port=$1 tries=$(($2 * 10)) pid=${3:-}
  while ((tries-- > 0)); do
    port_in_use "$port" && return 0
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# memcached refuses to run as root unless told which user to be.
MEMCACHED_USER_ARGS=()
if ((EUID == 0)); then MEMCACHED_USER_ARGS=(-u root); fi

# start_memcached PORT LOGFILE: runs memcached in the background on 127.0.0.1:PORT (1 thread,
# 64 MB, no UDP) and appends its pid to the caller's SERVER_PIDS array.
start_memcached() {
  memcached -l 127.0.0.1 -p "$1" -U 0 -t 1 -m 64 -c 1024 "${MEMCACHED_USER_ARGS[@]}" \
    </dev/null >"$2" 2>&1 &
  SERVER_PIDS+=("$!")
  wait_port "$1" 5 "$!" || { cat "$2" >&2; die "memcached did not start on port $1"; }
}

# start_redis PORT DIR: runs redis-server in the background on 127.0.0.1:PORT, without
# persistence, with DIR as its working dir and log location; appends its pid to SERVER_PIDS.
start_redis() {
  mkdir -p "$2"
  redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --protected-mode no \
    --daemonize no --dir "$2" --logfile "$2/redis.log" </dev/null >/dev/null 2>&1 &
  SERVER_PIDS+=("$!")
  wait_port "$1" 5 "$!" || { cat "$2/redis.log" >&2; die "redis-server did not start on port $1"; }
}

# stop_servers: kills and reaps every pid in SERVER_PIDS (only processes this script started).
stop_servers() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SERVER_PIDS=()
}
SERVER_PIDS=()
