#!/usr/bin/env bash
# Zero-downtime binary upgrade of the systemd unit (Pingora graceful upgrade). Run as root.
#   1. check the config with the new binary and install it;
#   2. start it with --upgrade inside the unit's cgroup (so systemd accepts it as the new main
#      PID); it waits on server.upgrade_sock for the listening sockets;
#   3. SIGQUIT the old process: it hands the sockets over, stops accepting, lets in-flight
#      requests and streams finish within its grace periods, and exits. systemd re-reads
#      PIDFile= and follows the new process.
# New connections are served by the new process without a gap. The mechanics (steps 2-3) are
# tested under traffic in tests/lifecycle.rs; this wrapper's systemd parts could not be run in
# the sandbox where it was written (no systemd there).
set -euo pipefail
NEW_BIN=${1:?usage: signalbox-upgrade.sh /path/to/new/signalbox}
CONF=${CONF:-/etc/signalbox/signalbox.yaml}
UNIT=${UNIT:-signalbox.service}
OLD_PID=$(systemctl show -p MainPID --value "$UNIT")
[ "$OLD_PID" != "0" ] || { echo "$UNIT is not running" >&2; exit 1; }
CGROUP=$(systemctl show -p ControlGroup --value "$UNIT")

"$NEW_BIN" check-config "$CONF"
install -m 0755 "$NEW_BIN" /usr/local/bin/signalbox.new
mv -f /usr/local/bin/signalbox.new /usr/local/bin/signalbox

# Join the unit's cgroup, drop to the service user, then exec the new binary (it daemonizes and
# writes the pid file once it has the sockets).
sh -c "echo \$\$ > /sys/fs/cgroup${CGROUP}/cgroup.procs && exec setpriv --reuid=signalbox --regid=signalbox --init-groups /usr/local/bin/signalbox run --upgrade -d -c '$CONF'" &
sleep 1
kill -QUIT "$OLD_PID"
echo "upgrade started: old pid $OLD_PID is draining; systemctl status $UNIT shows the new one"
