//! The man page and the shell completions, generated from the CLI definition for the packages
//! (`senhasegura-forwarder package-assets DIR`, a hidden command `packaging/build.sh` runs):
//! `DIR/senhasegura-forwarder.1` (and a page per command) and `DIR/completions/{senhasegura-forwarder,
//! _senhasegura-forwarder, senhasegura-forwarder.fish}` (bash, zsh, fish).

use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;

/// Write the man page and the completions into `dir`.
pub fn write(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("completions"))?;
    let cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
    // A page per command, as the main page refers to them (`senhasegura-forwarder-check(1)`).
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let full = format!("{name}-{}", sub.get_name());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub.clone().name(full.clone())).render(&mut page)?;
        std::fs::write(dir.join(format!("{full}.1")), page)?;
    }
    for (shell, file) in [
        (Shell::Bash, name.clone()),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut out);
        std::fs::write(dir.join("completions").join(file), out)?;
    }
    Ok(())
}
