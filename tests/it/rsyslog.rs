//! A private rsyslog for the syslog sink tests: its own config, work dir, pid file, loopback
//! port or socket path, writing what it receives to a file as
//! `protocol-version|app-name|msgid|hostname|msg`. It never touches the system's syslog
//! (`SysSock.Use="off"`). `tests/run-all.sh` installs rsyslog and rsyslog-gnutls.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Udp,
    Tcp,
    Tls,
    UnixDatagram,
    UnixStream,
}

pub struct Rsyslog {
    pub dir: tempfile::TempDir,
    pub input: Input,
    pub port: u16,
    child: Option<Child>,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Record {
    pub version: String,
    pub app: String,
    pub msgid: String,
    pub hostname: String,
    pub msg: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and a server certificate for 127.0.0.1, as PEM files in `dir` (ca.pem, cert.pem,
/// key.pem), and the CA's PEM.
pub fn make_certs(dir: &Path, prefix: &str) -> PathBuf {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{prefix} test CA"));
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{prefix}ca.pem")), ca.pem()).unwrap();
    std::fs::write(dir.join(format!("{prefix}cert.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{prefix}key.pem")), key.serialize_pem()).unwrap();
    dir.join(format!("{prefix}ca.pem"))
}

impl Rsyslog {
    pub fn start(input: Input) -> Rsyslog {
        assert!(
            Path::new(RSYSLOGD).exists(),
            "{RSYSLOGD} is missing: run `bash tests/run-all.sh`, which installs rsyslog and rsyslog-gnutls"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        let mut global = format!(
            "global(workDirectory=\"{d}/work\" parser.escapeControlCharactersOnReceive=\"off\" maxMessageSize=\"64k\""
        );
        let module_input = match input {
            Input::Udp => format!(
                "module(load=\"imudp\")\ninput(type=\"imudp\" port=\"{port}\" address=\"127.0.0.1\" ruleset=\"out\")"
            ),
            Input::Tcp => format!(
                "module(load=\"imtcp\")\ninput(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\" ruleset=\"out\")"
            ),
            Input::Tls => {
                make_certs(dir.path(), "");
                global.push_str(&format!(
                    " defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=\"{d}/ca.pem\" \
                     defaultNetstreamDriverCertFile=\"{d}/cert.pem\" defaultNetstreamDriverKeyFile=\"{d}/key.pem\""
                ));
                format!(
                    "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n\
                     input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\" ruleset=\"out\")"
                )
            }
            Input::UnixDatagram => format!(
                "module(load=\"imuxsock\" SysSock.Use=\"off\")\ninput(type=\"imuxsock\" Socket=\"{d}/log.sock\" \
                 CreatePath=\"on\" UseSpecialParser=\"off\" ParseHostname=\"on\" Ruleset=\"out\")"
            ),
            Input::UnixStream => format!(
                "module(load=\"imptcp\")\ninput(type=\"imptcp\" path=\"{d}/stream.sock\" unlink=\"on\" ruleset=\"out\")"
            ),
        };
        global.push(')');
        let conf = format!(
            "{global}\n{module_input}\n\
             template(name=\"t\" type=\"string\" string=\"%protocol-version%|%app-name%|%msgid%|%hostname%|%msg%\\n\")\n\
             ruleset(name=\"out\") {{ action(type=\"omfile\" file=\"{d}/out.log\" template=\"t\") }}\n"
        );
        std::fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
        let mut r = Rsyslog {
            dir,
            input,
            port,
            child: None,
        };
        r.spawn();
        r
    }

    /// Where the agent sends: `127.0.0.1:PORT` or the socket path.
    pub fn address(&self) -> String {
        match self.input {
            Input::UnixDatagram => self.dir.path().join("log.sock").display().to_string(),
            Input::UnixStream => self.dir.path().join("stream.sock").display().to_string(),
            _ => format!("127.0.0.1:{}", self.port),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn spawn(&mut self) {
        let d = self.dir.path();
        let _ = std::fs::remove_file(d.join("rsyslog.pid"));
        let child = Command::new(RSYSLOGD)
            .args(["-n", "-f"])
            .arg(d.join("rsyslog.conf"))
            .arg("-i")
            .arg(d.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let ready = match self.input {
                Input::Tcp | Input::Tls => std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
                Input::UnixDatagram | Input::UnixStream => Path::new(&self.address()).exists(),
                Input::Udp => d.join("rsyslog.pid").exists(),
            };
            if ready {
                std::thread::sleep(Duration::from_millis(200));
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "rsyslogd did not come up; config:\n{}",
                std::fs::read_to_string(d.join("rsyslog.conf")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    pub fn records(&self) -> Vec<Record> {
        let text = std::fs::read_to_string(self.dir.path().join("out.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let mut p = l.splitn(5, '|');
                let mut next = || p.next().unwrap_or_default().to_string();
                Record {
                    version: next(),
                    app: next(),
                    msgid: next(),
                    hostname: next(),
                    msg: next(),
                }
            })
            .collect()
    }

    /// Wait until at least `n` records arrived (or a timeout), then return all of them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Record> {
        let started = Instant::now();
        loop {
            let r = self.records();
            if r.len() >= n || started.elapsed() > timeout {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
