# systemd creates these too (StateDirectory=, LogsDirectory=); here they exist for `check`
# run by hand as the service user before the first start. The config directory (config and
# secrets) is open to root and the service's group only.
install -d -m 0700 -o senhasegura-forwarder -g senhasegura-forwarder /var/lib/senhasegura-forwarder
install -d -m 0750 -o senhasegura-forwarder -g senhasegura-forwarder /var/log/senhasegura-forwarder
# On the first install only ($1 = 1): an upgrade keeps what the administrator set.
if [ "$1" = 1 ]; then
  chgrp senhasegura-forwarder /etc/senhasegura-forwarder && chmod 0750 /etc/senhasegura-forwarder
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload || :; fi
