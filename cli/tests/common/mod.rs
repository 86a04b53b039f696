//! The binary tier's harness: hermetic runs of the binary (`cmd`, `Bot`), moto, the
//! database servers. What the library's tests share with it (the git fleet, repo copies,
//! the TEST-ONLY decryptor) is the root's `tests/support`, included here.
#![allow(dead_code)]

pub mod aws;

#[path = "../../../tests/support/mod.rs"]
mod support;
pub use support::*;

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The binary with a cleared environment: pinned clock, no colour, 120 columns,
/// git config pointed at /dev/null, and only the system PATH.
pub fn cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_secret-manager"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SECRET_MANAGER_NOW", NOW)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", std::env::temp_dir());
    c
}

pub fn run_in(args: &[&str]) -> Run {
    run_cmd(cmd().args(args))
}

pub fn run_cmd(c: &mut Command) -> Run {
    let out = c.output().expect("binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

pub mod db;
pub mod maria;
pub mod pg;
pub mod tls;

/// One run of the binary the way a test's bot runs it (`GitFleet::bot`): on the fleet's
/// `work` clone, at a pinned time, as the rotator's git identity, with moto's AWS
/// environment when asked. The command line the rotation tests used to build by hand.
pub struct Bot {
    c: Command,
    repo: PathBuf,
    args: Vec<std::ffi::OsString>,
}

impl Bot {
    /// Adds moto's AWS environment (test credentials only).
    pub fn aws(mut self, moto: &Moto) -> Bot {
        moto.env(&mut self.c);
        self
    }

    /// Sets one environment variable of the run.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Bot {
        self.c.env(key, value);
        self
    }

    /// Runs in another clone than `work`.
    pub fn repo(mut self, dir: &Path) -> Bot {
        self.repo = dir.to_owned();
        self
    }

    /// Appends arguments (after `--repo <clone>`).
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Bot {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `rotate --yes --revoke-after 0s <args>`: one run that stages, publishes and revokes.
    pub fn rotate_now(self, args: &[&str]) -> Run {
        self.args(["--yes", "rotate", "--revoke-after", "0s"])
            .args(args)
            .run()
    }

    /// The command, for a test that spawns it itself.
    pub fn command(mut self) -> Command {
        self.c.arg("--repo").arg(&self.repo).args(&self.args);
        self.c
    }

    /// Runs it to the end.
    pub fn run(self) -> Run {
        run_cmd(&mut self.command())
    }
}

impl GitFleet {
    /// A run of the binary on `work` at `now` (RFC 3339), committing as the rotator.
    pub fn bot(&self, now: &str) -> Bot {
        let mut c = cmd();
        c.env("SECRET_MANAGER_NOW", now)
            .env("GIT_AUTHOR_NAME", "Rotator")
            .env("GIT_AUTHOR_EMAIL", "rotator@example.com");
        Bot {
            c,
            repo: self.path("work"),
            args: Vec::new(),
        }
    }
}

/// A running `moto_server` on a free loopback port; killed on drop.
pub struct Moto {
    _server: secret_manager_testkit::MotoServer,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
            root()
                .join("target/venv/bin/moto_server")
                .display()
                .to_string()
        });
        let server = secret_manager_testkit::MotoServer::start(&bin);
        Moto {
            url: server.url.clone(),
            _server: server,
        }
    }

    /// Sets the AWS environment of `c` to this moto (test credentials only).
    pub fn env<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("AWS_ENDPOINT_URL", &self.url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
    }

    /// Calls an IAM Query API action directly (moto does not check signatures).
    pub fn iam(&self, params: &[(&str, &str)]) -> String {
        use std::io::{Read, Write};
        let mut body = String::from("Version=2010-05-08");
        for (k, v) in params {
            body.push_str(&format!("&{k}={v}"));
        }
        let host = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20261121/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200"),
            "moto IAM call {params:?} failed: {out}"
        );
        out
    }

    /// Access key ids moto holds for `user`.
    pub fn key_ids(&self, user: &str) -> Vec<String> {
        let out = self.iam(&[("Action", "ListAccessKeys"), ("UserName", user)]);
        out.split("<AccessKeyId>")
            .skip(1)
            .filter_map(|s| s.split('<').next())
            .map(str::to_owned)
            .collect()
    }
}

/// Puts testdata/plugins first on PATH of `c`, with the demo plugin's state in `state`.
pub fn with_demo_plugin<'a>(c: &'a mut Command, state: &Path) -> &'a mut Command {
    let path = format!(
        "{}:{}",
        testdata("plugins").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.env("PATH", path).env("DEMO_PROVIDER_STATE", state)
}

/// Runs `c` (built by [`cmd`] and friends) on a pseudo-terminal through util-linux
/// `script`, as an operator at a terminal would; returns what the terminal showed
/// (stdout and stderr together) and the exit code.
pub fn run_on_terminal(c: &Command) -> Run {
    let mut line = String::new();
    for a in std::iter::once(c.get_program()).chain(c.get_args()) {
        let a = a.to_str().expect("utf-8 argument");
        line.push_str(&format!("'{}' ", a.replace('\'', "'\\''")));
    }
    let mut s = Command::new("script");
    s.args(["-qefc", &line, "/dev/null"]).env_clear();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            s.env(k, v);
        }
    }
    s.stdin(std::process::Stdio::null());
    run_cmd_lossy(&mut s)
}

/// Like [`run_cmd`], for output that need not be UTF-8.
pub fn run_cmd_lossy(c: &mut Command) -> Run {
    let out = c.output().expect("runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
