//! Starts a real `moto_server` (the AWS IAM/STS endpoint of the tests), or a real
//! Prometheus Pushgateway, on a free loopback port.
//!
//! A port picked with `bind(:0)` is free only until it is released, and tests start many
//! servers at once (in one process and, under nextest, in several). Two servers can
//! therefore be handed the same port: one binds, the other exits with "Address already in
//! use", and a plain connect check then passes for the loser too — its test talks to the
//! winner's server and fails with "connection refused" once that test ends. So success is
//! judged by the server's own line `Running on http://127.0.0.1:PORT`, and a collision is
//! retried on a new port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `moto_server`; killed on drop.
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    /// Starts the `moto_server` at `bin` and waits until it has bound its port.
    ///
    /// Panics with what to do when the binary is missing or the server cannot start.
    pub fn start(bin: &str) -> MotoServer {
        crate::tier::environment("moto_server");
        assert!(
            Path::new(bin).exists(),
            "moto_server not found at {bin}: run scripts/test (it installs moto[server] into target/venv) or set MOTO_SERVER"
        );
        let mut last = String::new();
        for _ in 0..8 {
            match try_start(bin, free_port()) {
                Ok(server) => return server,
                Err(why) => last = why,
            }
        }
        panic!("moto_server did not start: {last}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn try_start(bin: &str, port: u16) -> Result<MotoServer, String> {
    let (child, url) = spawn_ready(
        bin,
        &[
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        port,
        &format!("Running on http://127.0.0.1:{port}"),
    )?;
    Ok(MotoServer { child, url })
}

/// A running Prometheus Pushgateway (Debian's `prometheus-pushgateway`); killed on drop.
pub struct Pushgateway {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pushgateway {
    /// Starts the pushgateway at `bin` on a free loopback port, waiting for its
    /// `Listening on` line (a port collision is retried on a new port).
    pub fn start(bin: &str) -> Pushgateway {
        crate::tier::environment("prometheus-pushgateway");
        let mut last = String::new();
        for _ in 0..8 {
            let port = free_port();
            match spawn_ready(
                bin,
                &[format!("--web.listen-address=127.0.0.1:{port}")],
                port,
                &format!("address=127.0.0.1:{port}"),
            ) {
                Ok((child, url)) => return Pushgateway { child, url },
                Err(why) => last = why,
            }
        }
        panic!(
            "{bin} did not start: {last} (apt-get install prometheus-pushgateway, or set PUSHGATEWAY)"
        );
    }
}

/// Spawns `bin args`, waits for `ready` on its stderr and for the port to accept.
fn spawn_ready(
    bin: &str,
    args: &[String],
    port: u16,
    ready: &str,
) -> Result<(Child, String), String> {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {bin}: {e}"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let ready = ready.to_owned();
    // Reads stderr to the end, so the server never blocks on a full pipe; reports the
    // first decisive line.
    std::thread::spawn(move || {
        let mut told = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !told && line.contains(&ready) {
                let _ = tx.send(Ok(()));
                told = true;
            } else if !told && (line.contains("in use") || line.contains("level=error")) {
                let _ = tx.send(Err(line));
                told = true;
            }
        }
        if !told {
            let _ = tx.send(Err("exited before it was ready".to_owned()));
        }
    });
    let kill = |mut child: Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            kill(child);
            return Err(format!("port {port}: {why}"));
        }
        Err(_) => {
            kill(child);
            return Err(format!("port {port}: no answer within 30 s"));
        }
    }
    // The line is printed just before the accept loop; wait until it accepts.
    for _ in 0..100 {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("port {port}: exited with {status}"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((child, format!("http://127.0.0.1:{port}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(child);
    Err(format!("port {port}: ready but not accepting"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin() -> String {
        std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/venv/bin/moto_server"
            )
            .to_owned()
        })
    }

    #[test]
    #[ignore = "environment: needs moto_server (scripts/test runs it)"]
    fn a_port_taken_by_another_server_is_a_failed_start_not_a_false_ready() {
        let bin = bin();
        if !Path::new(&bin).exists() {
            panic!("moto_server not found at {bin}: run scripts/test or set MOTO_SERVER");
        }
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = other.local_addr().unwrap().port();
        let err = try_start(&bin, port).err().expect("the start must fail");
        assert!(err.contains("in use"), "{err}");
        let server = MotoServer::start(&bin);
        assert!(!server.url.ends_with(&format!(":{port}")));
    }
}
