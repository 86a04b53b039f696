//! A real PostgreSQL server for one test: `initdb` into a temporary directory, started on
//! a free loopback port with SCRAM authentication, stopped (immediately) on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The superuser's password of every test server.
pub const SUPERUSER_PASSWORD: &str = "test-superuser-pw";

pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The directory with PostgreSQL's server programs (Debian: /usr/lib/postgresql/<v>/bin).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|b| b.join("pg_ctl").is_file())
        .expect("PostgreSQL server programs (apt-get install postgresql; scripts/test installs it)")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs a server program as the `postgres` user when we are root (initdb and the server
/// refuse to run as root).
fn server_cmd(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pg {
    pub fn start() -> Pg {
        Pg::start_with(false).0
    }

    /// A server that also accepts TLS, with a certificate for 127.0.0.1 from a test CA;
    /// returns the PKI's files.
    pub fn start_tls() -> (Pg, super::tls::Pki) {
        let (pg, pki) = Pg::start_with(true);
        (pg, pki.unwrap())
    }

    fn start_with(tls: bool) -> (Pg, Option<super::tls::Pki>) {
        secret_manager_testkit::tier::environment("PostgreSQL");
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("sm-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        let pki = tls.then(|| {
            let d = dir.path().join("pki");
            std::fs::create_dir(&d).unwrap();
            super::tls::pki(&d)
        });
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let mut c = server_cmd(&bin, "initdb");
        c.arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(c, "initdb");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ssl = match &pki {
            // The key must be the server user's and private (chowned with the directory).
            Some(p) => {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&p.key, std::fs::Permissions::from_mode(0o600)).unwrap();
                if is_root() {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"])
                        .arg(dir.path().join("pki"));
                    run(c, "chown pki");
                }
                format!(
                    " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                    p.cert.display(),
                    p.key.display()
                )
            }
            None => String::new(),
        };
        let mut c = server_cmd(&bin, "pg_ctl");
        c.arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(data.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c log_statement=all -c log_connections=on{ssl}",
                data.display()
            ))
            .args(["-w", "start"]);
        run(c, "pg_ctl start");
        (Pg { dir, bin, port }, pki)
    }

    /// A `postgres://` URL for `user` with `password`.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Runs `sql` as the superuser with psql; returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = self.psql_as("postgres", SUPERUSER_PASSWORD, sql);
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Runs `sql` as `user` (the exit status says whether the login worked).
    pub fn psql_as(&self, user: &str, password: &str, sql: &str) -> std::process::Output {
        Command::new("psql")
            .env("PGPASSWORD", password)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .unwrap()
    }

    /// The server's log (every statement: `log_statement=all`; every login:
    /// `log_connections=on`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/server.log")).unwrap_or_default()
    }

    /// The statements (simple or extended protocol) and the logins in a piece of the log.
    pub fn calls(log: &str) -> (Vec<String>, usize) {
        let statements = log
            .lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once("LOG:  ")?;
                (rest.starts_with("statement: ") || rest.starts_with("execute "))
                    .then(|| rest.to_owned())
            })
            .collect();
        let logins = log
            .lines()
            .filter(|l| l.contains("connection authorized"))
            .count();
        (statements, logins)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let mut c = server_cmd(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = c.output();
    }
}
