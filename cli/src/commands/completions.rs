//! `secret-manager completions`: a shell completion script on stdout.

use super::{Cli, Ctx};
use clap::{Args, CommandFactory};

/// Print a shell completion script.
///
/// Install it where your shell looks for completions, e.g.
///   bash:  secret-manager completions bash > ~/.local/share/bash-completion/completions/secret-manager
///   zsh:   secret-manager completions zsh > ~/.zfunc/_secret-manager   (with fpath+=~/.zfunc before compinit)
///   fish:  secret-manager completions fish > ~/.config/fish/completions/secret-manager.fish
///   PowerShell: secret-manager completions powershell >> $PROFILE
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn cmd_completions(ctx: &mut Ctx, args: &CompletionsArgs) -> crate::error::Result<u8> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "secret-manager", &mut ctx.out);
    ctx.out.flush()?;
    Ok(crate::exit::OK)
}
