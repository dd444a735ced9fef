#!/bin/sh
# First-boot callback: tells the Hearth manager this guest's IP. Reads the manager URL, VM id
# and registration token from /etc/hearth-agent.conf. Uses curl, wget or busybox wget,
# whichever exists; retries with a bounded backoff. Logs to /var/log/hearth-callback.log.
exec >>"${HEARTH_CALLBACK_LOG:-/var/log/hearth-callback.log}" 2>&1
. "${HEARTH_CONF:-/etc/hearth-agent.conf}"
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) hearth-callback: $*"; }

guest_ip() {
	iface=$(awk '$2 == "00000000" && $8 == "00000000" { print $1; exit }' /proc/net/route 2>/dev/null)
	ip=""
	if [ -n "$iface" ] && command -v ip >/dev/null 2>&1; then
		ip=$(ip -4 -o addr show dev "$iface" scope global 2>/dev/null | awk '{ split($4, a, "/"); print a[1]; exit }')
	fi
	if [ -z "$ip" ] && command -v hostname >/dev/null 2>&1; then
		ip=$(hostname -I 2>/dev/null | awk '{ print $1 }')
	fi
	echo "$ip"
}

post() {
	url="$HEARTH_MANAGER_URL/v1/vms/$HEARTH_VM_ID/guest-ip"
	body="{\"guest_ip\": \"$1\"}"
	if command -v curl >/dev/null 2>&1; then
		curl -fsS -m 15 -X POST -H "Authorization: Bearer $HEARTH_REGISTRATION_TOKEN" \
			-H "Content-Type: application/json" -d "$body" "$url" >/dev/null
	elif command -v wget >/dev/null 2>&1; then
		wget -q -T 15 -O /dev/null --header "Authorization: Bearer $HEARTH_REGISTRATION_TOKEN" \
			--header "Content-Type: application/json" --post-data "$body" "$url"
	elif command -v busybox >/dev/null 2>&1; then
		busybox wget -q -T 15 -O /dev/null --header "Authorization: Bearer $HEARTH_REGISTRATION_TOKEN" \
			--header "Content-Type: application/json" --post-data "$body" "$url"
	else
		log "neither curl nor wget nor busybox is installed; cannot call back"
		return 2
	fi
}

delay=2
attempt=1
while [ "$attempt" -le "${HEARTH_CALLBACK_ATTEMPTS:-12}" ]; do
	ip=$(guest_ip)
	if [ -z "$ip" ]; then
		log "attempt $attempt: no IPv4 address on the default-route interface yet"
	elif post "$ip"; then
		log "registered guest IP $ip with $HEARTH_MANAGER_URL"
		exit 0
	else
		rc=$?
		[ "$rc" -eq 2 ] && exit 1
		log "attempt $attempt: manager did not accept $ip (exit $rc)"
	fi
	sleep "$((delay / ${HEARTH_CALLBACK_SPEEDUP:-1}))"
	attempt=$((attempt + 1))
	delay=$((delay * 2))
	[ "$delay" -gt 60 ] && delay=60
done
log "giving up after $((attempt - 1)) attempts; the agent will keep trying on its own"
exit 1
