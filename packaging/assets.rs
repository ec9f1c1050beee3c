//! Generates the man page and the shell completions from the CLI definition, for the packages:
//! `cargo run --release --example package-assets -- <dir>` writes
//! `<dir>/senhasegura-forwarder.1` and `<dir>/completions/{bash,zsh,fish}`.

use clap::CommandFactory;
use clap_complete::Shell;
use senhasegura_forwarder::cli::Cli;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args_os().nth(1).ok_or("usage: package-assets <dir>")?);
    std::fs::create_dir_all(dir.join("completions"))?;
    let cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
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
