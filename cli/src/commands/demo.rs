//! `secret-manager demo`: a whole rotation on a throwaway copy of the example fleet, with
//! no cloud account — the `random` source, local dev and prod remotes, and the same
//! commands an operator runs, each explained in one line.

use super::Ctx;
use crate::error::UsageError;
use crate::error::{CommandError, Context as _};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Show a whole rotation end to end on a throwaway fleet, without any cloud account.
///
/// Copies the example fleet repo (testdata/example-repo) into a temporary directory,
/// gives it a dev and a prod remote (local bare repositories) with every cluster's
/// branch or tag, creates a generated secret (source `random`) for one cluster (the
/// fleet holds another already), and then runs what an operator would: `list`, `rotate`
/// of both (stage → publish → revoke), `list` again,
/// `cluster status` and `audit export`. Nothing outside the temporary directory is
/// touched; it is removed at the end unless --keep is given. Your git configuration is
/// not used (commits are made as "secret-manager demo").
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The example fleet repo to copy.
    #[arg(long, value_name = "DIR", default_value = "testdata/example-repo")]
    pub from: PathBuf,
    /// Where to build the demo fleet (must not exist yet); a temporary directory by
    /// default.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the demo fleet afterwards, to look around (`git log`, the files, the remotes).
    #[arg(long)]
    pub keep: bool,
}

/// The cluster the demo's secret belongs to, and where it lives.
const CLUSTER: &str = "aws.eu-central-1.dev1";
const SECRET_FILE: &str = "applications/service1/state/overlays/aws.eu-central-1.dev1/session.yaml";

/// A command run for the demo: git, or this binary.
struct Runner {
    root: PathBuf,
    fleet: PathBuf,
    exe: PathBuf,
}

impl Runner {
    /// The environment every child gets: the caller's, minus git configuration that
    /// would change what the demo does (signing, hooks), plus an identity for commits.
    fn isolate(c: &mut Command) {
        c.env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "secret-manager demo")
            .env("GIT_AUTHOR_EMAIL", "demo@example.invalid")
            .env("GIT_COMMITTER_NAME", "secret-manager demo")
            .env("GIT_COMMITTER_EMAIL", "demo@example.invalid")
            .env_remove("SECRET_MANAGER_NOW");
    }

    fn git(&self, dir: &Path, args: &[&str]) -> crate::error::Result<()> {
        let mut c = Command::new("git");
        Self::isolate(&mut c);
        let out = c
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .context("cannot run git: is it installed and on PATH?")?;
        if !out.status.success() {
            return Err(CommandError::internal(anyhow::anyhow!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Runs `secret-manager <args>` on the demo fleet, its output going straight to the
    /// terminal; returns its exit code.
    fn us(&self, ctx: &mut Ctx, why: &str, args: &[&str]) -> crate::error::Result<i32> {
        writeln!(ctx.out, "\n# {why}")?;
        writeln!(ctx.out, "$ secret-manager {}", args.join(" "))?;
        ctx.out.flush()?;
        let mut c = Command::new(&self.exe);
        Self::isolate(&mut c);
        let status = c
            .current_dir(&self.fleet)
            .args(args)
            .status()
            .context("cannot run secret-manager itself")?;
        Ok(status.code().unwrap_or(1))
    }
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        let t = e.file_type()?;
        if t.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else if t.is_file() {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

/// Builds the fleet: dev and prod bare remotes, main on dev, every cluster's pointer on
/// its remote, and a working clone at `fleet`.
fn build_fleet(r: &Runner, from: &Path) -> crate::error::Result<()> {
    let root = &r.root;
    for bare in ["dev.git", "prod.git"] {
        r.git(
            root,
            &["init", "--quiet", "--bare", "--initial-branch=main", bare],
        )?;
    }
    let seed = root.join("seed");
    copy_dir(from, &seed).with_context(|| format!("cannot copy {}", from.display()))?;
    let dev = root.join("dev.git");
    let prod = root.join("prod.git");
    r.git(&seed, &["init", "--quiet", "--initial-branch=main"])?;
    r.git(&seed, &["add", "-A"])?;
    r.git(&seed, &["commit", "--quiet", "-m", "The example fleet"])?;
    r.git(&seed, &["remote", "add", "origin", &dev.to_string_lossy()])?;
    r.git(&seed, &["remote", "add", "prod", &prod.to_string_lossy()])?;
    r.git(&seed, &["push", "--quiet", "origin", "main"])?;
    let repo = secret_manager::Repo::open(&seed)?;
    for c in &repo.inventory.clusters {
        let refname = secret_manager::gitops::pointer_ref(c);
        r.git(
            &seed,
            &["push", "--quiet", &c.remote, &format!("HEAD:{refname}")],
        )?;
    }
    std::fs::remove_dir_all(&seed)?;
    r.git(root, &["clone", "--quiet", &dev.to_string_lossy(), "fleet"])?;
    r.git(
        &r.fleet,
        &["remote", "add", "prod", &prod.to_string_lossy()],
    )?;
    r.git(&r.fleet, &["fetch", "--quiet", "--all"])?;
    Ok(())
}

/// Commits the new secret, pushes main and moves the cluster's pointer to it: what an
/// operator does once when a secret is bootstrapped.
fn publish_new_secret(r: &Runner) -> crate::error::Result<()> {
    r.git(&r.fleet, &["add", "-A"])?;
    r.git(
        &r.fleet,
        &[
            "commit",
            "--quiet",
            "-m",
            "Add a generated session secret for service1",
        ],
    )?;
    r.git(&r.fleet, &["push", "--quiet", "origin", "main"])?;
    let repo = secret_manager::Repo::open(&r.fleet)?;
    let c = repo
        .inventory
        .clusters
        .iter()
        .find(|c| c.id == CLUSTER)
        .ok_or_else(|| {
            CommandError::internal(anyhow::anyhow!(
                "the example fleet has no cluster {CLUSTER}"
            ))
        })?;
    let refname = secret_manager::gitops::pointer_ref(c);
    r.git(
        &r.fleet,
        &[
            "push",
            "--quiet",
            "--force",
            &c.remote,
            &format!("HEAD:{refname}"),
        ],
    )
}

pub fn cmd_demo(ctx: &mut Ctx, args: &DemoArgs) -> crate::error::Result<u8> {
    if !args.from.join(".secret-manager.yaml").is_file() {
        return Err(UsageError(format!(
            "{} is not the example fleet repo; run the demo from a checkout of secret-manager, or pass --from <path to testdata/example-repo>",
            args.from.display()
        ))
        .into());
    }
    let temp;
    let root = match &args.dir {
        Some(d) => {
            if d.exists() {
                return Err(UsageError(format!(
                    "--dir {} exists; give a directory that does not exist yet (the demo builds its fleet there)",
                    d.display()
                ))
                .into());
            }
            std::fs::create_dir_all(d)?;
            temp = None;
            d.clone()
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("secret-manager-demo-")
                .tempdir()?;
            let p = t.path().to_path_buf();
            temp = Some(t);
            p
        }
    };
    let r = Runner {
        fleet: root.join("fleet"),
        root: root.clone(),
        exe: std::env::current_exe().context("cannot find this program's own path")?,
    };
    writeln!(
        ctx.out,
        "# A throwaway fleet in {}: the example repo on main, a dev and a prod remote\n# (local bare repositories) with every cluster's branch or tag.",
        root.display()
    )?;
    build_fleet(&r, &args.from)?;

    let code = run_steps(ctx, &r)?;
    match temp {
        Some(t) if args.keep => {
            let kept = t.keep();
            writeln!(
                ctx.out,
                "\n# Kept: the working clone is {}/fleet, the remotes {0}/dev.git and {0}/prod.git.",
                kept.display()
            )?;
        }
        Some(t) => {
            drop(t);
            writeln!(
                ctx.out,
                "\n# Done; the demo fleet is removed (keep it with --keep)."
            )?;
        }
        None => writeln!(
            ctx.out,
            "\n# The working clone is {}/fleet.",
            root.display()
        )?,
    }
    Ok(code)
}

fn run_steps(ctx: &mut Ctx, r: &Runner) -> crate::error::Result<u8> {
    let steps: [(&str, Vec<&str>); 1] = [(
        "Create a generated secret (source random: no cloud account) for one cluster; it is sealed with that cluster's certificate from the repo.",
        vec![
            "create",
            "--source",
            "random",
            "--cluster",
            CLUSTER,
            "--namespace",
            "service1",
            "--name",
            "session-secret",
            "--key-mappings",
            "[SESSION_SECRET:Value]",
            "--param",
            "id=service1/session",
            "-w",
            SECRET_FILE,
        ],
    )];
    for (why, a) in &steps {
        let code = r.us(ctx, why, a)?;
        if code != 0 {
            return Err(CommandError::internal(anyhow::anyhow!(
                "the demo stopped: `secret-manager {}` exited {code}",
                a.join(" ")
            )));
        }
    }
    writeln!(
        ctx.out,
        "\n# Commit it, push main and move {CLUSTER}'s branch to it: done once, by hand, when a\n# secret is added (the audit shows such a commit without the tool's trailers as `manual`)."
    )?;
    publish_new_secret(r)?;
    let rest: [(&str, Vec<&str>); 5] = [
        (
            "Every generated secret and how old it is: the one just created and the example fleet's own (service2's webhook key on gcp.europe-west1.dev2).",
            vec!["list", "--source", "random"],
        ),
        (
            "Rotate both: mint new values, seal each for its cluster, commit to main, publish to each cluster's branch or tag, then revoke the old ones (a zero grace period, for the demo).",
            vec![
                "--yes",
                "rotate",
                "--source",
                "random",
                "--older-than",
                "0s",
                "--revoke-after",
                "0s",
            ],
        ),
        (
            "Both now carry a new key id and today's date.",
            vec!["list", "--source", "random"],
        ),
        (
            "Where each cluster's branch or tag stands against main.",
            vec!["cluster", "status"],
        ),
        (
            "The history, rebuilt from the commits' trailers.",
            vec!["audit", "export", "--source", "random"],
        ),
    ];
    for (why, a) in &rest {
        let code = r.us(ctx, why, a)?;
        if code != 0 {
            writeln!(
                ctx.out,
                "\n# `secret-manager {}` exited {code}; the demo stops here.",
                a.join(" ")
            )?;
            return Ok(u8::try_from(code).unwrap_or(crate::exit::INTERNAL));
        }
    }
    Ok(crate::exit::OK)
}
