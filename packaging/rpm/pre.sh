# The service user, from the sysusers.d file when systemd-sysusers is there.
if ! getent passwd senhasegura-forwarder >/dev/null; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        echo 'u senhasegura-forwarder - "senhasegura-forwarder service" /var/lib/senhasegura-forwarder /sbin/nologin' | systemd-sysusers --replace=/usr/lib/sysusers.d/senhasegura-forwarder.conf -
    else
        useradd --system --user-group --home-dir /var/lib/senhasegura-forwarder --no-create-home \
            --shell /sbin/nologin --comment "senhasegura-forwarder service" senhasegura-forwarder
    fi
fi
