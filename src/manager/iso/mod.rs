//! Installer ISOs: read the ISO 9660 image in-process (no mounting, no
//! dd), recognise the distribution from its files and label, and copy
//! out the kernel and initrd that boot it.

pub mod distro;
pub mod output;
pub mod progress;
pub mod reader;
mod susp;
#[cfg(test)]
mod testimage;

use std::fs::File;
use std::path::{Path, PathBuf};

use distro::{LAYOUTS, Layout};
use reader::{Entry, IsoImage, ReadError};

/// Command line for a kernel picked by hand from an unknown ISO.
const CUSTOM_CMDLINE: &str = "console=ttyS0";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read ISO {iso}")]
    Read {
        iso: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("{}", unknown_message(.iso, .label, .kernels, .initrds))]
    UnknownLayout {
        iso: PathBuf,
        label: String,
        kernels: Vec<String>,
        initrds: Vec<String>,
    },
    #[error("'{path}' in {iso} is not a regular file")]
    NotAFile { iso: PathBuf, path: String },
    #[error("kernel and initrd of {0} have the same file name; cannot copy both into one folder")]
    SameName(PathBuf),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn unknown_message(iso: &Path, label: &str, kernels: &[String], initrds: &[String]) -> String {
    let list = |items: &[String]| {
        if items.is_empty() {
            "  (none)".to_string()
        } else {
            items
                .iter()
                .map(|i| format!("  {i}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    format!(
        "{} (label '{label}') matches no known distribution layout.\n\
         Kernel-looking files:\n{}\nInitrd-looking files:\n{}\n\
         Pick them with --kernel PATH --initrd PATH",
        iso.display(),
        list(kernels),
        list(initrds)
    )
}

/// What boots an installer ISO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoBoot {
    /// Distribution name from the detection table ("debian", "arch", ...).
    pub distro: String,
    /// Paths inside the ISO.
    pub kernel: String,
    pub initrd: String,
    /// Kernel command line the installer needs (console on ttyS0, media label...).
    pub cmdline: String,
}

/// Open `iso` for reading; errors name the image.
pub fn open(iso: &Path) -> Result<IsoImage<File>, Error> {
    IsoImage::open(iso).map_err(|source| Error::Read {
        iso: iso.to_path_buf(),
        source,
    })
}

/// Detect what boots `iso`.
pub fn inspect(iso: &Path) -> Result<IsoBoot, Error> {
    let mut image = open(iso)?;
    detect(&mut image, iso)
}

/// Detect the layout of an opened image (`origin` names it in errors).
pub fn detect<R: reader::Source>(image: &mut IsoImage<R>, origin: &Path) -> Result<IsoBoot, Error> {
    let read_err = |source| Error::Read {
        iso: origin.to_path_buf(),
        source,
    };
    let label = image.label().to_string();
    for layout in LAYOUTS.iter().filter(|l| distro::label_matches(l, &label)) {
        if let Some((kernel, initrd)) = find_layout(image, layout).map_err(read_err)? {
            return Ok(IsoBoot {
                distro: layout.distro.to_string(),
                kernel,
                initrd,
                cmdline: distro::cmdline(layout, &label),
            });
        }
    }
    let files = image.walk_files().map_err(read_err)?;
    let pick = |test: fn(&str) -> bool| -> Vec<String> {
        files
            .iter()
            .filter(|(path, _)| test(path.rsplit('/').next().unwrap_or(path)))
            .map(|(path, _)| path.clone())
            .collect()
    };
    Err(Error::UnknownLayout {
        iso: origin.to_path_buf(),
        label,
        kernels: pick(distro::looks_like_kernel),
        initrds: pick(distro::looks_like_initrd),
    })
}

/// The kernel and initrd paths of `layout` if the image has them.
fn find_layout<R: reader::Source>(
    image: &mut IsoImage<R>,
    layout: &Layout,
) -> Result<Option<(String, String)>, ReadError> {
    if !layout.kernel.contains('*') {
        let found = image.file_exists(layout.kernel)? && image.file_exists(layout.initrd)?;
        return Ok(found.then(|| (layout.kernel.to_string(), layout.initrd.to_string())));
    }
    let (kdir, kpattern) = distro::split(layout.kernel);
    let (idir, ipattern) = distro::split(layout.initrd);
    if kdir != idir {
        return Ok(None);
    }
    let dir = match image.lookup(kdir) {
        Ok(dir) if dir.is_dir => dir,
        Ok(_) => return Ok(None),
        Err(ReadError::NotFound(_) | ReadError::NotDirectory(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let names: Vec<String> = image
        .list(&dir, kdir)?
        .into_iter()
        .filter(|e| !e.is_dir)
        .map(|e| e.name)
        .collect();
    Ok(distro::pair_candidates(&names, kpattern, ipattern)
        .into_iter()
        .next()
        .map(|(k, i)| (format!("{kdir}/{k}"), format!("{idir}/{i}"))))
}

/// Boot a hand-picked kernel and initrd of `iso` (for layouts the table
/// does not know); both must be regular files in the image.
pub fn choose(iso: &Path, kernel: &str, initrd: &str) -> Result<IsoBoot, Error> {
    let mut image = open(iso)?;
    for path in [kernel, initrd] {
        let exists = image.file_exists(path).map_err(|source| Error::Read {
            iso: iso.to_path_buf(),
            source,
        })?;
        if !exists {
            return Err(Error::NotAFile {
                iso: iso.to_path_buf(),
                path: path.to_string(),
            });
        }
    }
    Ok(IsoBoot {
        distro: "custom".to_string(),
        kernel: absolute(kernel),
        initrd: absolute(initrd),
        cmdline: CUSTOM_CMDLINE.to_string(),
    })
}

fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// Copy kernel and initrd of `boot` out of `iso` into `dest`; returns their paths.
pub fn extract(iso: &Path, boot: &IsoBoot, dest: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let mut image = open(iso)?;
    let read_err = |source| Error::Read {
        iso: iso.to_path_buf(),
        source,
    };
    let kernel = image.lookup(&boot.kernel).map_err(read_err)?;
    let initrd = image.lookup(&boot.initrd).map_err(read_err)?;
    for (entry, path) in [(&kernel, &boot.kernel), (&initrd, &boot.initrd)] {
        if entry.is_dir {
            return Err(Error::NotAFile {
                iso: iso.to_path_buf(),
                path: path.clone(),
            });
        }
    }
    if kernel.name == initrd.name {
        return Err(Error::SameName(iso.to_path_buf()));
    }
    let total = kernel.size() + initrd.size();
    let progress = progress::Progress::bytes(total, "extracting");
    let mut base = 0;
    let mut out = Vec::new();
    for entry in [&kernel, &initrd] {
        progress.set_message(&entry.name);
        let path = copy_entry(&mut image, entry, dest, &mut |done| {
            progress.set(base + done)
        })?;
        base += entry.size();
        out.push(path);
    }
    progress.finish();
    let initrd_path = out.pop().expect("two files copied");
    let kernel_path = out.pop().expect("two files copied");
    Ok((kernel_path, initrd_path))
}

fn copy_entry<R: reader::Source>(
    image: &mut IsoImage<R>,
    entry: &Entry,
    dest: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<PathBuf, Error> {
    let path = dest.join(&entry.name);
    output::write_atomically(&path, |file| {
        image.copy_to(entry, file, progress).map(|_| ())
    })
    .map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
