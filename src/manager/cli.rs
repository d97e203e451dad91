//! The command line (clap derive). The only place besides the command
//! handlers in `cli/` that uses `anyhow`: errors print as
//! `xhyve-manager: error: <error>: <cause>: <cause>` and exit with 1;
//! usage errors exit with 2 (clap).

mod bench;
mod create;
mod delete;
mod disk;
mod edit;
mod extract;
mod info;
mod list;
mod prompt;
mod wizard;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use super::library::Library;
use super::run;

// The clap types and handlers of the media tools, for callers that drive
// them without the binary (their tests).
pub use disk::{DiskCommand, run as run_disk};
pub use extract::{ExtractArgs, run as run_extract};

/// Program name used in messages, completions and the man page.
pub const PROGRAM: &str = "xhyve-manager";

/// Manage a library of VMs (2016 xhyve-manager config.ini folders) and run
/// them on an in-process KVM hypervisor.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, about, long_about = None)]
pub struct Cli {
    /// The library folder holding NAME.xhyvm VM folders [env: XHYVE_HOME]
    /// [default: ~/.local/share/xhyve-manager/machines; under sudo, the
    /// invoking user's]
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// One variant per subcommand; each dispatches to one handler in `run`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the VMs: name, type, cpus, memory, state.
    List(list::ListArgs),
    /// Create a VM (an interactive wizard when given no options on a terminal).
    Create(Box<create::CreateArgs>),
    /// Show every setting of a VM, resolved paths and whether files exist.
    Info(info::InfoArgs),
    /// Edit a VM's config.ini in $VISUAL/$EDITOR; saved only when valid.
    Edit(edit::EditArgs),
    /// Delete a VM's folder (asks first unless --yes).
    Delete(delete::DeleteArgs),
    /// Start a VM (foreground with its console, or --detach).
    Start(run::StartArgs),
    /// Stop a VM: ACPI power button, then --force after --timeout.
    Stop(run::StopArgs),
    /// Pause every vCPU of a running VM.
    Pause(run::VmNameArgs),
    /// Resume a paused VM.
    Resume(run::VmNameArgs),
    /// Stop a VM, then start it again detached.
    Restart(run::StopArgs),
    /// State, uptime, pid, vCPUs, memory and last exit reason of a VM.
    Status(run::StatusArgs),
    /// Attach to a detached VM's serial console (Ctrl-] q detaches).
    Console(run::VmNameArgs),
    /// Boot a VM several times and print how long each stage took.
    Bench(bench::BenchArgs),
    /// Copy the kernel and initrd out of an installer ISO.
    Extract(extract::ExtractArgs),
    /// Disk image tools.
    #[command(subcommand)]
    Disk(disk::DiskCommand),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff); e.g. `xhyve-manager man | man -l -`.
    Man,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{PROGRAM}: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let library = || Library::open(cli.home.as_deref());
    match &cli.command {
        Command::List(args) => list::run(&library()?, args),
        Command::Create(args) => create::run(&library()?, args),
        Command::Info(args) => info::run(&library()?, args),
        Command::Edit(args) => edit::run(&library()?, args),
        Command::Delete(args) => delete::run(&library()?, args),
        Command::Start(args) => run::start(&library()?, args),
        Command::Stop(args) => run::stop(&library()?, args),
        Command::Pause(args) => run::pause(&library()?, args),
        Command::Resume(args) => run::resume(&library()?, args),
        Command::Restart(args) => run::restart(&library()?, args),
        Command::Status(args) => run::status(&library()?, args),
        Command::Console(args) => run::console(&library()?, args),
        Command::Bench(args) => bench::run(&library()?, args),
        Command::Extract(args) => extract::run(args),
        Command::Disk(command) => disk::run(command),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, PROGRAM, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_global_home_after_the_subcommand() {
        let cli = Cli::try_parse_from([PROGRAM, "list", "--home", "/x"]).unwrap();
        assert_eq!(cli.home, Some(PathBuf::from("/x")));
    }
}
