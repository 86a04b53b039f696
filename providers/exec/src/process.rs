//! Running one plugin process — third-party code — with the least it needs and no way to
//! hold the tool hostage:
//!
//! * a cleared environment plus an allowlist ([`BASE_ENV`]) and the variables the user
//!   names for that plugin: the other providers' admin credentials never reach it;
//! * its own process group, killed (children included) on timeout, when the call is
//!   dropped, and by [`kill_running`] when the tool is stopped by a second signal;
//! * request and response moved concurrently inside the timeout: a plugin that answers
//!   without reading its input, or never reads a large one, cannot block the write;
//! * stdout bounded ([`MAX_STDOUT`]), stderr kept to its first [`MAX_STDERR_KEPT`] bytes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

/// Variables every plugin gets from the tool's environment (when set).
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
];

/// The largest response accepted on stdout.
pub const MAX_STDOUT: usize = 1 << 20;

/// How much of stderr is kept for messages.
pub const MAX_STDERR_KEPT: usize = 4 << 10;

/// Process groups of the plugins running now.
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn kill_group(pgid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        // ESRCH: the group is already gone.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Set once the tool is exiting at once ([`stop_all`]): no plugin starts any more, and one
/// whose call registers it after that is killed there and then.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// For a tool that exits at once (a second SIGINT/SIGTERM) without unwinding the calls in
/// flight: kills every plugin running now, starts no other, and kills a plugin that was
/// being started meanwhile as soon as its call registers it — a plugin runs before its
/// call registers its process group, and [`kill_running`] alone misses one that registers
/// just after it looked.
pub fn stop_all() {
    STOPPING.store(true, Ordering::SeqCst);
    kill_running();
}

/// Kills every plugin process group registered now (see [`stop_all`] for a tool that is
/// exiting).
pub fn kill_running() {
    let groups: Vec<i32> = RUNNING
        .lock()
        .map(|g| g.iter().copied().collect())
        .unwrap_or_default();
    for g in groups {
        kill_group(g);
    }
}

/// A running plugin's process group; killing it on drop ends every process it started.
struct Group(i32);

impl Group {
    fn new(pid: u32) -> Group {
        let g = pid as i32;
        if let Ok(mut r) = RUNNING.lock() {
            r.insert(g);
        }
        // Registered before the flag is read, and `stop_all` sets the flag before it
        // reads the registry: one of the two sees the other.
        if STOPPING.load(Ordering::SeqCst) {
            kill_group(g);
        }
        Group(g)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.0);
        if let Ok(mut r) = RUNNING.lock() {
            r.remove(&self.0);
        }
    }
}

/// What a finished plugin left.
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// stdout (it may hold secrets).
    pub stdout: Zeroizing<Vec<u8>>,
    /// stdout went past [`MAX_STDOUT`]; the plugin was killed.
    pub stdout_overflow: bool,
    /// The first [`MAX_STDERR_KEPT`] bytes of stderr.
    pub stderr: Vec<u8>,
    /// How many bytes of stderr there were in all.
    pub stderr_len: usize,
}

/// Why a plugin produced no [`Output`].
#[derive(Debug)]
pub enum RunError {
    /// It could not be started.
    Spawn(std::io::Error),
    /// Waiting for it failed.
    Wait(std::io::Error),
    /// It did not finish within the timeout (and was killed).
    Timeout,
}

async fn read_bounded<R: AsyncRead + Unpin>(
    mut r: R,
    limit: usize,
    pgid: i32,
) -> (Zeroizing<Vec<u8>>, bool) {
    let mut out = Zeroizing::new(Vec::new());
    let mut buf = Zeroizing::new(vec![0u8; 16 << 10]);
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (out, false),
            Ok(n) => {
                if out.len() + n > limit {
                    // Stop it now: a plugin that floods stdout would otherwise block on
                    // a full pipe until the timeout.
                    kill_group(pgid);
                    return (out, true);
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
}

async fn read_head<R: AsyncRead + Unpin>(mut r: R, keep: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut total = 0;
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (out, total),
            Ok(n) => {
                total += n;
                let room = keep.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Runs `program arg` with `input` on stdin, within `timeout`.
pub async fn run(
    program: &Path,
    arg: &str,
    env: &[String],
    input: Zeroizing<Vec<u8>>,
    timeout: Duration,
) -> Result<Output, RunError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(arg).env_clear();
    for k in BASE_ENV
        .iter()
        .copied()
        .chain(env.iter().map(String::as_str))
    {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if STOPPING.load(Ordering::SeqCst) {
        return Err(RunError::Spawn(std::io::Error::other(
            "the tool is stopping: no plugin is started",
        )));
    }
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let group = Group::new(child.id().unwrap_or_default());
    let pgid = group.0;
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let work = async {
        let write = async move {
            // A plugin may answer without reading its input: a broken pipe here is not
            // a failure, the answer is what counts.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let (_, (out, overflow), (err, err_len), status) = tokio::join!(
            write,
            read_bounded(stdout, MAX_STDOUT, pgid),
            read_head(stderr, MAX_STDERR_KEPT),
            async {
                let s = child.wait().await;
                // Whatever it left behind (a background child holding the pipes) goes too.
                kill_group(pgid);
                s
            },
        );
        Ok::<_, RunError>(Output {
            status: status.map_err(RunError::Wait)?,
            stdout: out,
            stdout_overflow: overflow,
            stderr: err,
            stderr_len: err_len,
        })
    };
    let result = tokio::time::timeout(timeout, work).await;
    drop(group);
    match result {
        Ok(r) => r,
        Err(_) => Err(RunError::Timeout),
    }
}
