//! A real MariaDB server for one test: `mariadb-install-db` into a temporary directory,
//! started on a free loopback port, killed on drop.

use std::process::{Child, Command};

/// The root password of every test server: none (a loopback-only server on a random port
/// that lives as long as one test).
pub const ROOT_PASSWORD: &str = "";

pub struct Maria {
    dir: tempfile::TempDir,
    server: Child,
    pub port: u16,
}

fn run(c: &mut Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Maria {
    pub fn start() -> Maria {
        Maria::start_with(false).0
    }

    /// A server that also accepts TLS, with a certificate for 127.0.0.1 from a test CA;
    /// returns the PKI's files.
    pub fn start_tls() -> (Maria, super::tls::Pki) {
        let (m, pki) = Maria::start_with(true);
        (m, pki.unwrap())
    }

    fn start_with(tls: bool) -> (Maria, Option<super::tls::Pki>) {
        secret_manager_testkit::tier::environment("MariaDB");
        let dir = tempfile::Builder::new()
            .prefix("sm-maria-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        // Its own temporary directory: servers bootstrapped at the same moment (parallel
        // tests, another suite on the machine) must not share temporary table files.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let user = if unsafe { geteuid() } == 0 {
            "root".to_owned()
        } else {
            std::env::var("USER").unwrap_or_else(|_| "nobody".into())
        };
        run(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--user={user}"))
                .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
                .arg(format!("--tmpdir={}", tmp.display()))
                .env("TMPDIR", &tmp),
            "mariadb-install-db (apt-get install mariadb-server)",
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pki = tls.then(|| {
            let d = dir.path().join("pki");
            std::fs::create_dir(&d).unwrap();
            super::tls::pki(&d)
        });
        let ssl: Vec<String> = pki
            .iter()
            .flat_map(|p| {
                [
                    format!("--ssl-cert={}", p.cert.display()),
                    format!("--ssl-key={}", p.key.display()),
                ]
            })
            .collect();
        let server = Command::new("mariadbd")
            .arg("--no-defaults")
            .args(&ssl)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--tmpdir={}", tmp.display()))
            .env("TMPDIR", &tmp)
            .arg(format!("--user={user}"))
            .args([
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--general-log=1",
            ])
            .arg(format!(
                "--general-log-file={}",
                dir.path().join("general.log").display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mariadbd (apt-get install mariadb-server)");
        let m = Maria { dir, server, port };
        for _ in 0..150 {
            if m.sql_as("root", ROOT_PASSWORD, "SELECT 1").status.success() {
                return (m, pki);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("mariadbd did not start");
    }

    /// A `mysql://` URL for `user` with `password`.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("mysql://{user}:{password}@127.0.0.1:{}/", self.port)
    }

    /// Runs `sql` as root; returns its output (tab-separated, no headers).
    pub fn sql(&self, sql: &str) -> String {
        let out = self.sql_as("root", ROOT_PASSWORD, sql);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Runs `sql` as `user` (the exit status says whether the login worked).
    pub fn sql_as(&self, user: &str, password: &str, sql: &str) -> std::process::Output {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .args(["-h", "127.0.0.1", "-P", &self.port.to_string(), "-u", user])
            .args(["-N", "-B", "-e", sql]);
        if !password.is_empty() {
            c.env("MYSQL_PWD", password);
        }
        c.output().unwrap()
    }

    /// The general query log (every statement).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("general.log")).unwrap_or_default()
    }

    /// The statements (`Query`, or `Execute` of a prepared one) and the logins
    /// (`Connect`) in a piece of the general log.
    pub fn calls(log: &str) -> (Vec<String>, usize) {
        let mut statements = Vec::new();
        let mut logins = 0;
        for l in log.lines() {
            // `[time]\t<thread id> <command>\t<argument>`.
            let fields: Vec<&str> = l.split('\t').collect();
            let Some(i) = fields.iter().position(|f| {
                let mut w = f.split_whitespace();
                // Not the timestamp (`261204  0:27:50`): a number, then a command word.
                w.next()
                    .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()))
                    && w.next()
                        .is_some_and(|c| c.bytes().all(|b| b.is_ascii_alphabetic()))
                    && w.next().is_none()
            }) else {
                continue;
            };
            let command = fields[i].split_whitespace().nth(1).unwrap_or_default();
            let arg = fields.get(i + 1).copied().unwrap_or_default();
            match command {
                "Connect" if !arg.starts_with("Access denied") => logins += 1,
                "Query" | "Execute" => statements.push(arg.to_owned()),
                _ => {}
            }
        }
        (statements, logins)
    }
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

impl Drop for Maria {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
