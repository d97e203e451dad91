//! `delete NAME`: removes the VM folder after confirmation. Disk images and
//! ISOs the config references outside the folder are left in place unless
//! `--with-external` is given; kernels and initrds outside it never go.

use std::process::ExitCode;

use anyhow::bail;

use super::prompt;
use crate::manager::config::{CONFIG_FILE, ConfigFile};
use crate::manager::library::{Library, VmEntry};

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// VM name.
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Also delete the disk image and ISO the config references outside
    /// the VM folder.
    #[arg(long)]
    pub with_external: bool,
}

pub fn run(library: &Library, args: &DeleteArgs) -> anyhow::Result<ExitCode> {
    let dir = library.find(&args.name)?;
    let external = match ConfigFile::load(&dir.join(CONFIG_FILE)) {
        Ok(config) => VmEntry {
            name: args.name.clone(),
            dir: dir.clone(),
            config,
        }
        .external_storage_files(),
        Err(err) if args.with_external => {
            return Err(anyhow::Error::new(err).context(
                "cannot tell which external files the VM uses; fix its config or delete without --with-external",
            ));
        }
        Err(_) => Vec::new(),
    };
    if crate::manager::run::is_running(&dir) {
        bail!("VM '{}' is running; stop it first", args.name);
    }
    if !args.yes {
        if !prompt::interactive() {
            bail!(
                "refusing to delete VM '{}' without confirmation: stdin is not a terminal (pass --yes)",
                args.name
            );
        }
        let mut question = format!("Delete VM '{}' and its folder {}", args.name, dir.display());
        if args.with_external && !external.is_empty() {
            let list: Vec<String> = external.iter().map(|p| p.display().to_string()).collect();
            question.push_str(&format!(" and {}", list.join(", ")));
        }
        question.push('?');
        if !prompt::confirm(&question)? {
            println!("Nothing deleted.");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let remove = if args.with_external {
        external.clone()
    } else {
        Vec::new()
    };
    library.delete(&args.name, &dir, &remove)?;
    println!("Deleted VM '{}' ({}).", args.name, dir.display());
    for path in &external {
        if args.with_external {
            println!("Deleted {}.", path.display());
        } else {
            println!(
                "Left in place (outside the VM folder): {} (use --with-external to delete it)",
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
