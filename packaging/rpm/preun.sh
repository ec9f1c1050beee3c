# Erase (not upgrade): stop the service(s) first.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now senhasegura-forwarder.service 'senhasegura-forwarder@*.service' >/dev/null 2>&1 || :
fi
