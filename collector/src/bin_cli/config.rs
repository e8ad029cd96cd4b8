//! `config check` and `config example`: configuration files.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Subcommand};
use gpucost_cli::config_file::{self, ConfigFile};

use super::serve::serve_config;
use crate::{Cli, Command};

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Check a configuration file as `serve` (or --command) would read it, with the environment, opening
    /// nothing: every key, every value, the files it names and the settings together.
    Check {
        /// The file.
        file: PathBuf,
        /// The command the file is for.
        #[arg(long, default_value = "serve", value_parser = ["serve", "demo"])]
        command: String,
    },
    /// Print a configuration file with every setting of `serve` (or the command given) and its default, commented out.
    Example {
        /// The command the file is for.
        #[arg(default_value = "serve", value_parser = ["serve", "demo", "reprice", "reattribute", "close-period"])]
        command: String,
    },
}

/// `config check` or `config example`.
pub(crate) fn config(c: ConfigCommand) -> anyhow::Result<()> {
    match c {
        ConfigCommand::Check { file, command } => config_check(&file, &command),
        ConfigCommand::Example { command } => {
            print!("{}", config_file::example(&Cli::command(), Some(&command)));
            Ok(())
        }
    }
}

/// `config check`: the file applied to `command`, parsed with the environment, and everything `serve` (or
/// `demo`) checks before it opens anything.
fn config_check(file: &std::path::Path, command: &str) -> anyhow::Result<()> {
    let parsed = ConfigFile::load(file)?;
    let cmd = config_file::apply(Cli::command(), Some(command), &parsed)?;
    let matches = cmd
        .try_get_matches_from(["gpucost-collector", command])
        .map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.to_string().trim_start_matches("error: ").trim()))?;
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command {
        Command::Serve(a) => {
            serve_config(&a)?.validate()?;
        }
        Command::Demo(a) => a.check()?,
        _ => unreachable!("config check reads serve and demo files"),
    }
    println!("{}: valid for `gpucost-collector {command}` ({} settings)", file.display(), parsed.keys().count());
    Ok(())
}
