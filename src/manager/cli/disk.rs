//! `disk create|resize|info|boot-info`: the command-line face of the
//! disk image library in `manager::disk`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::manager::disk;
use crate::manager::size::{format_size, parse_size};

/// A bare number in `disk create/resize SIZE` counts MiB, like config.ini.
const BARE_SIZE_UNIT: u64 = 1 << 20;

/// `disk create|resize|info|boot-info` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DiskCommand {
    /// Create a sparse raw disk image (instant; blocks are allocated on write).
    Create {
        path: PathBuf,
        /// Size: 20G, 512M, 1.5T; a bare number counts MiB.
        size: String,
    },
    /// Grow a raw disk image to SIZE (or by +SIZE); shrinking needs --allow-shrink.
    Resize {
        path: PathBuf,
        /// New size (20G), or +SIZE to grow by that much.
        size: String,
        /// Allow making the image smaller, destroying data past the new end.
        #[arg(long)]
        allow_shrink: bool,
    },
    /// Show format, apparent and allocated size, and partitions of an image.
    Info { path: PathBuf },
    /// Show the kernel, initrd and root= that `kernel = disk:auto` would boot.
    #[command(visible_alias = "which-kernel")]
    BootInfo { path: PathBuf },
}

pub fn run(command: &DiskCommand) -> anyhow::Result<ExitCode> {
    match command {
        DiskCommand::Create { path, size } => {
            let bytes =
                parse_size(size, BARE_SIZE_UNIT).with_context(|| format!("disk size '{size}'"))?;
            disk::create_sparse(path, bytes)?;
            println!(
                "created {} ({}, sparse raw)",
                path.display(),
                format_size(bytes)
            );
        }
        DiskCommand::Resize {
            path,
            size,
            allow_shrink,
        } => {
            let (relative, text) = match size.strip_prefix('+') {
                Some(rest) => (true, rest),
                None => (false, size.as_str()),
            };
            let bytes =
                parse_size(text, BARE_SIZE_UNIT).with_context(|| format!("disk size '{size}'"))?;
            let (current, _) = disk::usage(path)?;
            let new = if relative {
                current.checked_add(bytes).context("size overflows")?
            } else {
                bytes
            };
            let old = disk::resize(path, new, *allow_shrink)?;
            println!(
                "{}: {} -> {}",
                path.display(),
                format_size(old),
                format_size(new)
            );
        }
        DiskCommand::Info { path } => print_info(path)?,
        DiskCommand::BootInfo { path } => {
            let found = disk::boot::find(path)?;
            println!("{}:", path.display());
            println!(
                "  kernel   {} on {} ({} bytes)",
                found.kernel, found.volume, found.kernel_size
            );
            match (&found.initrd, found.initrd_size) {
                (Some(initrd), Some(size)) => println!("  initrd   {initrd} ({size} bytes)"),
                _ => println!("  initrd   (none found)"),
            }
            println!("  version  {}", found.version);
            println!("  root     {} (from {})", found.root_arg, found.root_source);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_info(path: &Path) -> anyhow::Result<()> {
    let (apparent, allocated) = disk::usage(path)?;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let format = disk::image::foreign_format(&file)
        .with_context(|| format!("cannot read {}", path.display()))?
        .unwrap_or("raw");
    println!("{}:", path.display());
    println!("  format     {format}");
    println!("  apparent   {} ({apparent} bytes)", format_size(apparent));
    println!(
        "  allocated  {} ({allocated} bytes)",
        format_size(allocated)
    );
    if format != "raw" {
        return Ok(());
    }
    match disk::boot::table_kind(&file, apparent) {
        Ok(Some((kind, parts))) => {
            println!("  table      {kind:?}");
            for p in parts {
                let name = if p.name.is_empty() {
                    String::new()
                } else {
                    format!(" '{}'", p.name)
                };
                println!(
                    "  partition {}: {} at byte {}, type {}{name}",
                    p.number,
                    format_size(p.size),
                    p.start,
                    p.kind
                );
            }
        }
        Ok(None) => println!("  table      none"),
        Err(e) => println!("  table      unreadable: {e}"),
    }
    Ok(())
}
