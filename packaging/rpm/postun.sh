# The state in /var/lib/senhasegura-forwarder and the events in /var/log/senhasegura-forwarder
# are kept on erase (RPM has no purge); remove them by hand when no longer needed.
if [ -d /run/systemd/system ]; then systemctl daemon-reload || :; fi
if [ "$1" -ge 1 ] && [ -d /run/systemd/system ]; then
    systemctl try-restart senhasegura-forwarder.service >/dev/null 2>&1 || :
fi
