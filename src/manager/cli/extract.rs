//! `extract ISO [--to DIR] [--kernel PATH --initrd PATH]`: copy the
//! kernel and initrd out of an installer ISO (library in `manager::iso`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::manager::iso;

/// `extract ISO [--to DIR]` arguments.
#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// The installer ISO image.
    pub iso: PathBuf,
    /// Folder to copy kernel and initrd into (default: the current folder).
    #[arg(long)]
    pub to: Option<PathBuf>,
    /// Kernel path inside the ISO, for layouts the detection table does not know.
    #[arg(long, requires = "initrd")]
    pub kernel: Option<String>,
    /// Initrd path inside the ISO, with --kernel.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<String>,
}

pub fn run(args: &ExtractArgs) -> anyhow::Result<ExitCode> {
    let boot = match (&args.kernel, &args.initrd) {
        (Some(kernel), Some(initrd)) => iso::choose(&args.iso, kernel, initrd)?,
        (None, None) => iso::inspect(&args.iso)?,
        _ => anyhow::bail!("--kernel and --initrd go together"),
    };
    let label = iso::open(&args.iso)?.label().to_string();
    println!(
        "{}: {} (volume label '{label}')",
        args.iso.display(),
        boot.distro
    );
    println!("  kernel   {}", boot.kernel);
    println!("  initrd   {}", boot.initrd);
    println!("  cmdline  {}", boot.cmdline);
    let dest = args.to.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let (kernel, initrd) = iso::extract(&args.iso, &boot, &dest)?;
    println!("wrote {}", kernel.display());
    println!("wrote {}", initrd.display());
    Ok(ExitCode::SUCCESS)
}
