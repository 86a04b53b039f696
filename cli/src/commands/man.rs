//! `secret-manager man`: the manual in roff, for `man -l -` or a MANPATH directory.

use super::{Cli, Ctx};
use crate::error::Context as _;
use crate::error::UsageError;
use clap::{Args, CommandFactory};
use std::path::PathBuf;

/// Print the manual page of the whole CLI (roff).
///
/// Read it with `secret-manager man | man -l -`. With --out-dir, writes one page per
/// command instead (secret-manager.1, secret-manager-rotate.1, ...), e.g. into
/// ~/.local/share/man/man1 so that `man secret-manager-rotate` finds it.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command into DIR (which must exist) instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn cmd_man(ctx: &mut Ctx, args: &ManArgs) -> crate::error::Result<u8> {
    let cmd = Cli::command();
    if let Some(dir) = &args.out_dir {
        if !dir.is_dir() {
            return Err(UsageError(format!(
                "--out-dir {}: not a directory; create it first",
                dir.display()
            ))
            .into());
        }
        clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("writing manual pages into {}", dir.display()))?;
        return Ok(crate::exit::OK);
    }
    // One page: the top-level page (with the global options), then each command's
    // synopsis, description and own options under a heading of its own. The sections
    // come from the command before clap propagates the global options into it, so that
    // they are not repeated for every command.
    let mut built = cmd.clone();
    built.build();
    clap_mangen::Man::new(built).render(&mut ctx.out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page_section(
            &mut ctx.out,
            sub,
            &format!("secret-manager {}", sub.get_name()),
        )?;
        for subsub in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
            page_section(
                &mut ctx.out,
                subsub,
                &format!("secret-manager {} {}", sub.get_name(), subsub.get_name()),
            )?;
        }
    }
    ctx.out.flush()?;
    Ok(crate::exit::OK)
}

/// A command's synopsis, description and options as sections of the page being written.
fn page_section(
    out: &mut dyn std::io::Write,
    sub: &clap::Command,
    title: &str,
) -> std::io::Result<()> {
    let heading = clap_mangen::roff::Roff::new()
        .control("SH", [title.to_uppercase().as_str()])
        .to_roff();
    out.write_all(heading.as_bytes())?;
    let man = clap_mangen::Man::new(sub.clone().bin_name(title));
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    Ok(())
}
